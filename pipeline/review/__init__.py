"""Review stage: reviewer decisions, assignments, work lists, sessions, workbooks, unit reports."""

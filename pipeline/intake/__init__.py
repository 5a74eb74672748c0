"""Intake stage: reading clue files, triage, units, rounds, repeat grouping, routing."""

"""Command groups of the clue-triage CLI (joined in ``cli.py``)."""

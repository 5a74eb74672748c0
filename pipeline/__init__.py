"""clue-triage: triage of inspection problem clues (問題線索).

The library does the work and never prints or exits; ``cli.py`` talks to people.
"""

__version__ = "0.1.0"

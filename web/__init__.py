"""The review page in the browser (`clue-triage serve`): a face over ``pipeline``, like ``commands``."""

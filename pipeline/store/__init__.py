"""Store: the SQLite database, its migrations and its audit chain."""

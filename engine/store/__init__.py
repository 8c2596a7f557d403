"""Persistence: planfile's SQLite files, the data folder, the run journal, the step and plan caches."""

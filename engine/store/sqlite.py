"""Opening planfile's SQLite files (journal, ledger, caches) in WAL mode.

Several processes may open one file at the same instant (two `planfile run`s on a new
`PLANFILE_HOME`). SQLite then answers "database is locked" to the switch to WAL at
once, without calling the busy handler, so the switch is retried here until the lock
timeout, like any other wait for a lock.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect_wal(
    path: Path, timeout_s: float = 30.0, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection to `path` (created with its folder if missing) in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=check_same_thread)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return conn
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    except BaseException:
        conn.close()
        raise

"""The step cache: an identical call reuses a stored result across runs (opt-in).

The key is content-addressed: the tool, its resolved arguments (rendered prompts
included), the model and its parameters, and the step's declared type. Only successful,
validated results are stored. Opt in per step (`cache`) or per run (`--cache`); meant for
steps without side effects.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.run.result import jsonable
from engine.store.home import data_home
from engine.store.sqlite import open_store

_MISS = object()


def step_key(tool: str, args: dict[str, Any], model: str | None, declared: str | None) -> str:
    payload = json.dumps(
        {"tool": tool, "args": jsonable(args), "model": model, "type": declared},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    # surrogatepass: a lone surrogate in a rendered argument still hashes (to itself)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


class StepCache:
    """Stored step results by content key (SQLite, WAL).

    A run uses it through `key`, `get` (its `MISS` when absent) and `put`, so the run
    layer (engine/run) needs no import of this module.
    """

    MISS = _MISS
    key = staticmethod(step_key)

    def __init__(self, path: Path | None = None, on_warning: Callable[[str], None] | None = None):
        self.path = path or data_home() / "step_cache.sqlite"
        self.on_warning = on_warning  # hears a broken file being replaced (else stderr)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open the file now (a broken one is moved aside and rebuilt, with a warning)."""
        with self._lock:
            self._db()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = open_store(
                self.path,
                "step cache",
                rebuild=True,
                warn=self.on_warning,
                check_same_thread=False,
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT, hits INTEGER DEFAULT 0)"
            )
            self._conn = conn
        return self._conn

    def get(self, key: str) -> Any:
        """The stored value, or `MISS`."""
        with self._lock:
            db = self._db()
            row = db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
            if row is None:
                return _MISS
            db.execute("UPDATE results SET hits = hits + 1 WHERE key = ?", (key,))
            db.commit()
        return json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            db = self._db()
            db.execute(
                "INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                (key, _json_text(value)),
            )
            db.commit()


MISS = _MISS


def _json_text(value: Any) -> str:
    """A result as JSON text SQLite can store: a lone surrogate (which UTF-8 cannot hold)
    is written as its escape, which reads back as the same value."""
    text = json.dumps(jsonable(value), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return json.dumps(jsonable(value))
    return text

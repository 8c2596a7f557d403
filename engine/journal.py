"""The run journal: every run, its plan, inputs and step results, in SQLite as they happen.

One file (WAL) under `PLANFILE_HOME`: a run row when it starts, a step row the moment a
step reaches a final state, the run's status and cost when it ends. A killed run (even
SIGKILL) keeps every step that finished; `planfile resume RUN` continues it without
running those again. Several processes may journal at once.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stdlib_tools.search import data_home

from .result import StepRecord, jsonable

FINAL_STEP_STATES = ("succeeded", "failed", "skipped")


class JournalError(RuntimeError):
    """The journal cannot be read or written; the message says which file and why."""


@dataclass
class RunRow:
    run_id: str
    plan: str
    status: str
    started_at: str
    finished_at: str | None
    cost_usd: float
    plan_json: str
    inputs: dict[str, Any]
    source: str | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Journal:
    """Runs and step results in SQLite (WAL); safe to share between runs and processes."""

    FLUSH_EVERY_S = 0.02

    def __init__(self, path: Path | None = None):
        self.path = path or data_home() / "journal.sqlite"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # Step rows go through a writer thread in batches: one commit per ~20 ms instead
        # of per step. A kill loses at most the last batch; those steps run again on resume.
        self._pending: list[tuple[str, str, StepRecord]] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._error: JournalError | None = None

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                if self._conn is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.executescript(
                        """
                        CREATE TABLE IF NOT EXISTS runs (
                            run_id TEXT PRIMARY KEY, plan TEXT, status TEXT, started_at TEXT,
                            finished_at TEXT, cost_usd REAL DEFAULT 0, plan_json TEXT,
                            inputs_json TEXT, source TEXT, result_json TEXT);
                        CREATE TABLE IF NOT EXISTS approvals (
                            run_id TEXT, step TEXT, decision TEXT, decided_at TEXT,
                            PRIMARY KEY (run_id, step));
                        CREATE TABLE IF NOT EXISTS steps (
                            run_id TEXT, step TEXT, status TEXT, record_json TEXT, updated_at TEXT,
                            PRIMARY KEY (run_id, step));
                        """
                    )
                    self._conn = conn
                yield self._conn
                self._conn.commit()
            except sqlite3.DatabaseError as err:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                raise JournalError(
                    f"run journal {self.path} is unusable: {err}. Move it aside to start a new one "
                    "(set PLANFILE_HOME to use another folder)"
                ) from None
            except OSError as err:
                raise JournalError(f"run journal {self.path}: {err.strerror or err}") from None

    # --- writing --------------------------------------------------------------------
    def run_started(
        self, run_id: str, plan_json: str, plan: str, inputs: dict[str, Any], source: str | None
    ) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO runs (run_id, plan, status, started_at, plan_json, inputs_json, source) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET status='running', plan_json=excluded.plan_json",
                (run_id, plan, _now(), plan_json, json.dumps(jsonable(inputs)), source),
            )

    def step_finished(self, run_id: str, step: str, record: StepRecord) -> None:
        if self._error is not None:
            raise self._error
        # Serialised by the writer (at flush time, so a record updated since is current).
        with self._pending_lock:
            self._pending.append((run_id, step, record))
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name="planfile-journal", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            self._wake.wait(self.FLUSH_EVERY_S)
            self._wake.clear()
            if not self.flush():
                with self._pending_lock:
                    if not self._pending:
                        self._writer = None
                        return

    def flush(self) -> bool:
        """Write the pending step rows now; returns whether there were any."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if not pending:
            return False
        now = _now()
        rows = [
            (run_id, step, r.status, json.dumps(r.to_json()), now) for run_id, step, r in pending
        ]
        try:
            with self._db() as db:
                db.executemany(
                    "INSERT INTO steps (run_id, step, status, record_json, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(run_id, step) DO UPDATE SET status=excluded.status, "
                    "record_json=excluded.record_json, updated_at=excluded.updated_at",
                    rows,
                )
        except JournalError as err:
            self._error = err
        return True

    def run_finished(self, run_id: str, status: str, cost_usd: float, result_json: str) -> None:
        self.flush()
        if self._error is not None:
            raise self._error
        with self._db() as db:
            db.execute(
                "UPDATE runs SET status=?, finished_at=?, cost_usd=?, result_json=? WHERE run_id=?",
                (status, _now(), cost_usd, result_json, run_id),
            )

    def decide(self, run_id: str, step: str, decision: str) -> None:
        """Record a person's `approved` or `rejected` for a step that waits for approval."""
        if decision not in ("approved", "rejected"):
            raise ValueError(decision)
        row = self.run(run_id)
        with self._db() as db:
            db.execute(
                "INSERT INTO approvals (run_id, step, decision, decided_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(run_id, step) DO UPDATE SET decision=excluded.decision, decided_at=excluded.decided_at",
                (row.run_id, step, decision, _now()),
            )

    def decision(self, run_id: str, step: str) -> str | None:
        with self._db() as db:
            row = db.execute(
                "SELECT decision FROM approvals WHERE run_id = ? AND step = ?", (run_id, step)
            ).fetchone()
        return row[0] if row else None

    # --- reading -------------------------------------------------------------------------
    def runs(self, limit: int = 50) -> list[RunRow]:
        with self._db() as db:
            rows = db.execute(
                "SELECT run_id, plan, status, started_at, finished_at, cost_usd, plan_json, inputs_json, source "
                "FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._row(r) for r in rows]

    def run(self, run_id: str) -> RunRow:
        with self._db() as db:
            rows = db.execute(
                "SELECT run_id, plan, status, started_at, finished_at, cost_usd, plan_json, inputs_json, source "
                "FROM runs WHERE run_id LIKE ? || '%' ORDER BY started_at DESC",
                (run_id,),
            ).fetchall()
        if not rows:
            raise JournalError(f"no run `{run_id}` in {self.path} (see `planfile runs`)")
        if len(rows) > 1:
            raise JournalError(f"`{run_id}` matches {len(rows)} runs; give more of the id")
        return self._row(rows[0])

    def steps(self, run_id: str) -> dict[str, StepRecord]:
        self.flush()
        with self._db() as db:
            rows = db.execute(
                "SELECT step, record_json FROM steps WHERE run_id = ?", (run_id,)
            ).fetchall()
        out: dict[str, StepRecord] = {}
        for step, record_json in rows:
            data = json.loads(record_json)
            out[step] = StepRecord(
                tool=data["tool"],
                status=data["status"],
                model=data.get("model"),
                attempts=data.get("attempts", 0),
                started_at=data.get("started_at"),
                finished_at=data.get("finished_at"),
                input_tokens=data.get("input_tokens", 0),
                output_tokens=data.get("output_tokens", 0),
                cost_usd=data.get("cost_usd", 0.0),
                output=data.get("output"),
                error=data.get("error"),
            )
        return out

    def result_json(self, run_id: str) -> dict[str, Any] | None:
        with self._db() as db:
            row = db.execute("SELECT result_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    @staticmethod
    def _row(row: tuple[Any, ...]) -> RunRow:
        run_id, plan, status, started, finished, cost, plan_json, inputs_json, source = row
        return RunRow(
            run_id,
            plan,
            status,
            started,
            finished,
            cost or 0.0,
            plan_json,
            json.loads(inputs_json or "{}"),
            source,
        )

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

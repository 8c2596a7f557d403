"""The batches' progress store: which batch writes which results file, and its started rows.

`$PLANFILE_HOME/batches.sqlite` (WAL, corruption-checked when opened, like the journal)
holds one row per batch (its plan, inputs and results file, their digests) and one row
per row that got a run: its run id and where it is (`running`, `queued` when the daily
budget or Ctrl-C stopped it mid-way, `done`). Rows never started have no row here: the
results file says what is done, this store what must be resumed through the journal
instead of started again (so its finished steps are not paid twice).

A run id is committed the moment its run opens, before the run's first step, so a batch
killed with SIGKILL still knows which run each of its running rows was. The writes of
finished rows are grouped (the results file already holds them durably).

The process running a batch holds a lease on its results file (engine/store/lease.py,
the journal's run leases, in this file's `leases` table): a second batch on the same
results file is refused, naming the owner; a dead owner's lease is taken over.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StoreError
from engine.store import lease
from engine.store.home import data_home
from engine.store.sqlite import connect_schema, store_error

RUNNING = "running"
QUEUED = "queued"
DONE = "done"
_HOLDS = "which rows of each batch were run (and by which run, for resuming them)"
_GROUP_S = 0.25  # finished rows are written at most this long after they finish


class BatchStoreError(StoreError):
    """The batch store cannot be read or written, or names no such batch."""


class BatchBusy(BatchStoreError):
    """Another live process runs a batch into the same results file."""


@dataclass(frozen=True)
class BatchRow:
    """One batch as stored."""

    batch_id: str
    plan_path: str
    inputs_path: str
    output_path: str
    plan_hash: str
    inputs_hash: str
    created_at: str
    status: str


class BatchStore:
    """The batch store (one per process; thread-safe)."""

    def __init__(self, path: Path | None = None, lock_timeout_s: float = 30.0):
        self.path = path or data_home() / "batches.sqlite"
        self.lock_timeout_s = lock_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[str, str, int]] = []
        self._last_write = time.monotonic()
        self._owner = lease.Owner.this_process()
        self._heartbeat = lease.Heartbeat(self.path, self._owner, lock_timeout_s)

    # --- the file -----------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_schema(
                self.path,
                (
                    "CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, plan_path TEXT,"
                    " inputs_path TEXT, output_path TEXT, plan_hash TEXT, inputs_hash TEXT,"
                    " created_at TEXT, status TEXT)",
                    "CREATE TABLE IF NOT EXISTS batch_rows (batch_id TEXT, row INTEGER, run_id TEXT,"
                    " state TEXT, PRIMARY KEY (batch_id, row))",
                    lease.CREATE,
                ),
                what="batch store",
                holds=_HOLDS,
                error=BatchStoreError,
                timeout_s=self.lock_timeout_s,
            )
        return self._conn

    def _broken(self, err: sqlite3.Error) -> BatchStoreError:
        return store_error(BatchStoreError, "batch store", self.path, err, _HOLDS)

    def _write(
        self, sql: str | None, params: tuple[object, ...] | list[tuple[object, ...]] = ()
    ) -> None:
        """One statement (None: none) and the pending finished rows, in one transaction."""
        with self._lock:
            db = self._db()
            try:
                if isinstance(params, list):
                    db.executemany(sql or "", params)
                elif sql is not None:
                    db.execute(sql, params)
                self._write_pending(db)
                db.commit()
            except sqlite3.Error as err:
                db.rollback()
                raise self._broken(err) from None

    def _write_pending(self, db: sqlite3.Connection) -> None:
        if self._pending:
            db.executemany(
                "UPDATE batch_rows SET state = ? WHERE batch_id = ? AND row = ?", self._pending
            )
            self._pending = []
        self._last_write = time.monotonic()

    def open(self) -> None:
        """Open and check the file now (before the batch spends anything)."""
        with self._lock:
            self._db()

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def flush(self) -> None:
        """Write the finished rows still waiting in memory."""
        if self._pending:
            self._write(None)

    # --- batches ----------------------------------------------------------------------
    def batch(self, batch_id: str) -> BatchRow | None:
        """A batch by id or unique id prefix (None: no such batch)."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT * FROM batches WHERE batch_id LIKE ? || '%' ORDER BY created_at",
                    (batch_id,),
                )
                .fetchall()
            )
        if len(rows) > 1:
            raise BatchStoreError(f"`{batch_id}` matches {len(rows)} batches; give more of the id")
        return BatchRow(*rows[0]) if rows else None

    def save_batch(self, batch: BatchRow) -> None:
        self._write(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(batch_id) DO UPDATE"
            " SET status = excluded.status",
            (
                batch.batch_id,
                batch.plan_path,
                batch.inputs_path,
                batch.output_path,
                batch.plan_hash,
                batch.inputs_hash,
                batch.created_at,
                batch.status,
            ),
        )

    def set_status(self, batch_id: str, status: str) -> None:
        self._write("UPDATE batches SET status = ? WHERE batch_id = ?", (status, batch_id))

    # --- rows -------------------------------------------------------------------------
    def unfinished(self, batch_id: str) -> dict[int, str]:
        """Rows that got a run and are not done: row -> run id (to resume, not restart)."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT row, run_id FROM batch_rows WHERE batch_id = ? AND state != ?",
                    (batch_id, DONE),
                )
                .fetchall()
            )
        return {int(row): str(run_id) for row, run_id in rows}

    def missing(self, batch_id: str, done: set[int]) -> int:
        """How many rows the store has as done that `done` (the results file) lacks."""
        return len(self.missing_rows(batch_id, done))

    def missing_rows(self, batch_id: str, done: set[int]) -> set[int]:
        """The rows the store has as done that `done` (the results file) lacks."""
        with self._lock:
            cursor = self._db().execute(
                "SELECT row FROM batch_rows WHERE batch_id = ? AND state = ?", (batch_id, DONE)
            )
            return {int(row) for (row,) in cursor if row not in done}

    def has_rows(self, batch_id: str) -> bool:
        """Whether any row of the batch got a run (so its results file was written to)."""
        with self._lock:
            found = (
                self._db()
                .execute("SELECT 1 FROM batch_rows WHERE batch_id = ? LIMIT 1", (batch_id,))
                .fetchone()
            )
        return found is not None

    def requeue(self, batch_id: str, rows: set[int]) -> None:
        """Rows whose result line was lost (cut short): resumed from their runs' journal,
        which has their finished steps, so nothing is paid again."""
        for row in rows:
            self._write(
                "UPDATE batch_rows SET state = ? WHERE batch_id = ? AND row = ?",
                (QUEUED, batch_id, row),
            )

    def started(self, batch_id: str, row: int, run_id: str) -> None:
        """Committed at once: a killed batch must know which run each row was."""
        self._write(
            "INSERT INTO batch_rows VALUES (?, ?, ?, ?) ON CONFLICT(batch_id, row) DO UPDATE"
            " SET run_id = excluded.run_id, state = excluded.state",
            (batch_id, row, run_id, RUNNING),
        )

    def finished(self, batch_id: str, row: int, state: str) -> None:
        """`done` or `queued`; grouped (a queued row is flushed when the batch stops)."""
        with self._lock:
            self._pending.append((state, batch_id, row))
            due = time.monotonic() - self._last_write >= _GROUP_S
        if due:
            self.flush()

    # --- the lease on a results file ---------------------------------------------------
    def acquire(self, output_path: str) -> str | None:
        """Own the results file; `BatchBusy` naming the owner when another process does."""
        key = f"batch-output:{output_path}"
        with self._lock:
            db = self._db()
            try:
                note = lease.acquire(db, key, self._owner, self.path)
                db.commit()
            except lease.RunLeased as err:
                raise BatchBusy(
                    f"another batch is writing {output_path}: {err.holder}",
                    hint="wait for it to finish or stop it (Ctrl-C); then run this command "
                    "again to continue, or write to another file with -o",
                ) from None
            except sqlite3.Error as err:
                db.rollback()
                raise self._broken(err) from None
        self._heartbeat.add(key)
        return None if note is None else note.replace(f"run {key}", f"results file {output_path}")

    def release(self, output_path: str) -> None:
        key = f"batch-output:{output_path}"
        if key not in self._heartbeat.held:
            return
        self._heartbeat.discard(key)
        with self._lock:
            db = self._db()
            try:
                lease.release(db, [key], self._owner)
                db.commit()
            except sqlite3.Error:
                db.rollback()  # the lease expires by itself; its owner is leaving


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

"""The run journal: every run, its plan, inputs and step results, in SQLite as they happen.

One file (WAL) under `PLANFILE_HOME`: a run row when it starts, its steps' records as
they reach a final state, an agent step's inner calls as they finish
(engine/store/agent_calls.py), the run's status, cost and result when it ends. A killed run
(even SIGKILL) keeps every step that was written; `planfile resume RUN` continues it
without running those again. Several processes may journal at once.

Written for low overhead on short steps: plans are stored once per distinct content (a
plan run a thousand times is one row), step records go to an append-only log in groups
(one row per run per ~50 ms, written from the run's event loop without waiting for
locks, encoded by orjson: the stdlib encoder alone cost more than the 20% budget), WAL
checkpoints (the only fsyncs) run in a thread, and the run's result is a small summary
that `result_json` joins with the step records.

Longer than most modules: the write path, its batching and its recovery share one
connection and the runs' queues; row formats that need none of that live apart
(agent calls: engine/store/agent_calls.py; leases: engine/store/lease.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.errors import JournalError
from engine.run.result import PLAIN_JSON, Replan, RunResult, RunStatus, StepRecord, jsonable
from engine.store import agent_calls, lease
from engine.store.home import data_home
from engine.store.sqlite import connect_wal, refuse_hint

# Version 2: plans by content, step records in `step_log`, run summaries. Version-1 files
# (a JSON document per step and per run) are upgraded in place; their rows still read.
# Version 3 adds `agent_calls` (an agent step's inner calls: engine/store/agent_calls.py).
SCHEMA_VERSION = 3
LOCK_TIMEOUT_S = 30.0  # how long a write waits for another process's write lock
# A run journaled as running whose owner is gone (`planfile runs`/`show` say so).
INTERRUPTED = "interrupted"

_RUN_COLUMNS = (
    "runs.run_id, runs.plan, runs.status, runs.started_at, runs.finished_at, runs.cost_usd, "
    "COALESCE(plans.plan_json, runs.plan_json), runs.inputs_json, runs.source"
)
_RUN_SELECT = f"SELECT {_RUN_COLUMNS} FROM runs LEFT JOIN plans ON plans.plan_hash = runs.plan_hash"


class JournalLocked(JournalError):
    """Another process held the journal's write lock longer than the lock timeout."""


class JournalCorrupt(JournalError):
    """The journal file is empty, not SQLite, or damaged; planfile never replaces it."""


RunLeased = lease.RunLeased  # another live process runs the run (engine/store/lease.py)


class NoSuchRun(JournalError):
    """The journal holds no run with that id (or id prefix)."""


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


def _dumps(value: Any) -> bytes:
    """Compact JSON; integers beyond 64 bits (which orjson refuses) go through `json`,
    as does text UTF-8 cannot encode (a tool's lone surrogate: kept as its escape)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = json.dumps(value, ensure_ascii=False)
        try:
            return text.encode()
        except UnicodeEncodeError:
            return json.dumps(value).encode()


# A step's record in the log: a JSON array in this order (names as in `StepRecord`).
_LOG_FIELDS = (
    "step",
    "status",
    "tool",
    "model",
    "attempts",
    "started_at",
    "finished_at",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "output",
    "error",
    "skipped_by_when",
    "iterations",  # agent steps only: the row is two shorter for other steps
    "tool_calls",
)


def _log_rows(steps: Iterable[str], records: Mapping[str, StepRecord]) -> list[list[Any]]:
    """The steps' records as compact JSON arrays, in `_LOG_FIELDS` order (one loop for
    a flush's group, not a call per step)."""
    rows = []
    plain = PLAIN_JSON
    for step in steps:
        r = records[step]
        output = r.output
        row = [
            step,
            r.status,
            r.tool,
            r.model,
            r.attempts,
            r.started_at,
            r.finished_at,
            r.input_tokens,
            r.output_tokens,
            r.cost_usd,
            output if type(output) in plain else jsonable(output),
            r.error,
            r.skipped_by_when,
        ]
        if r.tool_calls is not None:
            row += [r.iterations, jsonable(r.tool_calls)]
        rows.append(row)
    return rows


def _from_log_row(row: list[Any]) -> tuple[str, StepRecord]:
    # Rows written before `skipped_by_when` existed are one shorter; zip stops there.
    fields = dict(zip(_LOG_FIELDS, row, strict=False))
    return fields["step"], StepRecord.from_json(fields)


class RunLog:
    """One run's (or replanning round's) queue of steps that reached a final state.

    `finished` is the engine's per-step hook: a bare `deque.append` of the step's name
    (no lock, no Python frame); the journal reads the record itself when it writes, so
    it is current. `agent_call(step, call)` queues an agent step's finished inner call
    (written with the next group, so within ~50 ms). `on_error` hears a journal that
    broke mid-run, to stop the run.
    """

    def __init__(
        self,
        run_id: str,
        records: Mapping[str, StepRecord],
        on_error: Callable[[JournalError], None] | None = None,
    ):
        self.run_id = run_id
        self.records = records
        self.on_error = on_error
        self.queue: deque[str] = deque()
        self.finished: Callable[[str], None] = self.queue.append
        self.calls: deque[tuple[str, dict[str, Any]]] = deque()
        self.closed = False

    def agent_call(self, step_id: str, call: dict[str, Any]) -> None:
        self.calls.append((step_id, call))


class Journal:
    """Runs and step results in SQLite (WAL); safe to share between runs and processes."""

    FLUSH_EVERY_S = 0.05  # a kill loses at most this much finished work (it runs again)
    CHECKPOINT_BYTES = 4 << 20  # WAL growth between checkpoints (run off the event loop)

    def __init__(self, path: Path | None = None, *, lock_timeout_s: float = LOCK_TIMEOUT_S):
        self.path = path or data_home() / "journal.sqlite"
        self.lock_timeout_s = lock_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # Open runs queue their final steps in their RunLog; while any is open, a timer
        # on the run's event loop writes them in groups: one commit per ~50 ms instead
        # of one per step. A kill loses at most the last group; those run again on
        # resume. (A writer thread cost more: its GIL hand-offs slowed the loop.)
        self._logs: list[RunLog] = []
        self._logs_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # The event loops with a write pending (runs may come from several loops, one
        # after another or at once in threads). Weak: a closed loop drops out, its timer
        # with it.
        self._ticking: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._unchecked_bytes = 0
        self._checkpointing = False
        self._error: JournalError | None = None
        # Per open run: the steps whose records are in the step log (the run's summary
        # stores the others, e.g. steps skipped after the last one finished).
        self._written: dict[str, set[str]] = {}
        # This object's runs are leased to it: one owner per run (engine/store/lease.py).
        self._owner = lease.Owner.this_process()
        self._heartbeat = lease.Heartbeat(self.path, self._owner, lock_timeout_s)

    @contextmanager
    def _db(self, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection, in a transaction committed on exit. `wait=False`: do not wait
        for another process's write lock (JournalLocked at once; the event loop's
        writes must not stall the loop)."""
        with self._lock:
            try:
                if self._conn is None:
                    conn = connect_wal(
                        self.path,
                        self.lock_timeout_s,
                        check_same_thread=False,
                        what="run journal",
                        hint=refuse_hint(self.path, "every run's record"),
                        error=JournalCorrupt,
                    )
                    try:
                        conn.execute("PRAGMA synchronous=NORMAL")
                        # Checkpoints (which fsync) run in a thread: see `_maybe_checkpoint`.
                        conn.execute("PRAGMA wal_autocheckpoint=0")
                        self._migrate(conn)
                    except BaseException:
                        conn.close()
                        raise
                    self._conn = conn
                if not wait:
                    self._conn.execute("PRAGMA busy_timeout=0")
                try:
                    yield self._conn
                    self._conn.commit()
                finally:
                    if not wait and self._conn is not None:
                        self._conn.execute(f"PRAGMA busy_timeout={int(self.lock_timeout_s * 1000)}")
            except sqlite3.OperationalError as err:
                if self._conn is not None:
                    self._conn.rollback()
                if "locked" in str(err) or "busy" in str(err):
                    raise JournalLocked(
                        f"run journal {self.path} stayed locked by another process for "
                        f"{self.lock_timeout_s if wait else 0:g} s ({err}); try again when it "
                        "finishes, or set PLANFILE_HOME to use another folder"
                    ) from None
                raise self._unusable(err) from None
            except sqlite3.DatabaseError as err:
                raise self._unusable(err) from None
            except OSError as err:
                raise JournalError(f"run journal {self.path}: {err.strerror or err}") from None

    def _unusable(self, err: Exception) -> JournalError:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return JournalError(
            f"run journal {self.path} is unusable: {err}. Move it aside to start a new one "
            "(set PLANFILE_HOME to use another folder)"
        )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the tables, or bring an older journal up to `SCHEMA_VERSION`."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"run journal {self.path} was written by a newer planfile (schema {version}; "
                f"this one reads up to {SCHEMA_VERSION}): upgrade planfile, or set "
                "PLANFILE_HOME to use another folder"
            )
        # One process upgrades; another waits for the write lock, then finds it done.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for statement in (
                    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, plan TEXT, "
                    "status TEXT, started_at TEXT, finished_at TEXT, cost_usd REAL DEFAULT 0, "
                    "plan_json TEXT, inputs_json TEXT, source TEXT, result_json TEXT)",
                    "CREATE TABLE IF NOT EXISTS approvals (run_id TEXT, step TEXT, decision TEXT, "
                    "decided_at TEXT, PRIMARY KEY (run_id, step))",
                    # Version 1's step rows; read, no longer written.
                    "CREATE TABLE IF NOT EXISTS steps (run_id TEXT, step TEXT, status TEXT, "
                    "record_json TEXT, updated_at TEXT, PRIMARY KEY (run_id, step))",
                    "CREATE TABLE IF NOT EXISTS plans (plan_hash TEXT PRIMARY KEY, plan_json TEXT)",
                    "CREATE TABLE IF NOT EXISTS step_log (run_id TEXT, written_at TEXT, "
                    "records_json TEXT)",
                    "CREATE INDEX IF NOT EXISTS step_log_run ON step_log (run_id)",
                    agent_calls.TABLE,
                    agent_calls.INDEX,
                ):
                    conn.execute(statement)
                have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
                for column in ("plan_hash", "summary_json"):
                    if column not in have:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def open(self) -> None:
        """Open and check the file now (a run opens its stores before it spends anything)."""
        with self._db():
            pass

    # --- leases: one owner per run -------------------------------------------------------
    def acquire(self, run_id: str) -> str | None:
        """Own the run (this Journal object does, until `release` or the run's end).

        Raises `RunLeased` naming the owner when another live process runs it; returns
        a note when a dead owner's lease was taken over. Holding it already is fine.
        """
        with self._db() as db:
            note = lease.acquire(db, run_id, self._owner, self.path)
        self._heartbeat.add(run_id)
        return note

    def release(self, run_id: str) -> None:
        """Give the run's lease back (nothing if this object does not hold it)."""
        if run_id not in self._heartbeat.held:
            return
        self._heartbeat.discard(run_id)
        with self._db() as db:
            lease.release(db, [run_id], self._owner)

    # --- writing --------------------------------------------------------------------
    def run_started(
        self,
        run_id: str,
        plan_json: str,
        plan: str,
        inputs: dict[str, Any],
        source: str | None,
        records: Mapping[str, StepRecord] | None = None,
        on_error: Callable[[JournalError], None] | None = None,
        written: Iterable[str] = (),
    ) -> RunLog:
        """Record a run (or a replanning round, or a resume) starting; returns the log
        its steps go to: call `log.finished(step)` when `records[step]` is final.
        `written`: steps whose records are in the journal already (carried over)."""
        plan_hash = hashlib.sha256(plan_json.encode()).hexdigest()
        self._unchecked_bytes += len(plan_json)
        with self._db() as db:
            # The run's owner first: a second process resuming it stops here.
            lease.acquire(db, run_id, self._owner, self.path)
            # Stored once per distinct plan: a plan run again adds only its run row.
            db.execute(
                "INSERT INTO plans (plan_hash, plan_json) VALUES (?, ?) "
                "ON CONFLICT(plan_hash) DO NOTHING",
                (plan_hash, plan_json),
            )
            db.execute(
                "INSERT INTO runs (run_id, plan, status, started_at, plan_hash, inputs_json, source) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
                "status='running', plan_hash=excluded.plan_hash, plan_json=NULL",
                (run_id, plan, _now(), plan_hash, json.dumps(jsonable(inputs)), source),
            )
        # The journal works (again): records an earlier failure left queued go out with
        # the next batch.
        self._error = None
        self._heartbeat.add(run_id)
        log = RunLog(run_id, records if records is not None else {}, on_error)
        with self._logs_lock:
            self._written.setdefault(run_id, set()).update(written)
            self._logs.append(log)
        self._schedule_tick()
        return log

    def detach(self, log: RunLog) -> None:
        """The run behind `log` is over: write what it queued; it leaves the journal's
        list once nothing of it is left to write (a record is never dropped)."""
        log.closed = True
        self.flush(wait=False)
        self._drop_closed()

    def _drop_closed(self) -> None:
        with self._logs_lock:
            self._logs = [
                log for log in self._logs if not (log.closed and not log.queue and not log.calls)
            ]

    def _schedule_tick(self) -> None:
        """Write in ~50 ms, on the running event loop (none: at the run's end)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop not in self._ticking:
            self._ticking.add(loop)
            loop.call_later(self.FLUSH_EVERY_S, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ticking.discard(loop)
        self.flush(wait=False)
        self._maybe_checkpoint()
        if self._logs and self._error is None:
            self._schedule_tick()

    def _maybe_checkpoint(self) -> None:
        """Copy the WAL into the database in a thread once it has grown by a few MB:
        a checkpoint fsyncs, which must not stall the event loop."""
        if self._unchecked_bytes < self.CHECKPOINT_BYTES or self._checkpointing:
            return
        self._unchecked_bytes = 0
        self._checkpointing = True

        def checkpoint() -> None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.lock_timeout_s)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    conn.close()
            except sqlite3.Error:
                pass  # the next one tries again; the WAL keeps everything meanwhile
            finally:
                self._checkpointing = False

        threading.Thread(target=checkpoint, name="planfile-checkpoint", daemon=True).start()

    def flush(self, strict: bool = False, wait: bool = True) -> bool:
        """Write the queued step records now; returns whether there were any.

        Records that cannot be written go back to the front of their queue, never
        dropped: a lock is retried at the next flush; any other failure is told to the
        open runs (which stop). `strict` raises either now. `wait=False` does not wait
        for another process's lock (the event loop's periodic writes).
        """
        # One flush at a time, so records are written in order and a caller's flush
        # returns only once everything queued before it is in.
        with self._flush_lock:
            return self._flush(strict, wait)

    def _flush(self, strict: bool, wait: bool) -> bool:
        taken: list[tuple[RunLog, list[str]]] = []
        calls: list[tuple[RunLog, list[tuple[str, dict[str, Any]]]]] = []
        for log in list(self._logs):
            queue = log.queue
            if queue:
                taken.append((log, [queue.popleft() for _ in range(len(queue))]))
            if log.calls:
                calls.append((log, [log.calls.popleft() for _ in range(len(log.calls))]))
        if not taken and not calls:
            if strict and self._error is not None:
                raise self._error
            return False
        now = _now()
        try:
            rows = [
                (log.run_id, now, _dumps(_log_rows(steps, log.records))) for log, steps in taken
            ]
            call_rows = [
                agent_calls.row(log.run_id, step, call, now)
                for log, queued in calls
                for step, call in queued
            ]
            with self._db(wait) as db:
                # One transaction: a step's record never lands without its agent calls.
                if call_rows:
                    db.executemany(agent_calls.INSERT, call_rows)
                db.executemany(
                    "INSERT INTO step_log (run_id, written_at, records_json) VALUES (?, ?, ?)",
                    rows,
                )
            self._unchecked_bytes += sum(len(row[2]) for row in rows)
            self._unchecked_bytes += sum(len(row[-1]) for row in call_rows)
            with self._logs_lock:
                for log, steps in taken:
                    self._written.setdefault(log.run_id, set()).update(steps)
        except JournalError as err:
            for log, steps in taken:
                log.queue.extendleft(reversed(steps))
            for log, queued in calls:
                log.calls.extendleft(reversed(queued))
            if not isinstance(err, JournalLocked):
                self._error = err
                for log in list(self._logs):
                    if log.on_error is not None and not log.closed:
                        log.on_error(err)
            if strict:
                raise
        return True

    def run_finished(self, result: RunResult) -> None:
        """The run's status, cost and result; its step records are already queued.

        The summary holds what the step log does not: outputs, replans, timings, the
        step order, and the records of steps not in the log (never final, or skipped
        once the run was over: fallbacks not needed, steps a replanner's finish ended).
        """
        self.flush(strict=True)
        with self._logs_lock:
            written = self._written.get(result.run_id, set())
            for log in self._logs:
                if log.run_id == result.run_id:
                    log.closed = True
        unlogged = {
            name: record.to_json() for name, record in result.steps.items() if name not in written
        }
        summary = {
            "outputs": jsonable(result.outputs),
            "replans": [replan.to_json() for replan in result.replans],
            "wall_s": result.wall_s,
            "critical_path_s": result.critical_path_s,
            "order": list(result.steps),
            "unlogged": unlogged,
            "notes": result.notes,  # what loading the plan repaired or coerced
        }
        self._drop_closed()
        with self._db() as db:
            db.execute(
                "UPDATE runs SET status=?, finished_at=?, cost_usd=?, summary_json=?, "
                "result_json=NULL WHERE run_id=?",
                (
                    result.status,
                    _now(),
                    result.cost_usd,
                    _dumps(summary),
                    result.run_id,
                ),
            )
            lease.release(db, [result.run_id], self._owner)
        self._heartbeat.discard(result.run_id)
        with self._logs_lock:
            if not any(log.run_id == result.run_id for log in self._logs):
                self._written.pop(result.run_id, None)

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
                f"{_RUN_SELECT} ORDER BY runs.started_at DESC, runs.rowid DESC LIMIT ?", (limit,)
            ).fetchall()
            return self._owned([self._row(r) for r in rows], db)

    def run(self, run_id: str) -> RunRow:
        """The run with this id, or the one run whose id starts with it."""
        if not run_id.strip():
            raise NoSuchRun("a run id is empty: give a run id or its prefix (see `planfile runs`)")
        # The prefix is matched literally: `%` and `_` are LIKE wildcards, escaped here.
        pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._db() as db:
            rows = db.execute(
                f"{_RUN_SELECT} WHERE runs.run_id = ? OR runs.run_id LIKE ? || '%' ESCAPE '\\' "
                "ORDER BY runs.started_at DESC",
                (run_id, pattern),
            ).fetchall()
        exact = [r for r in rows if r[0] == run_id]
        rows = exact or rows
        if not rows:
            raise NoSuchRun(f"no run `{run_id}` in {self.path} (see `planfile runs`)")
        if len(rows) > 1:
            raise JournalError(f"`{run_id}` matches {len(rows)} runs; give more of the id")
        with self._db() as db:
            return self._owned([self._row(rows[0])], db)[0]

    @staticmethod
    def _owned(rows: list[RunRow], db: sqlite3.Connection) -> list[RunRow]:
        """`running` rows whose owner is gone (killed: no end of run was written) become
        `interrupted`: nothing runs them until `planfile resume`."""
        gone = lease.owners_gone(db, [r.run_id for r in rows if r.status == "running"])
        for row in rows:
            if row.run_id in gone:
                row.status = INTERRUPTED
        return rows

    def steps(self, run_id: str) -> dict[str, StepRecord]:
        """The final records of the run's steps, in the order they were written."""
        self.flush(strict=True)
        with self._db() as db:
            old = db.execute(
                "SELECT step, record_json FROM steps WHERE run_id = ?", (run_id,)
            ).fetchall()
            log = db.execute(
                "SELECT records_json FROM step_log WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        out = {step: StepRecord.from_json(json.loads(data)) for step, data in old}
        for (records_json,) in log:
            for row in orjson.loads(records_json):
                step, record = _from_log_row(row)
                out.pop(step, None)  # a later record (a resumed run) replaces, and moves last
                out[step] = record
        return out

    def agent_calls(self, run_id: str, step: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The journaled inner calls of the run's agent steps (or one step's), per step,
        in the order they were written (engine/store/agent_calls.py)."""
        self.flush(strict=True)
        with self._db() as db:
            return agent_calls.read(db, run_id, step)

    def agent_replay(self, run_id: str) -> Callable[[str], list[dict[str, Any]]] | None:
        """For a resume: step id -> the inner calls that step replays instead of running
        them again (its latest attempt's finished calls; `agent_calls.replayable`), given
        once per step, or None when the run has none."""
        calls = self.agent_calls(run_id)
        if not calls:
            return None
        status = self.run(run_id).status
        replay = agent_calls.replayable(
            calls, self.steps(run_id), budget_stopped=status == RunStatus.BUDGET_EXCEEDED
        )
        if not replay:
            return None
        # Once per step: an attempt after the replayed one (a retry) runs live.
        return lambda step: replay.pop(step, [])

    def result_json(self, run_id: str) -> dict[str, Any] | None:
        """The run's result document (as `planfile run --json` printed it), once it ended."""
        with self._db() as db:
            row = db.execute(
                "SELECT plan, status, cost_usd, result_json, summary_json FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            return None
        plan, status, cost_usd, result_json, summary_json = row
        if result_json:  # a version-1 journal stored the whole document
            return dict(json.loads(result_json))
        if not summary_json:
            return None
        summary = orjson.loads(summary_json)
        records = self.steps(run_id)
        unlogged = summary["unlogged"]
        steps = {
            name: StepRecord.from_json(unlogged[name]) if name in unlogged else records[name]
            for name in summary["order"]
            if name in unlogged or name in records
        }
        return RunResult(
            run_id=run_id,
            plan=plan,
            status=RunStatus(status),  # written by run_finished, so a RunStatus value
            outputs=summary["outputs"],
            steps=steps,
            replans=[Replan.from_json(r) for r in summary["replans"]],
            cost_usd=cost_usd or 0.0,
            wall_s=summary["wall_s"],
            critical_path_s=summary["critical_path_s"],
            notes=summary.get("notes", []),  # absent in summaries written before notes
        ).to_json()

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
        """Write what is queued (raising if it cannot be written) and close the file."""
        try:
            if any(log.queue or log.calls for log in self._logs):
                self.flush(strict=True)
        finally:
            held = sorted(self._heartbeat.held)
            for run_id in held:
                self._heartbeat.discard(run_id)
            if held and self._conn is not None:
                with contextlib.suppress(JournalError), self._db() as db:
                    lease.release(db, held, self._owner)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

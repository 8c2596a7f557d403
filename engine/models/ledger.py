"""The cost ledger and budgets: every model call priced and recorded; budgets checked first.

Calls land in a SQLite file (WAL) under `PLANFILE_HOME`, so the daily budget holds
across runs and processes. Before each call the worst case (counted prompt tokens plus
`max_tokens`, at the model's prices) is reserved against what remains of the run and
daily budgets; a call that could overrun is not made.
"""

from __future__ import annotations

import atexit
import datetime as dt
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# BudgetExceeded is defined in the error tree (engine/run needs it without
# importing engine.models); re-exported here for the callers that import it from the ledger.
from engine.errors import BudgetExceeded as BudgetExceeded
from engine.store.home import data_home

from engine.store.sqlite import connect_wal


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


class Ledger:
    """Model calls and their cost, per step, run and day (SQLite, WAL)."""

    COMMIT_EVERY_S = 0.25
    COMMIT_EVERY_ROWS = 32

    def __init__(self, path: Path | None = None):
        self.path = path or data_home() / "ledger.sqlite"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # Rows are written in small groups (a commit per call was a third of the gateway's
        # overhead). They wait in memory, not in an open transaction, so no lock is held;
        # every read writes them first (budgets see every call), and so do run ends and exit.
        self._pending: list[tuple[object, ...]] = []
        self._last_commit = time.monotonic()
        atexit.register(self.flush)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = connect_wal(self.path, check_same_thread=False)
                # WAL + NORMAL cannot corrupt the ledger; a power cut may lose the last
                # few calls' rows, and saves an fsync per call (0.6 ms here).
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS calls (day TEXT, at TEXT, run_id TEXT, step TEXT,"
                    " model TEXT, input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL)"
                )
                conn.execute("CREATE INDEX IF NOT EXISTS calls_day ON calls(day)")
                conn.commit()
            except sqlite3.DatabaseError as err:
                raise RuntimeError(f"cost ledger {self.path} is unusable: {err}") from None
            self._conn = conn
        return self._conn

    def record(
        self, run_id: str, step: str, model: str, input_tokens: int, output_tokens: int, cost: float
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        row = (
            now.strftime("%Y-%m-%d"),
            now.isoformat(),
            run_id,
            step,
            model,
            input_tokens,
            output_tokens,
            cost,
        )
        with self._lock:
            self._pending.append(row)
            if (
                len(self._pending) >= self.COMMIT_EVERY_ROWS
                or time.monotonic() - self._last_commit >= self.COMMIT_EVERY_S
            ):
                self._write()

    def _write(self) -> None:
        """Write the pending rows in one transaction (held only for that moment)."""
        if self._pending:
            conn = self._db()
            conn.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
            conn.commit()
            self._pending = []
        self._last_commit = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def spent_on(self, day: str) -> float:
        with self._lock:
            self._write()
            row = (
                self._db()
                .execute("SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE day = ?", (day,))
                .fetchone()
            )
        return float(row[0])

    def spent_by_run(self, run_id: str) -> float:
        with self._lock:
            self._write()
            row = (
                self._db()
                .execute("SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE run_id = ?", (run_id,))
                .fetchone()
            )
        return float(row[0])

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Reservation:
    amount: float


class BudgetGuard:
    """Reserve a call's worst case before it is made; settle with the actual cost after."""

    def __init__(self, ledger: Ledger | None, run_usd: float | None, daily_usd: float | None):
        self.ledger = ledger
        self.run_usd = run_usd
        self.daily_usd = daily_usd
        self.spent = 0.0
        self.reserved = 0.0
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.run_usd is not None or self.daily_usd is not None

    def remaining(self) -> float | None:
        """The most a new call may cost now (None: no budget)."""
        limits = []
        if self.run_usd is not None:
            limits.append(self.run_usd - self.spent - self.reserved)
        if self.daily_usd is not None:
            spent_today = self.ledger.spent_on(today()) if self.ledger else self.spent
            limits.append(self.daily_usd - spent_today - self.reserved)
        return min(limits) if limits else None

    def reserve(self, amount: float, model: str) -> Reservation:
        with self._lock:
            if (
                self.run_usd is not None
                and self.spent + self.reserved + amount > self.run_usd + 1e-12
            ):
                raise BudgetExceeded(
                    "run", amount, self.run_usd - self.spent - self.reserved, model
                )
            if self.daily_usd is not None:
                spent_today = self.ledger.spent_on(today()) if self.ledger else self.spent
                if spent_today + self.reserved + amount > self.daily_usd + 1e-12:
                    raise BudgetExceeded(
                        "daily", amount, self.daily_usd - spent_today - self.reserved, model
                    )
            self.reserved += amount
            return Reservation(amount)

    def settle(self, reservation: Reservation, actual: float) -> None:
        with self._lock:
            self.reserved -= reservation.amount
            self.spent += actual

"""The cost ledger and budgets: every model call priced and recorded; budgets checked first.

Calls land in a SQLite file (WAL) under `PLANFILE_HOME`, so the daily budget holds
across runs and processes. Before each call the worst case (counted prompt tokens plus
`max_tokens`, at the model's prices) is reserved against what remains of the run and
daily budgets; a call that could overrun is not made.

A provider may still bill more than the worst case (it reports more tokens than
`max_tokens`). Such a call is recorded at its real cost, and when the spending then
passes a budget the call raises `BudgetOverrun` (a `BudgetExceeded`): its step fails
and the run stops with `budget_exceeded`, never `succeeded`.

A broken ledger file (empty, not SQLite, damaged) is a `LedgerError` when it is opened,
which a run does before its first call; it is never replaced by a new, empty one (that
would reset the day's spending).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import math
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# BudgetExceeded is defined in the error tree (engine/run needs it without
# importing engine.models); re-exported here for the callers that import it from the ledger.
from engine.errors import BudgetExceeded as BudgetExceeded
from engine.errors import StoreError
from engine.store.home import data_home
from engine.store.sqlite import connect_schema, store_error


class LedgerError(StoreError):
    """The cost ledger cannot be read or written (the message names the file)."""


class BudgetOverrun(BudgetExceeded):
    """A call cost more than its worst case and the spending passed a budget."""

    def __init__(self, scope: str, spent: float, limit: float, model: str, cost: float):
        self.spent = spent
        self.limit = limit
        self.cost = cost
        super().__init__(scope, cost, limit - spent, model)
        self.args = (
            f"{scope} budget passed: the call to `{model}` cost ${cost:.6f}, more than its "
            f"worst case (the provider reported more tokens than max_tokens); ${spent:.6f} "
            f"is spent against ${limit:.6f}, so the run stopped",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.scope, self.spent, self.limit, self.model, self.cost))


def usd_problem(value: object) -> str | None:
    """What is wrong with a budget amount (None: a finite number, zero or more)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of US dollars, not {value!r:.40}"
    if not math.isfinite(value):
        return f"must be finite, not {value}"
    if value < 0:
        return f"must be zero or more, not {value}"
    return None


# Why a broken ledger is never replaced by a new one: an empty ledger means "nothing
# spent today" to the daily budget.
_HOLDS = "the spending the daily budget counts"


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
        self._day_total: tuple[str, int, float] = ("", 0, 0.0)  # see spent_on
        # The worst cases reserved by calls in flight, of every run using this object
        # (one engine runs many at once: a batch): the daily budget counts them all, so
        # two runs cannot both reserve the day's last dollar and one be paid past it.
        self.in_flight = 0.0
        self._in_flight_lock = threading.Lock()
        # A commit due on the event loop (see `_commit_soon`), and that loop.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        atexit.register(self._flush_at_exit)

    def open(self) -> None:
        """Open and check the file now: a run does, before its first model call."""
        with self._lock:
            self._db()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_schema(
                self.path,
                (
                    "CREATE TABLE IF NOT EXISTS calls (day TEXT, at TEXT, run_id TEXT, step TEXT,"
                    " model TEXT, input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL)",
                    "CREATE INDEX IF NOT EXISTS calls_day ON calls(day)",
                ),
                what="cost ledger",
                holds=_HOLDS,
                error=LedgerError,
            )
        return self._conn

    def _broken(self, err: sqlite3.Error) -> LedgerError:
        return store_error(LedgerError, "cost ledger", self.path, err, _HOLDS)

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
            else:
                self._commit_soon()

    def _commit_soon(self) -> None:
        """Commit the waiting rows within `COMMIT_EVERY_S` even if no other call comes: a
        run killed during a long tool call keeps the model calls made before it (an agent
        step's resume replays them, and must find them paid). A timer on the running
        event loop; without one, the next call, a read, the run's end or exit writes them."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None and self._timer_loop is loop:
            return
        self._timer_loop = loop
        self._timer = loop.call_later(self.COMMIT_EVERY_S, self._commit_due)

    def _commit_due(self) -> None:
        self._timer = None
        # A broken file: the rows stay pending; the next call or the run's end reports it.
        with contextlib.suppress(LedgerError):
            self.flush()

    def _write(self) -> None:
        """Write the pending rows in one transaction (held only for that moment)."""
        if self._pending:
            conn = self._db()
            try:
                conn.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
                conn.commit()
            except sqlite3.Error as err:
                # The rows stay pending (a lock may pass); the caller hears why.
                conn.rollback()
                raise self._broken(err) from None
            self._pending = []
        self._last_commit = time.monotonic()

    def flush(self) -> None:
        """Write the pending rows; `LedgerError` when the file cannot take them."""
        with self._lock:
            self._write()

    def _flush_at_exit(self) -> None:
        """At exit, a ledger that broke is a line on stderr, not a traceback."""
        try:
            self.flush()
        except LedgerError as err:
            lost = len(self._pending)
            print(f"planfile: {lost} model call(s) not written: {err}", file=sys.stderr)

    def hold(self, amount: float) -> None:
        """Add (or, negative, release) a reservation of a call in flight."""
        with self._in_flight_lock:
            self.in_flight += amount

    def spent_on(self, day: str) -> float:
        """The day's total across processes. Counted incrementally: only the rows added
        since the last read (by rowid, which only grows: the ledger is only appended to)
        are summed, so a daily budget checked before every call of a 100,000-call day
        stays O(new rows) instead of a scan of the whole day (37 ms at 40k rows)."""
        with self._lock:
            self._write()
            counted_day, after, total = self._day_total
            if counted_day != day:
                after, total = 0, 0.0
            added, newest = (
                self._db()
                .execute(
                    "SELECT COALESCE(SUM(cost_usd), 0), MAX(rowid) FROM calls"
                    " WHERE day = ? AND rowid > ?",
                    (day, after),
                )
                .fetchone()
            )
            if newest is not None:
                total, after = total + float(added), int(newest)
            self._day_total = (day, after, total)
        return total

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
            limits.append(self.daily_usd - spent_today - self._day_reserved())
        return min(limits) if limits else None

    def _day_reserved(self) -> float:
        """In-flight reservations the daily budget counts: every run's on this ledger."""
        return self.ledger.in_flight if self.ledger is not None else self.reserved

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
                held = self._day_reserved()
                if spent_today + held + amount > self.daily_usd + 1e-12:
                    raise BudgetExceeded(
                        "daily", amount, self.daily_usd - spent_today - held, model
                    )
            self.reserved += amount
            if self.ledger is not None:
                self.ledger.hold(amount)
            return Reservation(amount)

    def settle(self, reservation: Reservation, actual: float) -> None:
        with self._lock:
            self.reserved -= reservation.amount
            self.spent += actual
            if self.ledger is not None:
                self.ledger.hold(-reservation.amount)

    def passed(self) -> tuple[str, float, float] | None:
        """The budget that spending has gone past: (scope, spent, limit); None if none."""
        if self.run_usd is not None and self.spent > self.run_usd + 1e-12:
            return "run", self.spent, self.run_usd
        if self.daily_usd is not None:
            spent_today = self.ledger.spent_on(today()) if self.ledger else self.spent
            if spent_today > self.daily_usd + 1e-12:
                return "daily", spent_today, self.daily_usd
        return None

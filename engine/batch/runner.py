"""Running a batch: one run per row, many at once on one event loop, through one Engine.

Every row's run goes through the same `Engine`, so the runs share its thread pool,
limits, rate limits, plan cache, journal and cost ledger. At most `max_runs` rows run at
once; the rest wait in the inputs file (read as runs start), so memory holds the running
rows only. Each finished row is one line appended to the results file at once.

Budgets: each run has the engine's run budget (`--budget-per-run`). The daily budget is
the ledger's total for the day across processes (one `BudgetGuard`, the gateway's own):
when it is reached (a run stopped by it, or the ledger's total says so) the batch starts
no new row, lets the running ones finish or stop at the budget, and the rows not done
stay queued: a row stopped mid-way keeps its run id in the batch store, and is resumed
through the journal next time (`Engine.resume`), so its finished steps are not paid again.

A lost cluster (its scheduler gone mid-run, or unreachable when a row starts) stops the
batch the same way: no new row starts, and the rows it stopped stay queued (not written
as failed), to be resumed through the journal when the command runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dsl.errors import PlanfileError
from engine.backends.dask import ClusterUnavailable
from engine.batch.output import ResultsFile
from engine.batch.progress import Counts
from engine.batch.state import DONE, QUEUED, BatchStore
from engine.errors import StoreError
from engine.models.ledger import BudgetGuard, Ledger
from engine.run.hooks import RunHook, RunView
from engine.run.result import RunResult, RunStatus, StepStatus, StopReason, jsonable
from engine.store.journal import NoSuchRun

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan
    from engine.api import Engine

DEFAULT_MAX_RUNS = 16
DAY_CHECK_EVERY_S = 0.2  # the ledger's daily total is read at most this often
STOP_WAIT_S = 30.0  # after Ctrl-C, how long the running rows get to stop and be recorded
# Runs that stopped without an end (Ctrl-C, an approval to give): their rows stay queued,
# resumed from the journal next time.
_STOPPED = frozenset({RunStatus.CANCELLED, RunStatus.AWAITING_APPROVAL})


class _RowStarted(RunHook):
    """Records a row's run id the moment its run opens (before its first step)."""

    __slots__ = ("on_open",)

    def __init__(self, on_open: Callable[[str], None]):
        self.on_open = on_open

    def open(self, run: RunView) -> None:
        self.on_open(run.run_id)
        return None  # nothing else to listen to: the run pays nothing per step for it


def stopped_by_daily_budget(result: RunResult) -> bool:
    """Whether the daily budget (not the run's own) stopped the run: the step the gateway
    refused keeps which budget did (`StepRecord.budget_scope`)."""
    return result.status == RunStatus.BUDGET_EXCEEDED and any(
        record.budget_scope == "daily" for record in result.steps.values()
    )


def _error_of(result: RunResult) -> str | None:
    """Why a run did not succeed: its own error, else its first failed step's."""
    if result.ok or result.error is not None:
        return result.error
    return next(
        (f"{name}: {r.error}" for name, r in result.steps.items() if r.status == StepStatus.FAILED),
        None,
    )


class BatchRunner:
    """Runs the rows of one batch; `counts` says how far it got, even after Ctrl-C."""

    def __init__(
        self,
        engine: Engine,
        checked: CheckedPlan,
        batch_id: str,
        store: BatchStore,
        results: ResultsFile,
        *,
        max_runs: int = DEFAULT_MAX_RUNS,
        daily_usd: float | None = None,
        counts: Counts | None = None,
    ):
        self.engine = engine
        self.checked = checked
        self.batch_id = batch_id
        self.store = store
        self.results = results
        self.max_runs = max_runs
        self.counts = counts or Counts()
        self.expected = checked.plan.expected_cost_usd
        self.daily_stop = False  # the day's budget is reached: start no new row
        self.cluster_lost: str | None = None  # why the cluster is gone: start no new row
        self._day: BudgetGuard | None = None
        if any(engine.registry[step.tool].uses_model for step in checked.plan.steps):
            if engine.ledger is None:
                engine.ledger = Ledger()  # the one the runs will use too
            if daily_usd is not None:
                self._day = BudgetGuard(engine.ledger, None, daily_usd)
        self._day_checked = 0.0

    async def run(
        self, rows: Iterator[tuple[int, dict[str, Any]]], done: set[int], resume: dict[int, str]
    ) -> Counts:
        """Run every row not in `done` (resuming those in `resume` from their runs)."""
        running: set[asyncio.Task[None]] = set()
        try:
            for line, values in rows:
                if line in done:
                    continue
                while len(running) >= self.max_runs:
                    finished, running = await asyncio.wait(
                        running, return_when=asyncio.FIRST_COMPLETED
                    )
                    self._reraise(finished)
                if self._day_reached() or self.cluster_lost is not None:
                    break
                task = asyncio.create_task(self._row(line, values, resume.get(line)))
                running.add(task)
            while running:
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                self._reraise(finished)
        finally:
            if running:  # Ctrl-C, or a broken store: stop the running rows, queued
                for task in running:
                    task.cancel()
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(
                        asyncio.gather(*running, return_exceptions=True), STOP_WAIT_S
                    )
            self.store.flush()
        return self.counts

    @staticmethod
    def _reraise(finished: set[asyncio.Task[None]]) -> None:
        """A row's task fails only when the batch cannot go on (a store broke)."""
        for task in finished:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _day_reached(self) -> bool:
        """Whether the day's budget is spent (the ledger, read at most every 0.2 s)."""
        if self.daily_stop:
            return True
        if self._day is None:
            return False
        now = time.monotonic()
        if now - self._day_checked >= DAY_CHECK_EVERY_S:
            self._day_checked = now
            remaining = self._day.remaining()
            if remaining is not None and remaining <= 0:
                self.daily_stop = True
        return self.daily_stop

    async def _row(self, line: int, values: dict[str, Any], run_id: str | None) -> None:
        counts = self.counts
        run_ids: list[str] = []

        def opened(new_id: str) -> None:
            run_ids.append(new_id)
            self.store.started(self.batch_id, line, new_id)

        hooks = [_RowStarted(opened)]
        # A resumed run's result counts what it spent before: this process spent the rest.
        ledger = self.engine.ledger
        spent_before = ledger.spent_by_run(run_id) if run_id and ledger is not None else 0.0
        counts.running += 1
        started = time.perf_counter()
        try:
            result = await self._start(values, run_id, hooks)
        except asyncio.CancelledError:
            counts.running -= 1
            if run_ids:
                self.store.finished(self.batch_id, line, QUEUED)
                counts.queued_now += 1
            raise
        except StoreError:
            counts.running -= 1
            raise  # the journal, ledger or batch store broke: the batch stops, rows queued
        except ClusterUnavailable as err:
            # The cluster is gone: this row is not the row's fault; it waits, queued.
            counts.running -= 1
            self.cluster_lost = self.cluster_lost or str(err)
            counts.queued_now += 1
            if run_ids:
                self.store.finished(self.batch_id, line, QUEUED)
            return
        except PlanfileError as err:
            # This row's run could not be set up: recorded as an error line, the batch
            # goes on.
            counts.running -= 1
            counts.failed += 1
            self._write(line, run_ids[-1] if run_ids else run_id, "error", started, None, str(err))
            return
        counts.running -= 1
        status = result.status
        lost = result.stop_reason == StopReason.CLUSTER
        if status in _STOPPED or lost or stopped_by_daily_budget(result):
            if stopped_by_daily_budget(result):
                self.daily_stop = True
            if lost:
                self.cluster_lost = self.cluster_lost or (_error_of(result) or "lost the cluster")
            counts.queued_now += 1
            counts.spent_usd += result.cost_usd - spent_before
            self.store.finished(self.batch_id, line, QUEUED)
            return
        counts.spent_usd += result.cost_usd - spent_before
        if result.ok:
            counts.succeeded += 1
        else:
            counts.failed += 1
        self._write(line, result.run_id, str(status), started, result, _error_of(result))
        self.store.finished(self.batch_id, line, DONE)

    async def _start(
        self, values: dict[str, Any], run_id: str | None, hooks: list[Any]
    ) -> RunResult:
        if run_id is not None:
            try:
                return await self.engine.resume(run_id, hooks=hooks)
            except NoSuchRun:
                pass  # killed before its run reached the journal: nothing of it was kept
        return await self.engine.run(self.checked, values, hooks=hooks)

    def _write(
        self,
        line: int,
        run_id: str | None,
        status: str,
        started: float,
        result: RunResult | None,
        error: str | None,
    ) -> None:
        total = time.perf_counter() - started
        execution = result.wall_s if result is not None else 0.0
        cost = result.cost_usd if result is not None else 0.0
        record = {
            "batch": self.batch_id,
            "row": line,
            "run_id": run_id,
            "status": status,
            "outputs": jsonable(result.outputs) if result is not None else {},
            "cost_usd": round(cost, 8),
            "expected_cost_usd": self.expected,
            "cost_over_expected": (
                round(cost / self.expected, 4) if self.expected and result is not None else None
            ),
            "planning_s": round(max(total - execution, 0.0), 6),
            "execution_s": round(execution, 6),
            "step_costs": (
                {name: round(r.cost_usd, 8) for name, r in result.steps.items() if r.cost_usd}
                if result is not None
                else {}
            ),
            "error": error,
        }
        self.results.write(record)

"""The async driver: runs nodes of a `Schedule` as asyncio tasks, as soon as they are ready.

It knows nothing of tools or plans: a `NodeRunner` says what a node does and returns an
`Outcome`. Completion is handled in task done-callbacks (no `asyncio.wait` over the
pending set), so a step starts the instant its last dependency finishes and the cost
per step stays constant however wide the DAG is.

A node the runner calls `eager` (a step whose work cannot wait on the event loop: an
`inline` tool) is run without a task: its coroutine is stepped once in place, and if it
finishes there (no await suspended it) its outcome is applied at once. That saves the
task, its loop iteration and its done-callback (~10 µs per step). A coroutine that does
suspend (a retry's sleep) continues in a task, as if it had been one from the start.
Python 3.12's eager tasks do this in general; here it is opt-in per node because code
before the first suspension runs outside any task (`asyncio.timeout` needs one).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from engine.run.schedule import Schedule

OutcomeKind = Literal["ok", "fail", "skip", "expand"]


@dataclass(slots=True)
class Outcome:
    """What running a node produced."""

    kind: OutcomeKind
    value: Any = None  # "ok": the result; "expand": the items; "skip": the reason
    error: str | None = None
    tolerate: bool = False  # "fail" under on_error: skip
    fallback: int = -1  # "fail": a standby node to run instead


OK_NONE = Outcome("ok")


class NodeRunner(Protocol):
    """The step semantics the driver calls into (engine.run.executor implements it)."""

    def run(self, node: int) -> Awaitable[Outcome]: ...

    def run_item(self, parent: int, index: int, item: Any) -> Awaitable[Outcome]: ...

    def finish_parent(self, parent: int, outcomes: list[Outcome]) -> Outcome: ...

    def skipped(self, node: int, reason: str) -> None: ...

    def cancelled(self, node: int) -> None: ...

    def primary_done(self, primary: int, fallback: int, outcome: Outcome) -> None: ...

    # Optional: `eager(node) -> bool`, whether `run(node)` / an item of it may be stepped
    # outside a task (see the module docstring). Runners without it get a task per node.


# Eager nodes completed in one go before the driver gives the event loop a turn (a task):
# a long chain of instant steps must not starve timers, I/O and Ctrl-C.
EAGER_BATCH = 256


class Driver:
    """Drive a schedule to completion; cancel cleanly when cancelled."""

    def __init__(
        self, schedule: Schedule, runner: NodeRunner, should_stop: Callable[[], bool] | None = None
    ):
        self.schedule = schedule
        self.runner = runner
        self.should_stop = should_stop
        self.tasks: dict[int, asyncio.Task[Outcome]] = {}
        self.item_outcomes: dict[int, list[Outcome | None]] = {}
        self._items: dict[int, tuple[int, int, Any]] = {}  # item node -> (parent, index, item)
        self._finished: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._eager: Callable[[int], bool] | None = getattr(runner, "eager", None)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        try:
            self._launch()
            if not self.schedule.done:
                await self._finished
        except asyncio.CancelledError:
            self._cancel_all()
            raise
        finally:
            if self.tasks:
                self._cancel_all()

    def _cancel_all(self) -> None:
        for node in self.schedule.cancel_all():
            if node < len(self.schedule.parent) and self.schedule.parent[node] < 0:
                self.runner.cancelled(node)
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    def _launch(self) -> None:
        loop = self._loop
        assert loop is not None
        schedule = self.schedule
        eager = self._eager
        budget = EAGER_BATCH if eager is not None else 0
        done: list[tuple[int, Outcome]] = []
        while True:
            if self.should_stop is not None and self.should_stop():
                # Stopping (a budget ran out): start nothing new; once the running steps
                # are done, everything still open is cancelled.
                if not self.tasks:
                    for node in schedule.cancel_all():
                        if schedule.parent[node] < 0:
                            self.runner.cancelled(node)
                return
            for node in schedule.start_ready():
                item = self._items.pop(node, None)
                coro = self.runner.run(node) if item is None else self.runner.run_item(*item)
                if budget and eager is not None and eager(node if item is None else item[0]):
                    budget -= 1
                    outcome = self._step_eagerly(node, cast(Coroutine[Any, Any, Outcome], coro))
                    if outcome is not None:
                        done.append((node, outcome))
                    continue
                task: asyncio.Task[Outcome] = loop.create_task(coro)  # type: ignore[arg-type]
                self.tasks[node] = task
                task.add_done_callback(functools.partial(self._on_done, node))
            if not done:
                return
            # Applied after the batch, as done-callbacks would be: the same nodes start
            # as with tasks, and a chain of eager steps loops here instead of recursing.
            for node, outcome in done:
                self._apply(node, outcome)
            done.clear()

    def _step_eagerly(self, node: int, coro: Coroutine[Any, Any, Outcome]) -> Outcome | None:
        """Step `coro` once in place: its outcome if it finished, else None (it goes on
        in a task, registered like any other)."""
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return cast(Outcome, stop.value)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # a runner bug, as in `_on_done`
            return Outcome("fail", error=f"internal error: {type(err).__name__}: {err}")
        assert self._loop is not None
        task = self._loop.create_task(_resume(coro, yielded))
        self.tasks[node] = task
        task.add_done_callback(functools.partial(self._on_done, node))
        return None

    def _on_done(self, node: int, task: asyncio.Task[Outcome]) -> None:
        self.tasks.pop(node, None)
        if task.cancelled():
            return
        try:
            outcome = task.result()
        except BaseException as err:  # a runner bug: fail the node, keep the run going
            outcome = Outcome("fail", error=f"internal error: {type(err).__name__}: {err}")
        try:
            self._apply(node, outcome)
            self._launch()
        except BaseException as err:
            if self._finished is not None and not self._finished.done():
                self._finished.set_exception(err)
            return
        if self.schedule.done and self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def _apply(self, node: int, outcome: Outcome) -> None:
        schedule = self.schedule
        parent = schedule.parent[node]
        if parent >= 0:
            self._item_done(node, parent, outcome)
            return
        kind = outcome.kind
        if kind == "ok":
            schedule.succeeded(node)
        elif kind == "skip":
            schedule.skip(node)
        elif kind == "expand":
            items = list(outcome.value)
            children = schedule.expand(node, len(items))
            self.item_outcomes[node] = [None] * len(items)
            for index, (child, item) in enumerate(zip(children, items, strict=True)):
                self._items[child] = (node, index, item)
            if not items:
                self._finish_parent(node)
        else:
            fallback = outcome.fallback
            if fallback >= 0 and schedule.can_fall_back(fallback):
                schedule.activate_fallback(node, fallback)
            else:
                _, skipped = schedule.failed(node, tolerate=outcome.tolerate)
                self._report_skipped(skipped, node)
        self._after_fallback(node, outcome)

    def _after_fallback(self, node: int, outcome: Outcome) -> None:
        schedule = self.schedule
        primary = schedule.primary_of.get(node)
        if primary is None or outcome.kind == "expand":
            return
        ok = outcome.kind in ("ok", "skip")
        _, skipped = schedule.fallback_done(node, ok)
        self.runner.primary_done(primary, node, outcome)
        self._report_skipped(skipped, primary)

    def _item_done(self, node: int, parent: int, outcome: Outcome) -> None:
        schedule = self.schedule
        outcomes = self.item_outcomes[parent]
        # Items were created consecutively: their position is the offset from the first.
        first = schedule.children[parent][0]
        index = node - first
        outcomes[index] = outcome
        if outcome.kind == "ok":
            completed = schedule.succeeded(node)
        else:
            completed, _ = schedule.failed(node, tolerate=True)
        if completed:
            self._finish_parent(parent)

    def _finish_parent(self, parent: int) -> None:
        schedule = self.schedule
        outcomes = [
            o if o is not None else Outcome("fail", error="cancelled")
            for o in self.item_outcomes.pop(parent)
        ]
        result = self.runner.finish_parent(parent, outcomes)
        if (
            result.kind == "fail"
            and result.fallback >= 0
            and schedule.can_fall_back(result.fallback)
        ):
            schedule.activate_fallback(parent, result.fallback, holds_slot=False)
            return
        skipped = schedule.finish_parent(parent, result.kind == "ok", tolerate=result.tolerate)
        self._report_skipped(skipped, parent)
        self._after_fallback(parent, result)

    def _report_skipped(self, skipped: list[int], cause: int) -> None:
        if not skipped:
            return
        name = self.schedule.names[cause]
        for node in skipped:
            self.runner.skipped(node, f"`{name}` failed")


async def _resume(coro: Coroutine[Any, Any, Outcome], yielded: Any) -> Outcome:
    """Go on with a coroutine that suspended while stepped in place, yielding `yielded`
    (an asyncio future, or None for a bare yield): what a task would have done with it."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                await yielded
        except asyncio.CancelledError as err:
            if yielded is None or not yielded.cancelled():
                # This task was cancelled while the future was done or never blocking:
                # cancel the coroutine where it waits.
                try:
                    yielded = coro.throw(err)
                except StopIteration as stop:
                    return cast(Outcome, stop.value)
                continue
        except BaseException:  # the coroutine reads the future's error itself, below
            pass
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return cast(Outcome, stop.value)

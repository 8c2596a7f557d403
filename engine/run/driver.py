"""The async driver: runs the nodes of a `Schedule` as soon as they are ready.

It knows nothing of tools or plans: a `NodeRunner` says what a node does and returns an
`Outcome`. The cost per step must stay a few µs however wide or long the DAG is, so a
node is not given a task of its own up front. A dispatcher task starts ready nodes one
after the other *inside itself*: a node whose coroutine finishes without suspending (a
no-op, an `inline` tool, a cache hit, an async tool that awaits nothing) costs one
coroutine step and no task, loop turn or done-callback. A node that does suspend keeps
the dispatcher's task to the end (so `asyncio.current_task()`, `asyncio.timeout` and
cancellation see one task per running step, as before), and a new dispatcher task
takes over the other ready nodes. When a held node finishes and no dispatcher is at
work, its task becomes the dispatcher. Each node runs in its own copy of the context
(`contextvars`), as it would in a task of its own. A dispatcher gives the event loop a
turn every `STEPS_PER_TURN` steps, so a long chain of instant steps does not starve
timers, I/O or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from engine.run.schedule import Schedule

_copy_context = contextvars.copy_context  # once per step: a module global

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

    def run(self, node: int) -> Coroutine[Any, Any, Outcome]: ...

    def run_item(self, parent: int, index: int, item: Any) -> Coroutine[Any, Any, Outcome]: ...

    def finish_parent(self, parent: int, outcomes: list[Outcome]) -> Outcome: ...

    def skipped(self, node: int, reason: str) -> None: ...

    def cancelled(self, node: int) -> None: ...

    def primary_done(self, primary: int, fallback: int, outcome: Outcome) -> None: ...


# Steps a dispatcher runs back to back before it gives the event loop a turn.
STEPS_PER_TURN = 256


class Driver:
    """Drive a schedule to completion; cancel cleanly when cancelled."""

    def __init__(
        self, schedule: Schedule, runner: NodeRunner, should_stop: Callable[[], bool] | None = None
    ):
        self.schedule = schedule
        self.runner = runner
        self.should_stop = should_stop
        self.tasks: set[asyncio.Task[None]] = set()  # the dispatcher and held nodes' tasks
        self.item_outcomes: dict[int, list[Outcome | None]] = {}
        self._items: dict[int, tuple[int, int, Any]] = {}  # item node -> (parent, index, item)
        self._ready: collections.deque[int] = collections.deque()  # started, not yet run
        self._dispatching = False  # a dispatcher task is at work (at most one)
        self._held = 0  # nodes suspended in their task
        self._finished: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        try:
            if not self.schedule.done:
                self._spawn_dispatcher()
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
        self._ready.clear()
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()

    def _spawn_dispatcher(self) -> None:
        assert self._loop is not None
        self._dispatching = True
        task = self._loop.create_task(self._dispatch())
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:  # a driver bug: the run must not hang on it
            self._fail_run(err)

    def _fail_run(self, err: BaseException) -> None:
        if self._finished is not None and not self._finished.done():
            self._finished.set_exception(err)

    def _refill(self) -> bool:
        """Take the nodes the schedule lets start now; False when there are none."""
        schedule = self.schedule
        if self.should_stop is not None and self.should_stop():
            # Stopping (a budget ran out): start nothing new; once the running steps are
            # done, everything still open is cancelled.
            if not self._held:
                for node in schedule.cancel_all():
                    if schedule.parent[node] < 0:
                        self.runner.cancelled(node)
                self._check_done()
            return False
        self._ready.extend(schedule.start_ready())
        return bool(self._ready)

    def _check_done(self) -> None:
        if self.schedule.done and self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def _settle(self, node: int, outcome: Outcome) -> bool:
        """Apply a node's outcome; False when the run is over (done or failed)."""
        schedule = self.schedule
        try:
            # Once per step: a plan step that succeeded, with no fallback running, goes
            # straight to the schedule (what `_apply` would do, two calls fewer).
            if outcome.kind == "ok" and schedule.parent[node] < 0 and not schedule.primary_of:
                schedule.succeeded(node)
            else:
                self._apply(node, outcome)
        except BaseException as err:
            self._fail_run(err)
            return False
        if not schedule.open_count:  # `schedule.done`, read without the property's call
            self._check_done()
            return False
        return True

    async def _dispatch(self) -> None:
        """Run ready nodes in this task, one after the other (see the module docstring)."""
        ready, items = self._ready, self._items
        run, run_item = self.runner.run, self.runner.run_item
        turns = 0
        while True:
            if not ready and not self._refill():
                self._dispatching = False
                return
            node = ready.popleft()
            item = items.pop(node, None) if items else None
            context = _copy_context()
            try:
                # Inside the `try`: a runner may do a node's first work before it returns
                # the coroutine (StepRunner.run does), and a bug there fails the node only.
                coro = run(node) if item is None else run_item(*item)
                yielded = context.run(coro.send, None)
            except StopIteration as stop:
                outcome = stop.value  # (not `typing.cast`: a call per step)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as err:  # a runner bug: fail the node, keep the run going
                outcome = _internal_error(err)
            else:
                # The node suspended: this task stays with it; another one dispatches.
                self._dispatching = False
                self._held += 1  # before `_refill`: a stop must not cancel this node
                if ready or self._refill():
                    self._spawn_dispatcher()
                try:
                    outcome = await _finish(coro, yielded, context)
                except asyncio.CancelledError:
                    raise  # the run is cancelled: nothing to apply
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as err:
                    outcome = _internal_error(err)
                finally:
                    self._held -= 1
                if not self._settle(node, outcome) or self._dispatching:
                    return  # the run is over, or the dispatcher at work takes what is ready
                self._dispatching = True
                turns = 0
                continue
            if not self._settle(node, outcome):
                self._dispatching = False
                return
            turns += 1
            if turns >= STEPS_PER_TURN:
                turns = 0
                await asyncio.sleep(0)

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


def _internal_error(err: BaseException) -> Outcome:
    return Outcome("fail", error=f"internal error: {type(err).__name__}: {err}")


async def _finish(
    coro: Coroutine[Any, Any, Outcome], yielded: Any, context: contextvars.Context
) -> Outcome:
    """Go on with a node's coroutine that suspended yielding `yielded` (an asyncio future,
    or None for a bare yield), in its own context: what a task of its own would do."""
    while True:
        if yielded is not None and not asyncio.isfuture(yielded):
            # What asyncio.Task does: the coroutine yielded something no one can wait
            # on, so it gets an error where it yielded rather than resuming with None.
            try:
                yielded = context.run(coro.throw, RuntimeError(f"Task got bad yield: {yielded!r}"))
            except StopIteration as stop:
                return cast(Outcome, stop.value)
            continue
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                # Taken over as a task takes over what its coroutine yields: the flag the
                # coroutine's own await set is cleared before this task waits on it.
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError as err:
            if yielded is None or not yielded.cancelled():
                # This task was cancelled while the future was done or never blocking:
                # cancel the coroutine where it waits.
                try:
                    yielded = context.run(coro.throw, err)
                except StopIteration as stop:
                    return cast(Outcome, stop.value)
                continue
        except BaseException:  # the coroutine reads the future's error itself, below
            pass
        try:
            yielded = context.run(coro.send, None)
        except StopIteration as stop:
            return cast(Outcome, stop.value)

"""Steps run inside the driver's dispatcher task (engine/run/driver.py): a step that
does not suspend gives the same results, errors, retries and fan-outs as a task of its
own would; a long chain of them neither recurses nor starves the event loop; a step
that suspends keeps one task to its end (`asyncio.timeout` and cancellation work)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from engine import Engine, load_plan
from engine.run import driver as driver_module
from engine.run.driver import OK_NONE, Driver, Outcome
from engine.run.events import Event, StepStarted, StepSucceeded
from engine.run.executor import RetryPolicy
from engine.run.hooks import RunHook
from engine.run.schedule import Schedule
from stdlib_tools import tool

from .engine_tools import TEST_TOOLS

_FAILED_ONCE: set[str] = set()


@tool(inline=True)
def inc(value: int) -> int:
    """value + 1, on the event loop."""
    return value + 1


@tool(inline=True)
def flaky_inline(key: str) -> str:
    """Fails the first time for each key (a retry sleeps: the step suspends)."""
    if key not in _FAILED_ONCE:
        _FAILED_ONCE.add(key)
        raise ConnectionError("transient")
    return key


@tool
async def under_timeout(seconds: float) -> str:
    """Sleeps under `asyncio.timeout(0.05)` (which needs the task running it)."""
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(seconds)
    except TimeoutError:
        return "timed out"
    return "in time"


@tool(inline=True)
def on_loop_thread() -> bool:
    """True on the thread that runs the event loop."""
    return threading.current_thread() is threading.main_thread()


def _engine(**kwargs: Any) -> Engine:
    return Engine(
        tools=[*TEST_TOOLS, inc, flaky_inline, on_loop_thread, under_timeout],
        retry=RetryPolicy(base_s=0.001, cap_s=0.002),
        **kwargs,
    )


def _run(text: str, **kwargs: Any) -> Any:
    eng = _engine(**kwargs)
    try:
        return eng.run_sync(load_plan(text, tools=eng.registry))
    finally:
        eng.close()


def test_a_long_chain_of_inline_steps_runs_in_place_without_recursing() -> None:
    n = 3000  # well past Python's recursion limit if each step applied the next
    lines = ["step s0 = inc(value: 0)"]
    lines += [f"step s{i} = inc(value: s{i - 1})" for i in range(1, n)]
    result = _run("\n".join(lines) + f"\noutput s{n - 1}")
    assert result.status == "succeeded"
    assert result.outputs == {f"s{n - 1}": n}


def test_inline_steps_keep_their_events_order_retries_and_fan_outs() -> None:
    events: list[Event] = []

    class Listen(RunHook):
        def event(self, event: Event) -> None:
            events.append(event)

    _FAILED_ONCE.discard("k")
    result = _run(
        "input xs: list[int] = [1, 2, 3]\n"
        'step a = flaky_inline(key: "k") retry 2\n'
        "step b = for x in xs: inc(value: x)\n"
        "step c = on_loop_thread()\n"
        "output a, b, c",
        hooks=[Listen()],
    )
    assert result.outputs == {"a": "k", "b": [2, 3, 4], "c": True}
    assert result.steps["a"].attempts == 2  # the retry's sleep suspended it: a task went on
    for step in ("a", "c"):
        started = [i for i, e in enumerate(events) if isinstance(e, StepStarted) and e.step == step]
        done = [i for i, e in enumerate(events) if isinstance(e, StepSucceeded) and e.step == step]
        assert started and done and started[0] < done[0]


class _EagerRunner:
    """A runner whose nodes finish at once; `gate` (if set) makes node 1 wait."""

    def __init__(self) -> None:
        self.finished: list[int] = []
        self.gate: asyncio.Future[None] | None = None
        self.cancelled_in_place = False

    async def run(self, node: int) -> Outcome:
        if node == 1 and self.gate is not None:
            try:
                await self.gate
            except asyncio.CancelledError:
                self.cancelled_in_place = True
                raise
        self.finished.append(node)
        return OK_NONE

    async def run_item(self, parent: int, index: int, item: Any) -> Outcome:
        return OK_NONE

    def finish_parent(self, parent: int, outcomes: list[Outcome]) -> Outcome:
        return OK_NONE

    def skipped(self, node: int, reason: str) -> None: ...

    def cancelled(self, node: int) -> None: ...

    def primary_done(self, primary: int, fallback: int, outcome: Outcome) -> None: ...


def _chain(n: int) -> Schedule:
    return Schedule([f"s{i}" for i in range(n)], [[i - 1] if i else [] for i in range(n)])


def test_a_chain_of_instant_steps_gives_the_event_loop_a_turn_every_batch() -> None:
    n = driver_module.STEPS_PER_TURN * 4
    runner = _EagerRunner()
    seen: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def tick() -> None:  # an I/O callback or timer that is due: it must get its turn
            seen.append(len(runner.finished))
            if len(runner.finished) < n:
                loop.call_soon(tick)

        loop.call_soon(tick)
        await Driver(_chain(n), runner).run()

    asyncio.run(main())
    assert runner.finished == list(range(n))
    assert seen and seen[0] <= driver_module.STEPS_PER_TURN + 1
    assert len(seen) >= 3  # turns in the middle of the chain, not only before and after


def test_a_step_that_suspends_goes_on_in_a_task_that_cancelling_the_run_cancels() -> None:
    runner = _EagerRunner()

    async def main() -> None:
        runner.gate = asyncio.get_running_loop().create_future()
        run = asyncio.ensure_future(Driver(_chain(3), runner).run())
        await asyncio.sleep(0.01)
        assert runner.finished == [0]  # node 1 waits on its gate, in a task
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())
    assert runner.cancelled_in_place
    assert runner.finished == [0]


def test_a_step_that_suspends_gets_its_future_s_value_and_error() -> None:
    runner = _EagerRunner()

    async def main(error: BaseException | None) -> None:
        gate = runner.gate = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        if error is None:
            loop.call_later(0.01, gate.set_result, None)
        else:
            loop.call_later(0.01, gate.set_exception, error)
        await Driver(_chain(3), runner).run()

    asyncio.run(main(None))
    assert runner.finished == [0, 1, 2]
    runner.finished.clear()
    runner.gate = None
    asyncio.run(main(RuntimeError("the gate broke")))
    # Node 1's error is its outcome (a runner bug: failed); node 2 never runs.
    assert runner.finished == [0]


def test_steps_under_asyncio_timeout_and_step_timeouts_time_out_alone() -> None:
    """A tool's own `asyncio.timeout` and a step's `timeout` cancel that step only."""
    result = _run(
        "step fast = under_timeout(seconds: 0)\n"
        "step slow = under_timeout(seconds: 5)\n"
        "step cut = sleep(seconds: 5) timeout 0.05s\n"
        "step after_cut = inc(value: 1) after fast, slow\n"
        "output fast, slow, after_cut"
    )
    assert result.steps["fast"].output == "in time"
    assert result.steps["slow"].output == "timed out"
    assert "timed out" in (result.steps["cut"].error or "")
    assert result.steps["after_cut"].output == 2


class _BadAwaitable:
    """Yields a plain value where an awaitable must yield a future (a buggy tool)."""

    def __await__(self) -> Any:
        yield 42


class _BadYieldRunner(_EagerRunner):
    """Node 1 awaits `_BadAwaitable` after suspending once (or at once: `first`)."""

    def __init__(self, first: bool) -> None:
        super().__init__()
        self.first = first
        self.errors: list[str] = []

    async def run(self, node: int) -> Outcome:
        if node == 1:
            if not self.first:
                await asyncio.sleep(0)
            try:
                await _BadAwaitable()
            except RuntimeError as err:
                self.errors.append(str(err))
                return Outcome("fail", error=str(err))
        self.finished.append(node)
        return OK_NONE


@pytest.mark.parametrize("first", [True, False])
def test_a_step_that_yields_a_non_future_gets_a_bad_yield_error_like_a_task(first: bool) -> None:
    async def in_a_task() -> str:
        try:
            await _BadAwaitable()
        except RuntimeError as err:
            return str(err)
        return "resumed"

    async def main() -> str:
        await Driver(_chain(3), runner).run()
        return await asyncio.ensure_future(in_a_task())

    runner = _BadYieldRunner(first)
    task_error = asyncio.run(main())
    assert task_error.startswith("Task got bad yield")
    assert runner.errors == ["Task got bad yield: 42"]
    assert runner.finished == [0]  # node 1 failed where it yielded; node 2 never ran

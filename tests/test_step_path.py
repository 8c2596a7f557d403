"""The step's call path (engine/run/executor.py, engine/run/backend.py): a runner's
`run` may do a node's first work before it returns the coroutine, and a bug there fails
that node only; tool calls come back as awaitables whose results and errors (sync,
async, inline, under a timeout, a tool's sys.exit) are what the tool gave; a run looks
the sync lane up once and hands every call of that run to it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dsl.errors import ToolError
from engine.run import backend as backend_module
from engine.run.backend import LocalCalls
from engine.run.driver import OK_NONE, Driver, Outcome
from engine.run.schedule import Schedule
from stdlib_tools import tool


class _SyncFirstRunner:
    """`run` is a plain function returning the node's coroutine; node 1's raises."""

    def __init__(self) -> None:
        self.finished: list[int] = []
        self.skips: list[tuple[int, str]] = []

    def run(self, node: int) -> Coroutine[Any, Any, Outcome]:
        if node == 1:
            raise KeyError("a runner bug before the coroutine")
        return self._done(node)

    async def _done(self, node: int) -> Outcome:
        self.finished.append(node)
        return OK_NONE

    async def run_item(self, parent: int, index: int, item: Any) -> Outcome:
        return OK_NONE

    def finish_parent(self, parent: int, outcomes: list[Outcome]) -> Outcome:
        return OK_NONE

    def skipped(self, node: int, reason: str) -> None:
        self.skips.append((node, reason))

    def cancelled(self, node: int) -> None: ...

    def primary_done(self, primary: int, fallback: int, outcome: Outcome) -> None: ...


def test_a_runner_error_before_the_coroutine_fails_that_node_and_the_run_ends() -> None:
    # s0 -> s1 -> s2, and s3 on its own: s1's runner bug skips s2, s3 still runs.
    schedule = Schedule(["s0", "s1", "s2", "s3"], [[], [0], [1], []])
    runner = _SyncFirstRunner()

    async def main() -> None:
        await asyncio.wait_for(Driver(schedule, runner).run(), 5)

    asyncio.run(main())
    assert sorted(runner.finished) == [0, 3]
    assert runner.skips == [(2, "`s1` failed")]
    assert schedule.done


@tool
async def a_double(x: int) -> int:
    """2x, asynchronously."""
    await asyncio.sleep(0)
    return 2 * x


@tool
def s_double(x: int) -> int:
    """2x, in the pool."""
    return 2 * x


@tool(inline=True)
def i_double(x: int) -> int:
    """2x, on the loop."""
    return 2 * x


@tool
def s_fail(x: int) -> int:
    """Fails in the pool."""
    raise ValueError(f"bad {x}")


@tool(inline=True)
def i_exit(x: int) -> int:
    """Calls sys.exit on the loop."""
    raise SystemExit(x)


@tool
def s_thread() -> bool:
    """Whether it runs off the loop's thread."""
    return threading.current_thread() is not threading.main_thread()


@tool
def s_hang(seconds: float) -> str:
    """Blocks its thread."""
    time.sleep(seconds)
    return "late"


def test_every_kind_of_tool_gives_its_result_or_error_through_one_run_s_calls() -> None:
    pool = ThreadPoolExecutor(max_workers=4)

    async def main() -> None:
        calls = LocalCalls(pool).call
        assert await calls(a_double, {"x": 2}, None) == 4
        assert await calls(a_double, {"x": 3}, 1.0) == 6
        assert await calls(s_double, {"x": 4}, None) == 8
        assert await calls(s_double, {"x": 5}, 1.0) == 10
        assert await calls(i_double, {"x": 6}, None) == 12
        assert await calls(i_double, {"x": 7}, 1.0) == 14  # a timeout: through the pool
        assert await calls(s_thread, {}, None) is True
        with pytest.raises(ValueError, match="bad 3"):
            await calls(s_fail, {"x": 3}, None)
        with pytest.raises(ToolError, match=r"sys\.exit\(9\)"):
            await calls(i_exit, {"x": 9}, None)
        # A hung sync tool: the timeout abandons it and the loop goes on meanwhile.
        ticks: list[float] = []
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, lambda: ticks.append(loop.time()))
        with pytest.raises(TimeoutError):
            await calls(s_hang, {"seconds": 0.5}, 0.1)
        assert ticks

    try:
        asyncio.run(main())
    finally:
        pool.shutdown(wait=True)


def test_a_run_looks_its_lane_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[object] = []
    real = backend_module.lane_for

    def counted(pool: Any, loop: asyncio.AbstractEventLoop) -> Any:
        lookups.append(pool)
        return real(pool, loop)

    monkeypatch.setattr(backend_module, "lane_for", counted)
    pool = ThreadPoolExecutor(max_workers=2)

    async def main() -> list[int]:
        calls = LocalCalls(pool).call
        return list(await asyncio.gather(*(calls(s_double, {"x": i}, None) for i in range(50))))

    try:
        assert asyncio.run(main()) == [2 * i for i in range(50)]
    finally:
        pool.shutdown(wait=True)
    assert lookups == [pool]

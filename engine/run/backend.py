"""Where a step's tool call executes: the `Backend` interface and the local backend.

The scheduler, the journal, budgets and the ledger always stay in the coordinating
process; a backend only executes calls. `StepRunner.call_tool` (engine/run/executor.py)
hands every tool call to the caller its run's backend bound for the run, and the model
gateway hands the raw provider call to `model_caller` (None: call in this process).

`LocalBackend` (the default) is today's behaviour: async tools on the event loop, sync
tools in the engine's thread pool, `inline` tools on the event loop. Its per-run
`LocalCalls.call` is the hot path of every step: keep it free of extra awaits and
allocations (a 10k no-op fan-out measures it; benchmarks/test_user_path.py). The Dask backend lives in
engine/backends/dask.py.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol, cast

from dsl.errors import ToolError
from engine.run.sync_lane import SyncLane, lane_for
from stdlib_tools.registry import ToolSpec

if TYPE_CHECKING:
    from engine.run.executor import RunContext

# (spec, kwargs ready, timeout_s) -> an awaitable of the tool's result (a coroutine, or
# the lane's future itself); one per run, bound to its context.
ToolCaller = Callable[[ToolSpec, dict[str, Any], float | None], Awaitable[Any]]
# litellm.acompletion's keyword arguments -> its response (the gateway's provider call).
ModelCaller = Callable[[dict[str, Any]], Awaitable[Any]]


class Backend(Protocol):
    """Executes a run's tool calls and model calls (see the module docstring)."""

    name: str

    def tool_caller(self, ctx: RunContext) -> ToolCaller:
        """The function that runs the tool calls of one run (round) of `ctx`."""
        ...

    def model_caller(self, tiers: Mapping[str, str]) -> ModelCaller | None:
        """The gateway's raw provider call, or None to make it in this process.
        `tiers` (tier -> model) lets placement name tiers."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """Everything in this process: the event loop and the engine's thread pool."""

    name = "local"

    def tool_caller(self, ctx: RunContext) -> ToolCaller:
        return LocalCalls(ctx.pool).call

    def model_caller(self, tiers: Mapping[str, str]) -> ModelCaller | None:
        return None

    def close(self) -> None:
        pass


LOCAL = LocalBackend()


class LocalCalls:
    """One run's tool calls in this process. `call` is a plain function returning what
    the caller awaits (no coroutine frame of its own): the tool's coroutine, the lane's
    future, or `asyncio.wait_for` of either under a timeout. The lane standing in for
    the pool is looked up on the run's first sync call: a run stays on one loop."""

    __slots__ = ("_lane", "_loop", "pool")

    def __init__(self, pool: Executor):
        self.pool = pool
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lane: SyncLane | None = None

    def call(
        self, spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float | None
    ) -> Awaitable[Any]:
        """One tool call in this process, under `timeout_s`."""
        call: Awaitable[Any]
        if spec.is_async:
            call = call_async(spec.name, spec.fn(**kwargs))
        elif spec.inline and timeout_s is None:
            # Sync tools run in the pool: they may block (files, CPU), and only a pool
            # call can be abandoned at its timeout. The hop costs ~30-50 µs of CPU and
            # ~100 µs of wall time per call on a busy 2-core machine (10k chained no-op
            # calls; benchmarks/test_user_path.py), more than the rest of a step. A tool
            # declared `@tool(inline=True)` (pure, microseconds) skips it unless its step
            # sets a timeout; a slow "inline" tool stalls every other step meanwhile.
            return _returned(call_sync(spec.name, spec.fn, kwargs))
        else:
            # A timed-out thread cannot be killed, so its late result is discarded. The
            # engine's thread pool is stood in for by a lane of the same size (cheaper
            # per call; engine/run/sync_lane.py); any other executor is used as it is.
            lane = self._lane
            if lane is None:
                loop = self._loop = self._loop or asyncio.get_running_loop()
                lane = self._lane = lane_for(self.pool, loop)
            call = (
                lane.submit(call_sync, spec.name, spec.fn, kwargs)
                if lane is not None
                else cast(asyncio.AbstractEventLoop, self._loop).run_in_executor(
                    self.pool, functools.partial(call_sync, spec.name, spec.fn, kwargs)
                )
            )
        if timeout_s is not None:
            return asyncio.wait_for(call, timeout_s)
        return call


async def call_local(
    pool: Executor, spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float | None
) -> Any:
    """One tool call in this process, under `timeout_s` (for a backend that runs some
    calls here; the local backend's own runs use one `LocalCalls` per run)."""
    return await LocalCalls(pool).call(spec, kwargs, timeout_s)


async def _returned(value: Any) -> Any:
    """An inline tool's result as something to await (it ran already)."""
    return value


def _exit_error(name: str, err: SystemExit) -> ToolError:
    return ToolError(f"tool `{name}` called sys.exit({err.code!r})")


# A tool's sys.exit() is its bug, not a request to stop the run: SystemExit escaping a
# task stops the event loop (the run would end "cancelled"), so it becomes the step's
# ToolError, inside the call (an asyncio task re-raises SystemExit past the step). The
# Dask workers call tools through these too (engine/backends/worker.py).
def call_sync(name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return fn(**kwargs)
    except SystemExit as err:
        raise _exit_error(name, err) from None


async def call_async(name: str, call: Any) -> Any:
    """An async tool's coroutine, its sys.exit() made a ToolError."""
    try:
        return await call
    except SystemExit as err:
        raise _exit_error(name, err) from None

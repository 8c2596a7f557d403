"""Local vs a 2-worker Dask cluster: makespan over critical path, and the Dask backend's
per-step dispatch cost. One run; ratios within it.

Component figures (an in-process `Engine`, no journal or audit log; the cluster is a
real `dask scheduler` and two `dask worker --nthreads 50` processes on 127.0.0.1,
tests/dask_cluster.py):

- I/O-bound: 1,000 steps of 50 ms simulated latency, 100 chains of 10 (critical path
  10 x 50 ms = 0.5 s), max_parallel 100; an async tool (`asyncio.sleep`) and a sync one
  (`time.sleep`: the thread pool locally, the workers' threads on Dask). The figure is
  makespan / critical path (1.0 is perfect).
- Dispatch: no-op steps, (wall on Dask - wall local) / steps, as a chain of 200 (each
  step waits for the one before: the round trip's latency) and as a fan-out of 1,000
  (max_parallel 100: the cost per step when calls overlap). Dask documents ~1 ms of
  scheduler overhead per task; "Dask alone" rows measure distributed's own submit +
  result on the same cluster in the same run (no planfile), the floor on this machine.

Run:  .venv/bin/pytest benchmarks/test_cluster.py -s
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.api import Engine  # noqa: E402
from engine.backends.dask import DaskBackend  # noqa: E402
from stdlib_tools import ToolRegistry  # noqa: E402
from tests.dask_cluster import Cluster  # noqa: E402

pytestmark = pytest.mark.slow

TOOLS = '''
"""Simulated I/O for the cluster benchmark."""
import asyncio
import time

from stdlib_tools import tool


@tool
async def io_async(seconds: float) -> int:
    """Wait `seconds` on the event loop (an I/O-bound async call)."""
    await asyncio.sleep(seconds)
    return 0


@tool
def io_sync(seconds: float) -> int:
    """Block a thread for `seconds` (an I/O-bound sync call)."""
    time.sleep(seconds)
    return 0


@tool
async def noop() -> int:
    """Do nothing."""
    return 0
'''

LATENCY_S = 0.05
CHAINS, DEPTH = 100, 10  # 1,000 steps; critical path DEPTH x LATENCY_S
MAX_PARALLEL = 100
CHAIN_STEPS = 200
FAN_OUT_STEPS = 1_000
RESULTS: list[str] = []


def io_plan(tool: str) -> str:
    lines = []
    for chain in range(CHAINS):
        for depth in range(DEPTH):
            after = f" after s{chain}_{depth - 1}" if depth else ""
            lines.append(f"step s{chain}_{depth} = {tool}(seconds: {LATENCY_S}){after}")
    return "\n".join(lines)


def chain_plan(steps: int) -> str:
    return "\n".join(
        f"step n{i} = noop()" + (f" after n{i - 1}" if i else "") for i in range(steps)
    )


def fan_plan(steps: int) -> str:
    return f"input items: list[int] = {list(range(steps))}\nstep f = for i in items: noop()"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("dask"), {"w1": {}, "w2": {}}, nthreads=50)
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> ToolRegistry:
    path = tmp_path_factory.mktemp("tools") / "bench_cluster_tools.py"
    path.write_text(TOOLS)
    registry = ToolRegistry.standard()
    registry.load_file(path)
    return registry


def timed(engine: Engine, plan: str) -> float:
    checked = engine.check(plan)

    async def go() -> Any:
        started = time.perf_counter()
        result = await engine.run(checked)
        return result, time.perf_counter() - started

    result, wall = asyncio.run(go())
    assert result.status == "succeeded", [(n, r.error) for n, r in result.steps.items() if r.error][
        :3
    ]
    return float(wall)


def dask_alone(cluster: Cluster, calls: int, at_once: bool) -> float:
    """µs per call of distributed itself (a client's submit + result, no planfile): the
    reference for the backend's dispatch cost on this machine, in the same run. The
    call is `int()`: a builtin every worker has (this file's functions are not on them)."""
    from distributed import Client

    with Client(cluster.address, set_as_default=False) as client:
        client.submit(int, pure=False).result()
        started = time.perf_counter()
        if at_once:
            client.gather([client.submit(int, pure=False) for _ in range(calls)])
        else:
            for _ in range(calls):
                client.submit(int, pure=False).result()
        return (time.perf_counter() - started) / calls * 1e6


def test_local_vs_dask(cluster: Cluster, tools: ToolRegistry) -> None:
    local = Engine(tools=tools, max_parallel=MAX_PARALLEL)
    dask = Engine(tools=tools, max_parallel=MAX_PARALLEL, backend=DaskBackend(cluster.address))
    try:
        for engine in (local, dask):  # warm-up: imports, the tools reach the workers
            timed(engine, chain_plan(5))
        critical = DEPTH * LATENCY_S
        RESULTS.append(
            f"I/O-bound, {CHAINS * DEPTH:,} steps of {LATENCY_S * 1000:.0f} ms "
            f"(critical path {critical:.2f} s): makespan / critical path"
        )
        RESULTS.append("| tool | local | Dask, 2 workers | Dask / local |")
        RESULTS.append("| --- | ---: | ---: | ---: |")
        for tool in ("io_async", "io_sync"):
            plan = io_plan(tool)
            here, there = timed(local, plan), timed(dask, plan)
            RESULTS.append(
                f"| {tool} | {here / critical:.2f} ({here:.2f} s) | "
                f"{there / critical:.2f} ({there:.2f} s) | {there / here:.2f} |"
            )
        RESULTS.append("")
        RESULTS.append("Dask dispatch cost per no-op step ((Dask - local) / steps):")
        RESULTS.append("| shape | local µs/step | Dask µs/step | dispatch µs/step |")
        RESULTS.append("| --- | ---: | ---: | ---: |")
        for name, plan, steps in (
            (f"chain of {CHAIN_STEPS}", chain_plan(CHAIN_STEPS), CHAIN_STEPS),
            (f"fan-out of {FAN_OUT_STEPS:,}", fan_plan(FAN_OUT_STEPS), FAN_OUT_STEPS),
        ):
            here, there = timed(local, plan), timed(dask, plan)
            RESULTS.append(
                f"| {name} | {here / steps * 1e6:.0f} | {there / steps * 1e6:.0f} | "
                f"{(there - here) / steps * 1e6:.0f} |"
            )
        RESULTS.append(
            f"| Dask alone, {CHAIN_STEPS} sequential | | | {dask_alone(cluster, CHAIN_STEPS, False):.0f} |"
        )
        RESULTS.append(
            f"| Dask alone, {FAN_OUT_STEPS:,} at once | | | {dask_alone(cluster, FAN_OUT_STEPS, True):.0f} |"
        )
    finally:
        local.close()
        dask.close()
    print("\n" + "\n".join(RESULTS))

"""`planfile bench`'s simulator: its cost per step against the real scheduler's bookkeeping.

The same DAGs as benchmarks/test_scheduler.py (a chain and a fan-out of no-op steps,
and a layered DAG on 8 slots, where critical-path priorities and the heap are at work),
at 10k and 100k steps. Three figures per DAG, in µs per step (`extra_info`):
- `real_scheduler`: Schedule + Driver with a no-op node runner (peers.planfile_scheduler):
  the least a real run spends scheduling, asyncio tasks included;
- `virtual_clock`: the simulator's own loop (engine/sim/clock.py) over the engine's
  Schedule and Priorities (plan_schedule), as one `bench` configuration runs it;
- `whole_bench`: everything one configuration of `planfile bench` computes (the clock,
  the critical path, the superstep baseline, the step that starts last).
Checking the plan is not timed (it is the same for `run`).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from peers import Dag, chain, fan_out, layered, noop, plan_text, planfile_scheduler

from engine import Engine, load_plan
from engine.sim.bench import Bench, BenchSpec
from engine.sim.estimates import Estimator
from stdlib_tools import tool

SIZES = [10_000, 100_000]


@tool(latency_s=0.05)
async def unit() -> None:
    """A no-op step that declares 50 ms (only the simulation reads it)."""


def _layered(n: int) -> Dag:
    return layered(n, max(10, n // 50), seed=3)


SHAPES = {"chain": (chain, 0), "fanout": (fan_out, 0), "layered_8_slots": (_layered, 8)}


@functools.cache
def _dag(shape: str, size: int) -> Dag:
    return SHAPES[shape][0](size)


@functools.cache
def _bench(shape: str, size: int) -> Bench:
    dag = _dag(shape, size)
    checked = load_plan(plan_text(dag, "unit()"), tools=[unit])
    registry = Engine(tools=[unit]).registry
    slots = SHAPES[shape][1] or 1 << 20
    return Bench(checked, registry, Estimator(registry), BenchSpec(max_parallel=[slots]))


def per_step(benchmark: Any, n: int) -> None:
    benchmark.extra_info["us_per_step"] = round(benchmark.stats.stats.median / n * 1e6, 2)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_real_scheduler(benchmark: Any, shape: str, size: int) -> None:
    dag = _dag(shape, size)
    slots = SHAPES[shape][1]
    benchmark.pedantic(
        lambda: asyncio.run(planfile_scheduler(dag, noop, max_parallel=slots)),
        rounds=3,
        warmup_rounds=1,
    )
    per_step(benchmark, size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_virtual_clock(benchmark: Any, shape: str, size: int) -> None:
    bench = _bench(shape, size)
    draw = bench.draw(0)
    slots = bench.spec.max_parallel[0]
    timeline = benchmark.pedantic(lambda: bench.timeline(draw, slots), rounds=3, warmup_rounds=1)
    assert timeline.schedule.done
    per_step(benchmark, size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_whole_bench(benchmark: Any, shape: str, size: int) -> None:
    bench = _bench(shape, size)
    draw = bench.draw(0)
    slots = bench.spec.max_parallel[0]
    metrics = benchmark.pedantic(lambda: bench.run(draw, slots), rounds=3, warmup_rounds=1)
    assert metrics.makespan >= metrics.critical_path - 1e-9
    per_step(benchmark, size)

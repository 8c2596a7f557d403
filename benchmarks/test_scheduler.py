"""Scheduler benchmarks: overhead per step, makespan against the critical path, peers.

Overhead: no-op steps on chains and fan-outs of 1k/10k/100k, for a bare asyncio ready
queue (the floor), planfile's scheduler (Schedule + Driver), the whole engine (plans of
`noop()` tool steps: arguments, validation, records), and LangGraph (optional).
Makespan: random layered DAGs with simulated latencies, unbounded and with 4 slots,
critical-path priority against FIFO; and the whole engine with 4 slots, learning its
tools' latencies while it runs (incremental critical-path priorities) against the same
engine that never updates its first estimates.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from peers import (
    bare_ready_queue,
    chain,
    fan_out,
    langgraph_available,
    langgraph_graph,
    layered,
    noop,
    plan_text,
    planfile_scheduler,
    run_langgraph,
    sleeper,
)

from engine import Engine, load_plan
from engine.run.latency import LatencyModel
from stdlib_tools import tool

SHAPES = {"chain": chain, "fanout": fan_out}
SIZES = [1_000, 10_000, 100_000]


@tool
async def noop_tool() -> None:
    """A tool that does nothing."""


def per_step(benchmark: Any, n: int) -> None:
    benchmark.extra_info["us_per_step"] = round(benchmark.stats.stats.median / n * 1e6, 2)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_overhead_bare_asyncio(benchmark: Any, shape: str, size: int) -> None:
    dag = SHAPES[shape](size)
    benchmark.pedantic(lambda: asyncio.run(bare_ready_queue(dag, noop)), rounds=3, warmup_rounds=1)
    per_step(benchmark, size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_overhead_planfile_scheduler(benchmark: Any, shape: str, size: int) -> None:
    dag = SHAPES[shape](size)
    benchmark.pedantic(
        lambda: asyncio.run(planfile_scheduler(dag, noop)), rounds=3, warmup_rounds=1
    )
    per_step(benchmark, size)


@pytest.mark.parametrize("size", SIZES[:2])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_overhead_planfile_engine(benchmark: Any, shape: str, size: int) -> None:
    """Whole engine per step: a checked plan of `noop_tool()` steps (checking not timed)."""
    dag = SHAPES[shape](size)
    engine = Engine(tools=[noop_tool], max_parallel=1 << 20)
    checked = load_plan(plan_text(dag, "noop_tool()"), tools=[noop_tool])
    result = benchmark.pedantic(lambda: engine.run_sync(checked), rounds=3, warmup_rounds=1)
    assert result.status == "succeeded"
    per_step(benchmark, size)


@pytest.mark.skipif(not langgraph_available(), reason="pip install -e '.[bench]' for LangGraph")
@pytest.mark.parametrize("size", [1_000])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_overhead_langgraph(benchmark: Any, shape: str, size: int) -> None:
    dag = SHAPES[shape](size)
    graph = langgraph_graph(dag, sleep=False)
    benchmark.pedantic(lambda: asyncio.run(run_langgraph(graph, size)), rounds=3, warmup_rounds=1)
    per_step(benchmark, size)


def makespan(benchmark: Any, runner: Any, dag: Any, bound: float) -> None:
    def once() -> float:
        start = asyncio.get_event_loop_policy().new_event_loop()
        try:
            begin = start.time()
            start.run_until_complete(runner())
            return start.time() - begin
        finally:
            start.close()

    times: list[float] = []
    benchmark.pedantic(lambda: times.append(once()), rounds=3, iterations=1)
    median = sorted(times)[len(times) // 2]
    benchmark.extra_info.update(
        {
            "makespan_s": round(median, 4),
            "bound_s": round(bound, 4),
            "ratio": round(median / bound, 4),
        }
    )


LAYERED = layered(200, 10)


def test_makespan_unbounded_planfile(benchmark: Any) -> None:
    """Makespan over the critical path, no slot limit (target <= 1.01)."""
    dag = LAYERED
    makespan(benchmark, lambda: planfile_scheduler(dag, sleeper(dag)), dag, dag.critical_path())


@pytest.mark.skipif(not langgraph_available(), reason="pip install -e '.[bench]' for LangGraph")
def test_makespan_unbounded_langgraph(benchmark: Any) -> None:
    """The same DAG under LangGraph's supersteps."""
    dag = LAYERED
    graph = langgraph_graph(dag, sleep=True)
    makespan(benchmark, lambda: run_langgraph(graph, dag.n), dag, dag.critical_path())


@pytest.mark.parametrize("order", ["critical_path", "fifo"])
def test_makespan_four_slots(benchmark: Any, order: str) -> None:
    """With 4 slots: makespan over max(critical path, work / 4) (target <= 1.05)."""
    dag = LAYERED
    bound = max(dag.critical_path(), sum(dag.durations) / 4)
    makespan(
        benchmark,
        lambda: planfile_scheduler(dag, sleeper(dag), max_parallel=4, fifo=order == "fifo"),
        dag,
        bound,
    )


@tool
async def quick_tool() -> None:
    """Ten milliseconds of waiting."""
    await asyncio.sleep(0.01)


@tool
async def slow_tool() -> None:
    """Two hundred milliseconds of waiting."""
    await asyncio.sleep(0.2)


class FixedLatency(LatencyModel):
    """The first estimates, never refined (what priorities would be without learning)."""

    def observe(self, step: Any, tools: Any, seconds: float) -> None:
        return None


@pytest.mark.parametrize("estimates", ["learned", "fixed"])
def test_makespan_four_slots_engine(benchmark: Any, estimates: str) -> None:
    """The engine with 4 slots on a layered DAG of quick and slow tools, both estimated
    at 10 ms at the start: learning the slow tool's latency reorders the ready steps
    (target <= 1.05x max(critical path, work / 4))."""
    dag = layered(200, 10)
    slow = [d > 0.145 for d in dag.durations]  # ~30% of steps are slow
    dag.durations = [0.2 if s else 0.01 for s in slow]
    lines = []
    for node, needs in enumerate(dag.deps):
        after = f" after {', '.join(f's{d}' for d in needs)}" if needs else ""
        lines.append(f"step s{node} = {'slow_tool' if slow[node] else 'quick_tool'}(){after}")
    tools = [quick_tool, slow_tool]
    checked = load_plan("\n".join(lines) + "\n", tools=tools)
    bound = max(dag.critical_path(), sum(dag.durations) / 4)

    async def run() -> None:
        model = (LatencyModel if estimates == "learned" else FixedLatency).from_tools(
            {t.name: t for t in tools}
        )
        result = await Engine(tools=tools, max_parallel=4, latency=model).run(checked)
        assert result.status == "succeeded"

    makespan(benchmark, run, dag, bound)

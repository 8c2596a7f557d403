"""Baselines and peers for the scheduler benchmarks, over the same DAGs.

- `bare_ready_queue`: the least an asyncio scheduler can do (tasks + in-degree counters).
- `bare_ready_queue` with `in_thread_pool(pool)` as each node's work: the same, each node
  a sync no-op handed to a thread pool with `loop.run_in_executor` (the floor for sync
  tools, which must run off the event loop so a timeout can abandon them).
- `thread_hand_off`: the same ready-queue with no asyncio: the main thread hands every
  ready node to one worker thread through a `SimpleQueue` and takes it back through
  another (a chain is a ping-pong between two threads): the physical floor of "one
  thread hand-off per step", whatever the event loop adds on top.
- `planfile_scheduler`: planfile's Schedule + Driver with a trivial node runner.
- `langgraph_graph`: the same DAG as a LangGraph StateGraph (optional; superstep model).
"""

from __future__ import annotations

import asyncio
import functools
import operator
import queue
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from engine.run.driver import OK_NONE, Driver, Outcome
from engine.run.latency import CriticalTails
from engine.run.schedule import Schedule


@dataclass
class Dag:
    """Nodes 0..n-1 with dependency lists and a simulated duration per node (seconds)."""

    deps: list[list[int]]
    durations: list[float]

    @property
    def n(self) -> int:
        return len(self.deps)

    def names(self) -> list[str]:
        return [f"s{i}" for i in range(self.n)]

    def critical_path(self) -> float:
        return max(self.tails(), default=0.0)

    def tails(self) -> list[float]:
        # Nodes are numbered in a topological order (every dependency is a lower number).
        return CriticalTails(self.deps, range(self.n), self.durations).tails


def chain(n: int) -> Dag:
    return Dag([[i - 1] if i else [] for i in range(n)], [0.0] * n)


def fan_out(n: int) -> Dag:
    return Dag([[] for _ in range(n)], [0.0] * n)


def layered(
    n: int = 200, layers: int = 10, low: float = 0.01, high: float = 0.2, seed: int = 1
) -> Dag:
    """Random layered DAG: each node depends on 1-3 nodes of the previous layer."""
    rng = random.Random(seed)
    per = n // layers
    deps: list[list[int]] = []
    for node in range(n):
        layer = node // per
        if layer == 0:
            deps.append([])
        else:
            lo = (layer - 1) * per
            deps.append(sorted({rng.randrange(lo, lo + per) for _ in range(rng.randint(1, 3))}))
    return Dag(deps, [rng.uniform(low, high) for _ in range(n)])


async def bare_ready_queue(dag: Dag, work: Callable[[int], Coroutine[Any, Any, Any]]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    successors: list[list[int]] = [[] for _ in range(dag.n)]
    for node, needs in enumerate(dag.deps):
        for need in needs:
            successors[need].append(node)
    indegree = [len(d) for d in dag.deps]
    remaining = [dag.n]

    def finished(node: int, _task: asyncio.Task[Any]) -> None:
        remaining[0] -= 1
        for succ in successors[node]:
            indegree[succ] -= 1
            if indegree[succ] == 0:
                start(succ)
        if remaining[0] == 0:
            done.set_result(None)

    def start(node: int) -> None:
        loop.create_task(work(node)).add_done_callback(functools.partial(finished, node))

    for node in range(dag.n):
        if indegree[node] == 0:
            start(node)
    await done


class _Runner:
    def __init__(self, work: Callable[[int], Awaitable[Any]]):
        self.work = work

    async def run(self, node: int) -> Outcome:
        await self.work(node)
        return OK_NONE

    async def run_item(self, parent: int, index: int, item: Any) -> Outcome:
        return OK_NONE

    def finish_parent(self, parent: int, outcomes: list[Outcome]) -> Outcome:
        return OK_NONE

    def skipped(self, node: int, reason: str) -> None: ...

    def cancelled(self, node: int) -> None: ...

    def primary_done(self, primary: int, fallback: int, outcome: Outcome) -> None: ...


async def planfile_scheduler(
    dag: Dag, work: Callable[[int], Awaitable[Any]], *, max_parallel: int = 0, fifo: bool = False
) -> None:
    priority = [0.0] * dag.n if fifo else dag.tails()
    schedule = Schedule(dag.names(), dag.deps, priority=priority, max_parallel=max_parallel)
    await Driver(schedule, _Runner(work)).run()


async def noop(node: int) -> None:
    return None


def sync_noop() -> None:
    return None


def in_thread_pool(pool: Executor) -> Callable[[int], Coroutine[Any, Any, None]]:
    """Node work that runs a sync no-op in `pool`: one thread hand-off per node, what a
    plain asyncio program pays to keep a sync call off its event loop."""

    async def work(node: int) -> None:
        await asyncio.get_running_loop().run_in_executor(pool, sync_noop)

    return work


HAND_OFF_DEADLINE_S = 60.0  # no node of a no-op DAG waits this long: a hung worker


def thread_hand_off(dag: Dag) -> None:
    """Run the DAG's nodes, each a sync no-op, on one worker thread: every node goes to
    the worker through one `SimpleQueue` and comes back through another, and its
    successors are released on this thread (no event loop, no futures, no GIL-free
    work: only the two wake-ups of a hand-off and back)."""
    jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    results: queue.SimpleQueue[int] = queue.SimpleQueue()

    def worker() -> None:
        while (node := jobs.get(timeout=HAND_OFF_DEADLINE_S)) is not None:
            sync_noop()
            results.put(node)

    thread = threading.Thread(target=worker, name="hand-off", daemon=True)
    thread.start()
    successors: list[list[int]] = [[] for _ in range(dag.n)]
    for node, needs in enumerate(dag.deps):
        for need in needs:
            successors[need].append(node)
    indegree = [len(d) for d in dag.deps]
    for node in range(dag.n):
        if indegree[node] == 0:
            jobs.put(node)
    try:
        for _ in range(dag.n):
            for succ in successors[results.get(timeout=HAND_OFF_DEADLINE_S)]:
                indegree[succ] -= 1
                if indegree[succ] == 0:
                    jobs.put(succ)
    finally:
        jobs.put(None)
        thread.join(HAND_OFF_DEADLINE_S)


def sleeper(dag: Dag) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def work(node: int) -> None:
        await asyncio.sleep(dag.durations[node])

    return work


def plan_text(dag: Dag, tool: str = "noop()") -> str:
    lines = []
    for node, needs in enumerate(dag.deps):
        after = f" after {', '.join(f's{d}' for d in needs)}" if needs else ""
        lines.append(f"step s{node} = {tool}{after}")
    return "\n".join(lines) + "\n"


class LangGraphState(TypedDict):
    done: Annotated[list[int], operator.add]


def langgraph_available() -> bool:
    try:
        import langgraph.graph  # noqa: F401
    except ImportError:
        return False
    return True


def langgraph_graph(dag: Dag, sleep: bool) -> Any:
    """The DAG as a LangGraph StateGraph; a node with several dependencies waits for all."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(LangGraphState)

    def make(node: int) -> Any:
        if sleep:

            async def step(state: LangGraphState) -> dict[str, list[int]]:
                await asyncio.sleep(dag.durations[node])
                return {"done": [node]}
        else:

            async def step(state: LangGraphState) -> dict[str, list[int]]:
                return {"done": [node]}

        return step

    successors = [0] * dag.n
    for node in range(dag.n):
        graph.add_node(f"s{node}", make(node))
    for node, needs in enumerate(dag.deps):
        if not needs:
            graph.add_edge(START, f"s{node}")
        elif len(needs) == 1:
            graph.add_edge(f"s{needs[0]}", f"s{node}")
        else:
            graph.add_edge([f"s{d}" for d in needs], f"s{node}")
        for need in needs:
            successors[need] += 1
    for node in range(dag.n):
        if successors[node] == 0:
            graph.add_edge(f"s{node}", END)
    return graph.compile()


async def run_langgraph(compiled: Any, n: int) -> None:
    await compiled.ainvoke({"done": []}, {"recursion_limit": n + 10})

"""A run's schedule as `plan_schedule` sets it up from the compiled plan: the shared integer
arrays, the first priorities and the slot-only fast path behave as the long way round."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dsl import check, parse_text
from dsl.checker import CheckedPlan
from engine.run.latency import LatencyModel
from engine.run.schedule import Schedule, State
from engine.run.session import limit_groups, plan_schedule
from stdlib_tools import ToolRegistry

from .dag_oracle import tails as oracle_tails

REGISTRY = ToolRegistry.standard()
SECONDS = {"calculate": 1.0, "search": 3.0}


@st.composite
def mixed_plans(draw: st.DrawFn) -> tuple[CheckedPlan, list[list[int]], list[str]]:
    """A random DAG as a checked plan written in any order, each step `calculate` or
    `search` (two latency estimates, so the priorities are not all alike)."""
    n = draw(st.integers(1, 25))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    tools = [draw(st.sampled_from(sorted(SECONDS))) for _ in range(n)]
    written = draw(st.permutations(range(n)))
    lines = []
    for node in written:
        after = f" after {', '.join(f's{d}' for d in deps[node])}" if deps[node] else ""
        arg = 'expression: "1"' if tools[node] == "calculate" else 'query: "x"'
        lines.append(f"step s{node} = {tools[node]}({arg}){after}")
    plan, smap = parse_text("\n".join(lines) + "\n")
    return check(plan, REGISTRY, smap), deps, tools


def simulate(schedule: Schedule, seconds: Sequence[float]) -> list[int]:
    """Run the schedule under a virtual clock; the nodes in the order they started."""
    clock = 0.0
    running: list[tuple[float, int]] = []
    started: list[int] = []
    while not schedule.done:
        for node in schedule.start_ready():
            started.append(node)
            heapq.heappush(running, (clock + seconds[node], node))
        assert running, "deadlock: nothing running and not done"
        clock, node = heapq.heappop(running)
        schedule.succeeded(node)
    return started


@given(mixed_plans(), st.integers(1, 4), st.booleans())
def test_compiled_schedule_runs_as_one_built_from_dependencies(
    case: tuple[CheckedPlan, list[list[int]], list[str]], slots: int, limited: bool
) -> None:
    """Over random plans, the compiled set-up (shared successor lists, the first
    priorities given as one list, no limit groups without a limit) starts exactly the
    steps, in exactly the order, of a schedule built from the dependency lists with the
    brute-force remaining critical paths as priorities."""
    checked, _, _ = case
    limits = {"tool:search": 1} if limited else {}
    latency = LatencyModel(tool_s=dict(SECONDS))
    schedule, priorities = plan_schedule(
        checked, REGISTRY, latency, limits=limits, max_parallel=slots
    )
    dag = checked.graph.compact
    steps = checked.plan.steps
    seconds = [SECONDS[step.tool] for step in steps]
    expected = oracle_tails(dag.deps, seconds)
    assert all(abs(a - b) < 1e-9 for a, b in zip(schedule.priority, expected, strict=True))
    reference = Schedule(
        dag.names,
        dag.deps,
        priority=expected,
        groups=limit_groups(steps, REGISTRY),
        limits=limits,
        max_parallel=slots,
    )
    # Equal estimates observed back: the priorities stay as they are on both sides.
    assert simulate(schedule, seconds) == simulate(reference, seconds)
    assert all(state == State.SUCCEEDED for state in schedule.state)
    assert priorities.active


@given(mixed_plans(), st.integers(1, 6))
def test_slot_only_schedules_start_the_most_critical_ready_steps(
    case: tuple[CheckedPlan, list[list[int]], list[str]], slots: int
) -> None:
    """With only a slot count (no limit group), every start takes the highest priorities
    among the ready steps, never more than the free slots, never before a dependency."""
    checked, _, tools = case
    dag = checked.graph.compact
    schedule, _ = plan_schedule(
        checked, REGISTRY, LatencyModel(tool_s=dict(SECONDS)), limits={}, max_parallel=slots
    )
    seconds = [SECONDS[step.tool] for step in checked.plan.steps]
    finished: set[int] = set()
    clock = 0.0
    running: list[tuple[float, int]] = []
    while not schedule.done:
        ready_before = {n for n, s in enumerate(schedule.state) if s == State.READY}
        started = schedule.start_ready()
        assert len(started) == min(len(ready_before), slots - len(running))
        left = ready_before - set(started)
        for node in started:
            assert all(dep in finished for dep in dag.deps[node])
            assert all(schedule.priority[node] >= schedule.priority[other] for other in left)
            heapq.heappush(running, (clock + seconds[node], node))
        clock, node = heapq.heappop(running)
        finished.add(node)
        schedule.succeeded(node)
    assert finished == set(range(len(tools)))


def test_fan_out_items_leave_the_compiled_arrays_alone() -> None:
    """The schedule shares the compiled plan's successor lists: expanding a fan-out and
    running it to the end changes none of them (the next run reads the same lists)."""
    plan, smap = parse_text(
        'input xs: list[str] = ["a", "b", "c"]\n'
        "step each = for x in xs: search(query: x)\n"
        'step after = calculate(expression: "1") after each\n'
    )
    checked = check(plan, REGISTRY, smap)
    dag = checked.graph.compact
    before = [list(users) for users in dag.successors]
    schedule, _ = plan_schedule(checked, REGISTRY, LatencyModel(), limits={}, max_parallel=2)
    assert schedule.start_ready() == [0]
    items = schedule.expand(0, 3)
    for item in items:
        schedule.start_ready()
        schedule.succeeded(item)
    schedule.finish_parent(0, True)
    assert schedule.start_ready() == [1]
    schedule.succeeded(1)
    assert schedule.done
    assert [list(users) for users in dag.successors] == before
    assert len(dag.successors) == 2 and len(schedule.successors) == 5


def test_reprioritize_with_a_list_gives_fan_out_items_their_parents_value() -> None:
    """A list of values for the plan's nodes re-keys the ready ones, items included."""
    s = Schedule(["fan", "other"], [[], []], max_parallel=1)
    assert s.start_ready() == [0]
    first, second = s.expand(0, 2)
    s.reprioritize([1.0, 5.0])
    assert s.priority == [1.0, 5.0, 1.0, 1.0]
    assert s.start_ready() == [1]  # other now goes ahead of the fan-out's items
    s.reprioritize([9.0, 0.0])
    s.succeeded(1)
    assert s.start_ready() == [first] and s.priority[second] == 9.0


def test_cancel_all_after_the_end_cancels_nothing() -> None:
    s = Schedule(["a", "b"], [[], [0]], max_parallel=4)
    s.succeeded(*s.start_ready())
    s.succeeded(*s.start_ready())
    assert s.done and s.cancel_all() == []
    assert s.state == [State.SUCCEEDED, State.SUCCEEDED]


class CountingLatency(LatencyModel):
    """A latency model that counts the keys it is asked for."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.asked = 0

    def key(self, step: Any, tools: Any) -> tuple[str, str]:
        self.asked += 1
        return super().key(step, tools)


def test_estimates_are_looked_up_once_per_tool_and_tier() -> None:
    """A 300-step plan over two tools asks the latency model twice, not 300 times, and a
    plan with one estimate for every step keeps no per-estimate step lists."""
    lines = [f'step s{i} = {"search" if i % 2 else "calculate"}(query: "x")' for i in range(300)]
    lines = [line.replace('calculate(query: "x")', 'calculate(expression: "1")') for line in lines]
    plan, smap = parse_text("\n".join(lines) + "\n")
    checked = check(plan, REGISTRY, smap)
    latency = CountingLatency(tool_s=dict(SECONDS))
    _, priorities = plan_schedule(checked, REGISTRY, latency, limits={}, max_parallel=2)
    assert latency.asked == 2 and not priorities.static
    assert sorted(len(nodes) for nodes in priorities.by_key.values()) == [150, 150]
    single, smap = parse_text('step a = search(query: "x")\nstep b = search(query: "{{ a }}")\n')
    latency = CountingLatency(tool_s=dict(SECONDS))
    schedule, priorities = plan_schedule(
        check(single, REGISTRY, smap), REGISTRY, latency, limits={}, max_parallel=2
    )
    assert latency.asked == 1 and priorities.static and priorities.by_key == {}
    assert schedule.priority == [6.0, 3.0]

"""The scheduler's bookkeeping, tested without running anything."""

from __future__ import annotations

import heapq
import random

from hypothesis import given
from hypothesis import strategies as st

from dsl import check, parse_text
from engine.run.latency import CriticalTails, LatencyModel, Priorities
from engine.run.schedule import Schedule, State
from stdlib_tools import ToolRegistry

from .dag_oracle import dags
from .dag_oracle import tails as oracle_tails


def diamond() -> Schedule:
    # a -> b, a -> c, b -> d, c -> d
    return Schedule(["a", "b", "c", "d"], [[], [0], [0], [1, 2]])


def test_a_step_is_ready_when_its_last_dependency_finishes() -> None:
    """No supersteps: d waits for b and c, nothing else."""
    s = diamond()
    assert s.start_ready() == [0]
    s.succeeded(0)
    assert sorted(s.start_ready()) == [1, 2]
    s.succeeded(1)
    assert s.start_ready() == []
    s.succeeded(2)
    assert s.start_ready() == [3]
    s.succeeded(3)
    assert s.done


def test_longest_remaining_path_goes_first() -> None:
    """With one slot, the ready step with the most work behind it starts first."""
    s = Schedule(["short", "long"], [[], []], priority=[1.0, 5.0], max_parallel=1)
    assert s.start_ready() == [1]


def test_global_and_group_limits() -> None:
    """Slots are bounded globally and per group; a blocked group does not block others."""
    s = Schedule(
        ["a", "b", "c", "d"],
        [[], [], [], []],
        groups=[["tool:search"], ["tool:search"], ["tool:search"], ["tool:calc"]],
        limits={"tool:search": 1},
        max_parallel=3,
    )
    started = s.start_ready()
    assert len(started) == 2 and 3 in started
    assert s.group_running["tool:search"] == 1
    first_search = next(n for n in started if n != 3)
    s.succeeded(first_search)
    assert len(s.start_ready()) == 1


def test_failure_skips_dependents_only() -> None:
    """A failed step's dependents are skipped; independent branches go on."""
    s = Schedule(["a", "b", "c", "x"], [[], [0], [1], []])
    assert sorted(s.start_ready()) == [0, 3]
    _, skipped = s.failed(0)
    assert sorted(skipped) == [1, 2]
    assert s.state[1] == State.SKIPPED and s.state[2] == State.SKIPPED
    assert not s.done
    s.succeeded(3)
    assert s.done


def test_tolerated_failure_lets_dependents_run() -> None:
    """on_error: skip keeps the dependents running."""
    s = Schedule(["a", "b"], [[], [0]])
    s.start_ready()
    _, skipped = s.failed(0, tolerate=True)
    assert skipped == [] and s.start_ready() == [1]


def test_fan_out_items_complete_the_parent() -> None:
    """Expanded items take slots; the parent completes when the last item does."""
    s = Schedule(["xs", "after"], [[], [0]], max_parallel=2)
    assert s.start_ready() == [0]
    items = s.expand(0, 3)
    assert len(s.start_ready()) == 2
    assert s.succeeded(items[0]) == []
    s.start_ready()
    s.succeeded(items[1])
    assert s.succeeded(items[2]) == [0]
    s.finish_parent(0, ok=True)
    assert s.start_ready() == [1]


def test_empty_fan_out() -> None:
    """Zero items: the parent completes at once."""
    s = Schedule(["xs", "after"], [[], [0]])
    s.start_ready()
    assert s.expand(0, 0) == []
    s.finish_parent(0, ok=True)
    assert s.start_ready() == [1]


def test_fallback_runs_only_when_its_primary_fails() -> None:
    """A standby fallback is not scheduled until activated; its outcome completes the primary."""
    s = Schedule(["a", "fb", "user"], [[], [], [0]], standby=[1])
    assert s.start_ready() == [0]
    assert s.can_fall_back(1)
    s.activate_fallback(0, 1)
    assert s.start_ready() == [1]
    s.succeeded(1)
    primary, skipped = s.fallback_done(1, ok=True)
    assert primary == 0 and skipped == []
    assert s.start_ready() == [2]
    s.succeeded(2)
    assert s.done


def test_unneeded_fallback_does_not_block_completion() -> None:
    """A plan whose primaries succeed is done without its standby fallbacks."""
    s = Schedule(["a", "fb"], [[], []], standby=[1])
    s.start_ready()
    s.succeeded(0)
    assert s.done


def test_cancel_all() -> None:
    """Cancelling marks every open node cancelled."""
    s = diamond()
    s.start_ready()
    assert sorted(s.cancel_all()) == [0, 1, 2, 3]
    assert s.done


@st.composite
def random_runs(draw: st.DrawFn) -> tuple[int, list[list[int]], list[float], list[bool], int, int]:
    n = draw(st.integers(1, 40))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    durations = [draw(st.floats(0.1, 10)) for _ in range(n)]
    fails = [draw(st.booleans()) and draw(st.booleans()) for _ in range(n)]
    return n, deps, durations, fails, draw(st.integers(1, 8)), draw(st.integers(1, 3))


@given(random_runs())
def test_simulated_runs_keep_the_invariants(
    run: tuple[int, list[list[int]], list[float], list[bool], int, int],
) -> None:
    """Over random DAGs, durations and failures (discrete-event simulation):
    every step runs at most once, never before its dependencies, limits hold,
    dependents of a failed step never run, and everything else does."""
    n, deps, durations, fails, max_parallel, group_limit = run
    groups = [[f"g{i % 2}"] for i in range(n)]
    s = Schedule(
        [f"s{i}" for i in range(n)],
        deps,
        priority=[random.random() for _ in range(n)],
        groups=groups,
        limits={"g0": group_limit},
        max_parallel=max_parallel,
    )
    clock = 0.0
    events: list[tuple[float, int]] = []
    started: list[int] = []
    finished_at: dict[int, float] = {}
    failed: set[int] = set()
    while not s.done:
        for node in s.start_ready():
            started.append(node)
            for dep in deps[node]:
                assert dep in finished_at and finished_at[dep] <= clock and dep not in failed
            heapq.heappush(events, (clock + durations[node], node))
        assert s.running <= max_parallel
        assert sum(1 for e in events if groups[e[1]] == ["g0"]) <= group_limit
        assert events, "deadlock: nothing running and not done"
        clock, node = heapq.heappop(events)
        finished_at[node] = clock
        if fails[node]:
            failed.add(node)
            s.failed(node)
        else:
            s.succeeded(node)
    assert len(started) == len(set(started))
    doomed = set()
    for node in range(n):  # deps come before users, so one pass finds all
        if any(d in failed or d in doomed for d in deps[node]):
            doomed.add(node)
    assert set(started) == set(range(n)) - doomed
    assert all(s.state[node] == State.SKIPPED for node in doomed)


def test_reprioritize_rekeys_ready_nodes() -> None:
    """New estimates change which ready node starts first."""
    s = Schedule(["a", "b"], [[], []], priority=[5.0, 1.0], max_parallel=1)
    s.reprioritize([1.0, 5.0])
    assert s.start_ready() == [1]


@given(dags(max_nodes=12))
def test_critical_tails_equal_brute_force(dag: tuple[list[list[int]], list[float]]) -> None:
    """Each node's tail is the heaviest path starting at it."""
    deps, durations = dag
    tails = CriticalTails(deps, range(len(deps)), durations).tails
    assert all(abs(a - b) < 1e-9 for a, b in zip(tails, oracle_tails(deps, durations), strict=True))


@given(
    dags(max_nodes=25),
    st.lists(st.dictionaries(st.integers(0, 24), st.floats(0, 10), max_size=4), max_size=8),
)
def test_incremental_tails_equal_a_full_recompute(
    dag: tuple[list[list[int]], list[float]], updates: list[dict[int, float]]
) -> None:
    """After any sequence of estimate changes, the incrementally updated tails are exactly
    those a full recompute gives, and `update` reports exactly the nodes that moved."""
    deps, durations = dag
    n = len(deps)
    order = list(range(n))
    tails = CriticalTails(deps, order, durations)
    for update in updates:
        update = {node % n: seconds for node, seconds in update.items()}
        before = list(tails.tails)
        changed = tails.update(update)
        durations = [update.get(i, d) for i, d in enumerate(durations)]
        assert tails.tails == CriticalTails(deps, order, durations).tails
        assert sorted(changed) == [i for i in range(n) if tails.tails[i] != before[i]]


def test_incremental_update_skips_started_steps() -> None:
    """Only steps not yet started are recomputed: their ancestors have all run."""
    # a -> b -> c
    tails = CriticalTails([[], [0], [1]], [0, 1, 2], [1.0, 1.0, 1.0])
    changed = tails.update({2: 5.0}, live=lambda node: node != 0)
    assert changed == [2, 1] and tails.tails == [3.0, 6.0, 5.0]


def test_priorities_follow_observed_latencies() -> None:
    """With one slot, a step whose tool turns out slow moves ahead of a cheap one."""
    text = (
        'step a = calculate(expression: "1")\n'
        'step b = search(query: "x")\n'
        'step c = calculate(expression: "{{ a }}")\n'
        'step d = search(query: "{{ b }}")\n'
    )
    plan, smap = parse_text(text)
    registry = ToolRegistry.standard()
    checked = check(plan, registry, smap)
    dag = checked.graph.compact
    latency = LatencyModel(tool_s={"calculate": 1.0, "search": 0.1})
    s = Schedule(dag.names, dag.deps, max_parallel=1)
    priorities = Priorities(dag, checked.plan.steps, latency, registry, s)
    assert s.priority[:4] == [2.0, 0.2, 1.0, 0.1]
    first = s.start_ready()
    assert first == [0]  # a: the calculate chain looks longest
    priorities.observe(checked.plan.steps[0], 41.0)  # calculate: 1 + 0.3 * 40 = 13
    s.succeeded(0)
    assert s.priority[:4] == [2.0, 0.2, 13.0, 0.1]  # a already ran: left alone
    # Now search turns out far slower than calculate: b overtakes c.
    priorities.observe(checked.plan.steps[1], 100.0)
    assert s.priority[1] > s.priority[2]
    assert s.start_ready() == [1]


def test_priorities_are_not_computed_without_slot_limits() -> None:
    plan, smap = parse_text('step a = calculate(expression: "1")\n')
    checked = check(plan, ToolRegistry.standard(), smap)
    s = Schedule(checked.graph.compact.names, checked.graph.compact.deps)
    priorities = Priorities(
        checked.graph.compact, checked.plan.steps, LatencyModel(), ToolRegistry.standard(), s
    )
    assert not priorities.active and s.priority == [0.0]


def test_finished_steps_from_an_earlier_round() -> None:
    """Preset successes release their dependents; preset failures skip theirs."""
    s = Schedule(
        ["a", "b", "c", "d"], [[], [0], [], [2]], finished={0: State.SUCCEEDED, 2: State.FAILED}
    )
    assert s.start_ready() == [1]
    assert s.initially_skipped == [3] and s.state[3] == State.SKIPPED
    s.succeeded(1)
    assert s.done

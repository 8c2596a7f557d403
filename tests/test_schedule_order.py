"""The order in which a slot-limited schedule starts steps: the most critical first, and
among equals the one that became ready first (the scheduler's documented contract)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.run.schedule import Schedule


@st.composite
def limited_runs(draw: st.DrawFn) -> tuple[list[list[int]], list[float], int, list[int]]:
    """A DAG (deps point to earlier nodes), priorities with ties, a slot count, and which
    running step finishes next (as indices into the running set)."""
    count = draw(st.integers(1, 14))
    deps = [
        sorted(draw(st.sets(st.integers(0, node - 1), max_size=3))) if node else []
        for node in range(count)
    ]
    priority = [float(draw(st.integers(0, 3))) for _ in range(count)]
    slots = draw(st.integers(1, 4))
    picks = draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
    return deps, priority, slots, picks


def _expected_starts(
    deps: list[list[int]], priority: list[float], slots: int, picks: list[int]
) -> list[list[int]]:
    """What the contract says, written plainly: a ready list sorted by (-priority, when
    the node became ready)."""
    waiting = [len(d) for d in deps]
    users: list[list[int]] = [[] for _ in deps]
    for node, needs in enumerate(deps):
        for need in needs:
            users[need].append(node)
    became_ready = 0
    ready: list[tuple[float, int, int]] = []
    for node in range(len(deps)):
        if not waiting[node]:
            became_ready += 1
            ready.append((-priority[node], became_ready, node))
    running: list[int] = []
    rounds: list[list[int]] = []
    for pick in picks:
        ready.sort()
        started = [entry[2] for entry in ready[: slots - len(running)]]
        del ready[: len(started)]
        running.extend(started)
        rounds.append(started)
        if not running:
            break
        done = running.pop(pick % len(running))
        for user in users[done]:
            waiting[user] -= 1
            if not waiting[user]:
                became_ready += 1
                ready.append((-priority[user], became_ready, user))
    return rounds


@settings(max_examples=200, deadline=None)
@given(limited_runs())
def test_a_limited_schedule_starts_the_most_critical_ready_step_first(
    run: tuple[list[list[int]], list[float], int, list[int]],
) -> None:
    deps, priority, slots, picks = run
    schedule = Schedule(
        [f"s{i}" for i in range(len(deps))], deps, priority=priority, max_parallel=slots
    )
    running: list[int] = []
    rounds: list[list[int]] = []
    for pick in picks:
        started = schedule.start_ready()
        running.extend(started)
        rounds.append(started)
        if not running:
            break
        schedule.succeeded(running.pop(pick % len(running)))
    assert rounds == _expected_starts(deps, priority, slots, picks)


def test_a_fan_out_released_at_once_starts_in_plan_order_under_a_slot_limit() -> None:
    """9,999 steps made ready by one success, equal priorities: they start in plan order,
    `slots` at a time (the release that pushes them all in one pass keeps the order)."""
    count = 10_000
    deps: list[list[int]] = [[]] + [[0]] * (count - 1)
    schedule = Schedule([f"s{i}" for i in range(count)], deps, max_parallel=16)
    assert schedule.start_ready() == [0]
    schedule.succeeded(0)
    order: list[int] = []
    while not schedule.done:
        started = schedule.start_ready()
        assert 0 < len(started) <= 16
        order.extend(started)
        for node in started:
            schedule.succeeded(node)
    assert order == list(range(1, count))

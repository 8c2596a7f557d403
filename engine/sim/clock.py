"""The virtual clock: the engine's `Schedule` driven by an event heap of finish times.

It replays what engine/run/driver.py does with the same calls in the same order (start
what is ready, then for each finished node: succeeded / expand / skip, then start what
is ready again), but a node's "running" is an entry in a heap keyed by its finish time
instead of an asyncio task, so a 100,000-step plan simulates in about the time the real
scheduler spends on bookkeeping alone. Nothing sleeps and nothing executes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.run.schedule import Schedule

_OK, _EXPAND, _SKIP = 0, 1, 2


@dataclass
class Timeline:
    """When each node of a simulated run started and finished (NaN: it never ran).

    Nodes are the schedule's: the plan's steps first, then fan-out items as they were
    added (`parent` >= 0). A fan-out step starts when it expands and finishes with its
    last item.
    """

    schedule: Schedule
    start: list[float]
    finish: list[float]
    durations: list[float]  # of each node's own call (0 for fan-out parents and skips)
    skipped: frozenset[int]

    @property
    def makespan(self) -> float:
        return max((f for f in self.finish if not math.isnan(f)), default=0.0)

    def calls(self) -> list[int]:
        """Nodes that made a call (not fan-out parents, not skipped), in schedule order."""
        children = self.schedule.children
        return [
            node
            for node, began in enumerate(self.start)
            if not math.isnan(began) and node not in children and node not in self.skipped
        ]

    @property
    def work(self) -> float:
        return sum(self.durations[node] for node in self.calls())

    def peak(self) -> int:
        """The most calls running at once (calls that take no time excluded)."""
        edges: list[tuple[float, int]] = []
        for node in self.calls():
            if self.durations[node] > 0:
                edges.append((self.start[node], 1))
                edges.append((self.finish[node], -1))
        edges.sort()  # at a tie a finish (-1) comes before a start: the slot is reused
        running = best = 0
        for _, change in edges:
            running += change
            best = max(best, running)
        return best


def simulate(
    schedule: Schedule,
    durations: Sequence[float],
    items: Mapping[int, Sequence[float]],
    *,
    skip: frozenset[int] = frozenset(),
    observe: Callable[[int, float], None] | None = None,
) -> Timeline:
    """Run `schedule` to the end under a virtual clock.

    `durations[node]`: seconds of each plan node's call; `items[node]`: the seconds of
    each item of a fan-out node (its length is the list's); nodes in `skip` are skipped
    by their `when` as soon as they start. `observe(node, seconds)` is told each call's
    duration (a fan-out item reports its step's node), as the engine tells `Priorities`.
    """
    dur = list(durations)
    count = len(dur)
    start = [math.nan] * count
    finish = [math.nan] * count
    parent = schedule.parent
    heap: list[tuple[float, int, int, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    seq = 0
    now = 0.0
    start_ready, succeeded = schedule.start_ready, schedule.succeeded
    while True:
        for node in start_ready():
            start[node] = now
            seq += 1
            if node < count:
                if node in items:
                    push(heap, (now, seq, node, _EXPAND))
                    continue
                if node in skip:
                    push(heap, (now, seq, node, _SKIP))
                    continue
            push(heap, (now + dur[node], seq, node, _OK))
        if not heap:
            break
        now, _, node, kind = pop(heap)
        if kind == _OK:
            finish[node] = now
            up = parent[node]
            if up < 0:
                succeeded(node)
            else:
                for done in succeeded(node):
                    schedule.finish_parent(done, True)
                    finish[done] = now
            if observe is not None:
                observe(node if up < 0 else up, dur[node])
        elif kind == _EXPAND:
            seconds = items[node]
            children = schedule.expand(node, len(seconds))
            dur.extend(seconds)
            start.extend([math.nan] * len(children))
            finish.extend([math.nan] * len(children))
            dur[node] = 0.0
            if not children:
                schedule.finish_parent(node, True)
                finish[node] = now
        else:
            finish[node] = now
            dur[node] = 0.0
            schedule.skip(node)
    return Timeline(schedule, start, finish, dur, skip)

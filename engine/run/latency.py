"""Expected step durations and the scheduler's priorities derived from them.

`LatencyModel` estimates seconds per step from tool and tier figures and refines them
from observed durations. `CriticalTails` turns durations into priorities: each step's
duration plus the longest chain of work waiting on it (its remaining critical path),
updated incrementally when a duration changes. `Priorities` ties the two to one run's
`Schedule`: when an estimate moves, only the steps using it and those of their
ancestors whose tails change are recomputed, and only steps not yet started count.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dsl.ir import Step
from engine.run.schedule import Schedule, State

if TYPE_CHECKING:
    from dsl.dag import CompactDag  # networkx: loaded by a run, not by importing the engine

DEFAULT_TIER_LATENCY_S = {"fast": 1.0, "standard": 3.0, "frontier": 6.0}
DEFAULT_TOOL_LATENCY_S = 0.01


@dataclass
class LatencyModel:
    """Expected seconds per step, from tool and tier estimates (refined while running)."""

    tool_s: dict[str, float] = field(default_factory=dict)
    tier_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIER_LATENCY_S))
    default_tier: str = "standard"
    smoothing: float = 0.3

    @classmethod
    def from_tools(cls, tools: Mapping[str, Any], **kwargs: Any) -> LatencyModel:
        return cls(
            tool_s={
                name: float(getattr(spec, "latency_s", DEFAULT_TOOL_LATENCY_S))
                for name, spec in tools.items()
            },
            **kwargs,
        )

    def key(self, step: Step, tools: Mapping[str, Any]) -> tuple[str, str]:
        """Which estimate a step uses: ("tier", tier) for model steps, else ("tool", name)."""
        spec = tools.get(step.tool)
        if spec is not None and getattr(spec, "uses_model", False):
            return "tier", step.tier or self.default_tier
        return "tool", step.tool

    def estimate(self, step: Step, tools: Mapping[str, Any]) -> float:
        return self.estimate_key(self.key(step, tools))

    def observe(self, step: Step, tools: Mapping[str, Any], seconds: float) -> None:
        """Fold an observed duration into the estimate (exponential moving average)."""
        self.observe_key(self.key(step, tools), seconds)

    def estimate_key(self, key: tuple[str, str]) -> float:
        """The estimate for a key from `key()` (callers that keep keys skip the lookup)."""
        kind, name = key
        if kind == "tier":
            return self.tier_s.get(name, self.tier_s.get(self.default_tier, 3.0))
        return self.tool_s.get(name, DEFAULT_TOOL_LATENCY_S)

    def observe_key(self, key: tuple[str, str], seconds: float) -> None:
        kind, name = key
        table = self.tier_s if kind == "tier" else self.tool_s
        previous = table.get(name)
        table[name] = (
            seconds if previous is None else previous + self.smoothing * (seconds - previous)
        )


class Estimates(Protocol):
    """What `Priorities` needs of a latency model (`LatencyModel` satisfies it)."""

    def key(self, step: Step, tools: Mapping[str, Any]) -> Any:
        """Which estimate a step uses: a function of its tool and tier alone (steps that
        share both share the key: `Priorities` asks once per pair)."""
        ...

    def estimate(self, step: Step, tools: Mapping[str, Any]) -> float: ...

    def observe(self, step: Step, tools: Mapping[str, Any], seconds: float) -> None: ...

    def estimate_key(self, key: Any) -> float: ...

    def observe_key(self, key: Any, seconds: float) -> None: ...


class CriticalTails:
    """For each node: its duration plus the longest chain of work that waits on it.

    Built in one reverse pass over a topological order, O(nodes + edges). `update`
    changes some durations and recomputes only what they affect: the changed nodes,
    then predecessors whose tail actually moved, each once, latest in the order first
    (so a node is recomputed after all its successors).
    """

    __slots__ = ("durations", "position", "predecessors", "successors", "tails")

    def __init__(
        self,
        deps: Sequence[Sequence[int]],
        order: Sequence[int],
        durations: Sequence[float],
        successors: Sequence[Sequence[int]] | None = None,
    ):
        count = len(deps)
        self.predecessors: Sequence[Sequence[int]] = deps
        if successors is None:  # the compiled plan has them (dsl/dag.py `CompactDag`)
            users: list[list[int]] = [[] for _ in range(count)]
            for node, needs in enumerate(deps):
                for need in needs:
                    users[need].append(node)
            successors = users
        self.successors: Sequence[Sequence[int]] = successors
        self.position = [0] * count
        for place, node in enumerate(order):
            self.position[node] = place
        self.durations = list(durations)
        self.tails = tails = list(durations)
        for node in reversed(order):
            best = 0.0
            for succ in successors[node]:
                if tails[succ] > best:
                    best = tails[succ]
            tails[node] += best

    def update(
        self, durations: Mapping[int, float], live: Callable[[int], bool] | None = None
    ) -> list[int]:
        """Set new durations; returns the nodes whose tail changed.

        `live(node)` false means the node's tail no longer matters (it started or
        finished, and so did everything before it): it is neither updated nor walked past.
        """
        position, tails, successors = self.position, self.tails, self.successors
        heap: list[tuple[int, int]] = []
        queued: set[int] = set()
        for node, seconds in durations.items():
            self.durations[node] = seconds
            if live is None or live(node):
                heap.append((-position[node], node))
                queued.add(node)
        heapq.heapify(heap)
        changed: list[int] = []
        while heap:
            _, node = heapq.heappop(heap)
            best = 0.0
            for succ in successors[node]:
                if tails[succ] > best:
                    best = tails[succ]
            tail = self.durations[node] + best
            if tail == tails[node]:
                continue
            tails[node] = tail
            changed.append(node)
            for pred in self.predecessors[node]:
                if pred not in queued and (live is None or live(pred)):
                    queued.add(pred)
                    heapq.heappush(heap, (-position[pred], pred))
        return changed


# Tail updates are paid for by completions: each observed duration buys this many units
# of work (a unit: one step visited, updated or re-keyed, ~0.5 us), and a run starts
# with some in hand. Re-prioritising so costs at most ~2 us per step however many steps
# share an estimate (a fan-out of 10,000 calls to one tool under a slot limit), plus one
# update pass, while a small plan re-prioritises at every change that matters.
WORK_PER_OBSERVATION = 4
WORK_IN_HAND = 256
# An estimate that moved by less than this fraction since its steps were last updated
# is left alone: the steps' order barely changes, and no-op tools jitter by this much.
RELATIVE_CHANGE = 0.2
# Steps whose tail still matters: not started yet (or a fan-out whose items may wait).
_LIVE = frozenset({State.PENDING, State.READY, State.STANDBY, State.EXPANDED})


class Priorities:
    """One run's scheduler priorities, kept current as latency estimates are refined.

    `observe` is the run's hook for each step's measured duration. With no slot limit
    every ready step starts at once, so priorities are moot and nothing is computed.
    """

    def __init__(
        self,
        dag: CompactDag,
        steps: Sequence[Step],
        latency: Estimates,
        tools: Mapping[str, Any],
        schedule: Schedule,
    ):
        self.latency, self.tools, self.schedule = latency, tools, schedule
        self.steps = list(steps)
        self.active = schedule.uses_priority
        self.credit = WORK_IN_HAND
        self.dirty: set[Hashable] = set()
        self.index = dag.index
        self.key_of: list[Hashable] = []
        self.by_key: dict[Hashable, list[int]] = {}
        self.applied: dict[Hashable, float] = {}  # each key's estimate its steps now use
        self.static = False
        keys: dict[tuple[str, str | None], Hashable] = {}  # (tool, tier) -> its key
        key_of = self.key_of
        for step in self.steps:
            key = keys.get((step.tool, step.tier))
            if key is None:
                key = keys[(step.tool, step.tier)] = latency.key(step, tools)
                self.applied[key] = latency.estimate_key(key)
            key_of.append(key)
        # A duration folds into its key's estimate, then (with priorities to keep) into
        # the tails: `observe_node` is the run's per-step hook.
        self.observe_node: Callable[[int, float], None] = (
            self._observe_live if self.active else self._observe_only
        )
        if not self.active:
            return
        applied = self.applied
        self.tails = CriticalTails(
            dag.deps, dag.order, [applied[key] for key in key_of], dag.successors
        )
        schedule.reprioritize(self.tails.tails)
        # With one estimate for every step, every tail is that estimate times a fixed
        # chain length: refining it scales all tails alike and never changes the order.
        self.static = len(applied) == 1
        if self.static:
            self.observe_node = self._observe_only
        else:  # which steps each estimate moves (`refresh`)
            for node, key in enumerate(key_of):
                self.by_key.setdefault(key, []).append(node)

    def _live(self, node: int) -> bool:
        return self.schedule.state[node] in _LIVE

    def observe(self, step: Step, seconds: float) -> None:
        """Fold a measured duration into the estimates; re-prioritise what it changes."""
        self.observe_node(self.index[step.id], seconds)

    def _observe_only(self, node: int, seconds: float) -> None:
        self.latency.observe_key(self.key_of[node], seconds)

    def _observe_live(self, node: int, seconds: float) -> None:
        key = self.key_of[node]
        self.latency.observe_key(key, seconds)
        applied = self.applied[key]
        estimate = self.latency.estimate_key(key)
        if abs(estimate - applied) > RELATIVE_CHANGE * applied:
            self.dirty.add(key)
        self.credit += WORK_PER_OBSERVATION
        if self.dirty and self.credit > 0:
            self.refresh()

    def refresh(self) -> None:
        """Apply the estimates changed since the last refresh to the waiting steps."""
        changes: dict[int, float] = {}
        work = 0
        state = self.schedule.state
        for key in self.dirty:
            nodes = self.by_key[key]
            work += len(nodes)
            waiting = [node for node in nodes if state[node] in _LIVE]
            self.by_key[key] = waiting  # started steps never wait again: drop them once
            if not waiting:
                continue
            seconds = self.latency.estimate_key(key)
            self.applied[key] = seconds
            for node in waiting:
                changes[node] = seconds
        self.dirty.clear()
        changed = self.tails.update(changes, self._live) if changes else []
        work += len(changes) + len(changed)
        if changed:
            tails = self.tails.tails
            work += self.schedule.reprioritize({node: tails[node] for node in changed})
        self.credit -= work

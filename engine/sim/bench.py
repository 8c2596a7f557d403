"""`planfile bench`: simulate a plan per configuration and measure what a user asks.

For each `--max-parallel` value (and the `--limit`s), each of `--runs` seeded draws of
the step durations is simulated with the engine's own scheduling (`plan_schedule`:
the same Schedule, limit groups and critical-path Priorities as a run), and against
the same durations: the critical path, the work, one step at a time, and supersteps
(level by level, as LangGraph-style engines run a DAG). Durations are drawn once per run
and shared by every configuration, so the what-if table compares like with like.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsl.checker import CheckedPlan
from dsl.ir import Step
from engine.errors import UsageError
from engine.run.latency import LatencyModel
from engine.run.schedule import Schedule
from engine.run.session import limit_groups, plan_schedule
from engine.sim.clock import Timeline, simulate
from engine.sim.estimates import Estimator, Latency, StepEstimate
from engine.stats import percentile

# A fan-out whose list size nothing tells (not --fan-out, not an input's value or
# default, not a replayed run) is assumed to have this many items (reported).
DEFAULT_FAN_OUT = 4
# The most seeded draws one bench takes: each keeps its timeline (~7 KB), and p50/p90 are
# steady long before this many (a billion runs grew to gigabytes).
MAX_RUNS = 10_000


@dataclass
class Replay:
    """What a journaled run measured of one step: its span, and its item count if a fan-out."""

    seconds: float
    items: int | None = None


@dataclass
class BenchSpec:
    """Everything one `bench` invocation varies."""

    max_parallel: list[int]
    limits: dict[str, int] = field(default_factory=dict)
    runs: int = 1
    seed: int = 0
    fan_out: dict[str, int] = field(default_factory=dict)
    when_false: set[str] = field(default_factory=set)
    inputs: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, Replay] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.runs <= MAX_RUNS:
            raise UsageError(
                f"--runs {self.runs}: bench takes 1 to {MAX_RUNS:,} runs",
                hint="percentiles are steady after a few hundred draws",
            )


@dataclass
class Draw:
    """One run's durations: per plan node, and per fan-out node its items'."""

    top: list[float]
    items: dict[int, list[float]]
    skip: frozenset[int]


@dataclass
class RunMetrics:
    makespan: float
    critical_path: float
    critical_steps: list[str]
    work: float
    slots_used: int
    superstep: float
    last: dict[str, Any]
    timeline: Timeline


class Bench:
    """One plan's simulation set-up: its steps in scheduler order and their estimates."""

    def __init__(
        self, checked: CheckedPlan, tools: Mapping[str, Any], estimator: Estimator, spec: BenchSpec
    ):
        self.checked, self.tools, self.spec = checked, tools, spec
        dag = checked.graph.compact
        self.dag = dag
        by_id = {step.id: step for step in checked.plan.steps}
        self.steps: list[Step] = [by_id[name] for name in dag.names]
        self.estimates: list[StepEstimate] = [estimator.estimate(s) for s in self.steps]
        self.assumptions: list[str] = []
        self.fan_sizes: dict[int, int] = {}
        for node in dag.order:  # upstream first: a fan-out over a fan-out's result
            step = self.steps[node]
            if step.for_each is not None and step.id not in spec.when_false:
                self.fan_sizes[node] = self._fan_size(step)
        self.skip = frozenset(dag.index[name] for name in spec.when_false)
        self.levels = _levels(dag.deps, dag.order)

    def _fan_size(self, step: Step) -> int:
        spec = self.spec
        assert step.for_each is not None
        if step.id in spec.fan_out:
            return spec.fan_out[step.id]
        replayed = (spec.replay or {}).get(step.id)
        if replayed is not None and replayed.items is not None:
            return replayed.items
        ref = step.for_each.over
        value = spec.inputs.get(ref.root)
        if value is None:
            declared = next((i for i in self.checked.plan.inputs if i.name == ref.root), None)
            value = declared.default if declared is not None else None
        for part in ref.path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list):
            return len(value)
        source = self.dag.index.get(ref.root)
        if not ref.path and source is not None and source in self.fan_sizes:
            return self.fan_sizes[source]  # a fan-out's result has one entry per item
        self.assumptions.append(
            f"`{step.id}` fans out over `{ref.ref}`, of unknown length: assumed "
            f"{DEFAULT_FAN_OUT} items (give --fan-out {step.id}=N)"
        )
        return DEFAULT_FAN_OUT

    # --- durations ------------------------------------------------------------------
    def draw(self, run: int) -> Draw:
        rng = random.Random(self.spec.seed * 1_000_003 + run)
        replay = self.spec.replay or {}
        top = [0.0] * len(self.steps)
        items: dict[int, list[float]] = {}
        for node, step in enumerate(self.steps):
            if node in self.skip:
                continue
            measured = replay.get(step.id)
            latency = Latency(measured.seconds) if measured else self.estimates[node].latency
            if node in self.fan_sizes:
                items[node] = [latency.draw(rng) for _ in range(self.fan_sizes[node])]
            else:
                top[node] = latency.draw(rng)
        return Draw(top, items, self.skip)

    # --- one simulated run --------------------------------------------------------------
    def timeline(self, draw: Draw, max_parallel: int) -> Timeline:
        """The engine's scheduling of these durations: the virtual clock alone."""
        latency = LatencyModel.from_tools(self.tools)  # a run's first estimates, refined
        schedule, priorities = plan_schedule(
            self.checked,
            self.tools,
            latency,
            limits=self.spec.limits,
            max_parallel=max_parallel,
        )
        steps = self.steps

        def observe(node: int, seconds: float) -> None:
            priorities.observe(steps[node], seconds)

        return simulate(schedule, draw.top, draw.items, skip=draw.skip, observe=observe)

    def run(self, draw: Draw, max_parallel: int) -> RunMetrics:
        """One configuration on one draw, with every figure the report shows."""
        timeline = self.timeline(draw, max_parallel)
        spans = {
            self.dag.names[node]: (max(draw.items[node], default=0.0))
            if node in draw.items
            else draw.top[node]
            for node in range(len(self.steps))
        }
        critical, chain = self.checked.graph.critical_path(spans)
        return RunMetrics(
            makespan=timeline.makespan,
            critical_path=critical,
            critical_steps=chain,
            work=timeline.work,
            slots_used=timeline.peak(),
            superstep=self.superstep(draw, max_parallel),
            last=self.last_start(timeline, max_parallel),
            timeline=timeline,
        )

    def superstep(self, draw: Draw, max_parallel: int) -> float:
        """The makespan level by level: a level starts when the one before it is done.

        The same scheduler with a zero-time barrier node after each level (every step
        of a level waits for the barrier before it); ready steps start in plan order.
        """
        dag = self.dag
        count = len(self.steps)
        standby = {dag.index[name] for name in self.checked.fallbacks}
        depth = max(self.levels, default=0) + 1
        names = [*dag.names, *(f"<level {i}>" for i in range(depth - 1))]
        deps: list[list[int]] = [list(needs) for needs in dag.deps]
        deps.extend([] for _ in range(depth - 1))
        for node, level in enumerate(self.levels):
            if level > 0:
                deps[node].append(count + level - 1)
            if level < depth - 1 and node not in standby:
                deps[count + level].append(node)
        groups = limit_groups(self.steps, self.tools) + [()] * (depth - 1)
        schedule = Schedule(
            names,
            deps,
            groups=groups,
            limits=self.spec.limits,
            max_parallel=max_parallel,
            standby=standby,
        )
        durations = draw.top + [0.0] * (depth - 1)
        return simulate(schedule, durations, draw.items, skip=draw.skip).makespan

    def _ready(self, timeline: Timeline, node: int) -> float:
        """When a node could have started: its inputs done (an item: its expansion)."""
        up = timeline.schedule.parent[node]
        if up >= 0:
            return timeline.start[up]
        return max((timeline.finish[d] for d in self.dag.deps[node]), default=0.0)

    def last_start(self, timeline: Timeline, max_parallel: int) -> dict[str, Any]:
        """The call that starts last, and what it waited for: a slot, or its dependencies
        (then also the longest wait for a slot along that chain, if any)."""
        schedule = timeline.schedule
        calls = timeline.calls()
        if not calls:
            return {}
        node = max(calls, key=lambda n: (timeline.start[n], n))
        at, ready = timeline.start[node], self._ready(timeline, node)
        info: dict[str, Any] = {
            "step": schedule.names[node],
            "starts_at_s": at,
            "ready_at_s": ready,
        }
        if at > ready + 1e-9:
            info["waits_on"] = "slot"
            info["reason"] = self._full(timeline, node, ready, max_parallel)
            return info
        chain: list[str] = []
        current = node if schedule.parent[node] < 0 else schedule.parent[node]
        longest: tuple[float, int] = (0.0, -1)
        while self.dag.deps[current]:
            current = max(self.dag.deps[current], key=lambda d: timeline.finish[d])
            chain.append(self.dag.names[current])
            # The call that ended the dependency: the step, or its last item.
            items = schedule.children.get(current)
            end = max(items, key=lambda i: timeline.finish[i]) if items else current
            wait = timeline.start[end] - self._ready(timeline, end)
            if wait > longest[0] + 1e-9:
                longest = (wait, end)
        chain.reverse()
        info["waits_on"] = "dependencies"
        info["chain"] = chain
        info["reason"] = (
            f"its dependency chain {' → '.join(chain)} ends at {ready:.3g}s"
            if chain
            else "nothing: it needs no other step"
        )
        if longest[1] >= 0:
            wait, end = longest
            info["reason"] += (
                f"; on that chain `{schedule.names[end]}` waited {wait:.3g}s for a slot ("
                f"{self._full(timeline, end, self._ready(timeline, end), max_parallel)})"
            )
        return info

    def _full(self, timeline: Timeline, node: int, ready: float, max_parallel: int) -> str:
        """Which bound was full just before it started: all slots, or a limit group."""
        schedule = timeline.schedule
        at = timeline.start[node]
        running = [
            n
            for n in timeline.calls()
            if timeline.start[n] < at <= timeline.finish[n] and timeline.durations[n] > 0
        ]
        reasons = []
        if len(running) >= max_parallel:
            reasons.append(f"all {max_parallel} slots (--max-parallel) were busy")
        for group in schedule.groups[node]:
            limit = self.spec.limits.get(group)
            if limit and sum(group in schedule.groups[n] for n in running) >= limit:
                reasons.append(f"the limit {group}={limit} was full")
        if not reasons:
            reasons.append("steps with a longer critical path took the free slots first")
        return f"ready at {ready:.3g}s, but {'; '.join(reasons)}"


def _levels(deps: Sequence[Sequence[int]], order: Sequence[int]) -> list[int]:
    level = [0] * len(deps)
    for node in order:
        needs = deps[node]
        if needs:
            level[node] = 1 + max(level[d] for d in needs)
    return level


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, median and 90th percentile (nearest rank) of a run's figures."""
    p90 = percentile(values, 90)
    if p90 is None:
        raise ValueError("no figures to summarize")
    return {"mean": statistics.fmean(values), "p50": statistics.median(values), "p90": p90}

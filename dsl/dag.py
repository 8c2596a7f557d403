"""Compiling a checked plan to a networkx DAG: latency estimates, critical path, export.

The DiGraph is for analysis and export (`planfile graph`); the scheduler works on a
compact integer index built from the same dependencies (see `engine.run.schedule`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from dsl.checker import CheckedPlan, topological_order
from dsl.ir import Step

DEFAULT_TIER_LATENCY_S = {"fast": 1.0, "standard": 3.0, "frontier": 6.0}
DEFAULT_TOOL_LATENCY_S = 0.01


@dataclass
class LatencyModel:
    """Expected seconds per step, from tool and tier estimates (refined while running)."""

    tool_s: dict[str, float] = field(default_factory=dict)
    tier_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIER_LATENCY_S))
    default_tier: str = "standard"

    @classmethod
    def from_tools(cls, tools: Mapping[str, Any], **kwargs: Any) -> LatencyModel:
        return cls(
            tool_s={
                name: float(getattr(spec, "latency_s", DEFAULT_TOOL_LATENCY_S))
                for name, spec in tools.items()
            },
            **kwargs,
        )

    smoothing: float = 0.3

    def _key(self, step: Step, tools: Mapping[str, Any]) -> tuple[dict[str, float], str]:
        spec = tools.get(step.tool)
        if spec is not None and getattr(spec, "uses_model", False):
            return self.tier_s, step.tier or self.default_tier
        return self.tool_s, step.tool

    def estimate(self, step: Step, tools: Mapping[str, Any]) -> float:
        table, key = self._key(step, tools)
        if table is self.tier_s:
            return table.get(key, table.get(self.default_tier, 3.0))
        return table.get(key, DEFAULT_TOOL_LATENCY_S)

    def observe(self, step: Step, tools: Mapping[str, Any], seconds: float) -> None:
        """Fold an observed duration into the estimate (exponential moving average)."""
        table, key = self._key(step, tools)
        previous = table.get(key)
        table[key] = (
            seconds if previous is None else previous + self.smoothing * (seconds - previous)
        )


def compile_graph(checked: CheckedPlan) -> nx.DiGraph:
    """One node per step (attribute `step`), an edge from each dependency to its user."""
    graph = nx.DiGraph(name=checked.plan.name)
    for step in checked.plan.steps:
        graph.add_node(
            step.id,
            step=step,
            tool=step.tool,
            fallback=step.id in checked.fallbacks,
        )
    for step_id, deps in checked.deps.items():
        for dep in deps:
            graph.add_edge(dep, step_id)
    return graph


def critical_path(checked: CheckedPlan, durations: Mapping[str, float]) -> tuple[float, list[str]]:
    """The longest chain of expected durations through the DAG: (seconds, steps)."""
    finish: dict[str, float] = {}
    best_parent: dict[str, str | None] = {}
    for step_id in topological_order(checked.deps):
        if step_id in checked.fallbacks:
            continue
        start = 0.0
        parent = None
        for dep in checked.deps[step_id]:
            if finish.get(dep, 0.0) > start:
                start = finish[dep]
                parent = dep
        finish[step_id] = start + durations.get(step_id, 0.0)
        best_parent[step_id] = parent
    if not finish:
        return 0.0, []
    end = max(finish, key=lambda s: finish[s])
    path = [end]
    while best_parent.get(path[-1]):
        path.append(best_parent[path[-1]])  # type: ignore[arg-type]
    return finish[end], list(reversed(path))


def remaining_critical_path(
    deps: Mapping[str, tuple[str, ...]], order: list[str], durations: Mapping[str, float]
) -> dict[str, float]:
    """For each step: its duration plus the longest chain of work that waits on it."""
    users: dict[str, list[str]] = {step: [] for step in deps}
    for step, needs in deps.items():
        for need in needs:
            users[need].append(step)
    tail: dict[str, float] = {}
    for step in reversed(order):
        tail[step] = durations.get(step, 0.0) + max((tail[u] for u in users[step]), default=0.0)
    return tail


def _label(step: Step) -> str:
    suffix = f"[{step.for_each.over.ref}]" if step.for_each else ""
    return f"{step.id}: {step.tool}{suffix}"


STATE_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "skipped": "#9e9e9e",
    "cancelled": "#ef6c00",
    "running": "#1565c0",
    "pending": "#ffffff",
}


def to_mermaid(checked: CheckedPlan, states: Mapping[str, str] | None = None) -> str:
    lines = ["flowchart TD"]
    for step in checked.plan.steps:
        label = _label(step).replace('"', "'")
        shape = (
            f'{step.id}(["{label}"])' if step.id in checked.fallbacks else f'{step.id}["{label}"]'
        )
        lines.append(f"    {shape}")
    for step_id, deps in checked.deps.items():
        for dep in deps:
            lines.append(f"    {dep} --> {step_id}")
    for step in checked.plan.steps:
        if step.on_error not in ("fail", "skip"):
            lines.append(f"    {step.id} -. on_error .-> {step.on_error}")
    for step_id, state in (states or {}).items():
        colour = STATE_COLOURS.get(state)
        if colour:
            lines.append(f"    style {step_id} fill:{colour}")
    return "\n".join(lines) + "\n"


def to_dot(checked: CheckedPlan, states: Mapping[str, str] | None = None) -> str:
    lines = [
        f"digraph {json.dumps(checked.plan.name)} {{",
        "    rankdir=TB;",
        "    node [shape=box];",
    ]
    for step in checked.plan.steps:
        attrs = [f"label={json.dumps(_label(step))}"]
        if step.id in checked.fallbacks:
            attrs.append("style=dashed")
        state = (states or {}).get(step.id)
        if state in STATE_COLOURS:
            attrs.append(f'style=filled fillcolor="{STATE_COLOURS[state]}"')
        lines.append(f"    {json.dumps(step.id)} [{' '.join(attrs)}];")
    for step_id, deps in checked.deps.items():
        for dep in deps:
            lines.append(f"    {json.dumps(dep)} -> {json.dumps(step_id)};")
    for step in checked.plan.steps:
        if step.on_error not in ("fail", "skip"):
            lines.append(
                f"    {json.dumps(step.id)} -> {json.dumps(step.on_error)} [style=dotted label=on_error];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(
    checked: CheckedPlan, durations: Mapping[str, float], states: Mapping[str, str] | None = None
) -> dict[str, Any]:
    seconds, path = critical_path(checked, durations)
    return {
        "plan": checked.plan.name,
        "nodes": [
            {
                "id": step.id,
                "tool": step.tool,
                "tier": step.tier,
                "fan_out": step.for_each.over.ref if step.for_each else None,
                "fallback": step.id in checked.fallbacks,
                "estimated_s": durations.get(step.id, 0.0),
                **({"state": states[step.id]} if states and step.id in states else {}),
            }
            for step in checked.plan.steps
        ],
        "edges": [
            {"from": dep, "to": step_id} for step_id, deps in checked.deps.items() for dep in deps
        ],
        "outputs": list(checked.outputs),
        "critical_path": {"steps": path, "estimated_s": round(seconds, 6)},
    }

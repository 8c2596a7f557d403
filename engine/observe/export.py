"""Exports of a plan's compiled graph (`planfile graph`): mermaid, Graphviz DOT and JSON.

Each reads the plan's networkx DiGraph (`CheckedPlan.graph`): its nodes in plan order,
each node's incoming edges in dependency order, and the static critical path. Step
states (from a run) colour the nodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from dsl.checker import CheckedPlan
from dsl.ir import Step

STATE_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "skipped": "#9e9e9e",
    "cancelled": "#ef6c00",
    "running": "#1565c0",
    "pending": "#ffffff",
}


def _label(step: Step) -> str:
    suffix = f"[{step.for_each.over.ref}]" if step.for_each else ""
    return f"{step.id}: {step.tool}{suffix}"


def _steps(checked: CheckedPlan) -> Iterator[Step]:
    """The graph's nodes as steps, in plan order."""
    by_id = {step.id: step for step in checked.plan.steps}
    return (by_id[node] for node in checked.graph.nx)


def _edges(checked: CheckedPlan) -> Iterator[tuple[str, str]]:
    """(dependency, user) for each edge, grouped by user in plan order."""
    pred = checked.graph.nx.pred
    return ((dep, user) for user in checked.graph.nx for dep in pred[user])


def to_mermaid(checked: CheckedPlan, states: Mapping[str, str] | None = None) -> str:
    lines = ["flowchart TD"]
    for step in _steps(checked):
        label = _label(step).replace('"', "'")
        shape = (
            f'{step.id}(["{label}"])' if step.id in checked.fallbacks else f'{step.id}["{label}"]'
        )
        lines.append(f"    {shape}")
    for dep, user in _edges(checked):
        lines.append(f"    {dep} --> {user}")
    for step in _steps(checked):
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
    for step in _steps(checked):
        attrs = [f"label={json.dumps(_label(step))}"]
        if step.id in checked.fallbacks:
            attrs.append("style=dashed")
        state = (states or {}).get(step.id)
        if state in STATE_COLOURS:
            attrs.append(f'style=filled fillcolor="{STATE_COLOURS[state]}"')
        lines.append(f"    {json.dumps(step.id)} [{' '.join(attrs)}];")
    for dep, user in _edges(checked):
        lines.append(f"    {json.dumps(dep)} -> {json.dumps(user)};")
    for step in _steps(checked):
        if step.on_error not in ("fail", "skip"):
            lines.append(
                f"    {json.dumps(step.id)} -> {json.dumps(step.on_error)} [style=dotted label=on_error];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(
    checked: CheckedPlan, durations: Mapping[str, float], states: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The graph as a document, with the critical path of the expected `durations`."""
    seconds, path = checked.graph.critical_path(durations)
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
            for step in _steps(checked)
        ],
        "edges": [{"from": dep, "to": user} for dep, user in _edges(checked)],
        "outputs": list(checked.outputs),
        "critical_path": {"steps": path, "estimated_s": round(seconds, 6)},
    }

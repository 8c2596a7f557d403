"""What the planner says to the model: the prompt for a goal, and the feedback of a retry.

The prompt is kept small (prompt reading dominates the embedded model's time): the rules,
one line per offered tool, and at most two worked examples chosen for the goal
(engine/agent/examples.py). A retry is told the errors, the valid ids and tools, and when
its reply repeats an earlier one, that it does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

import jinja2

from dsl.errors import PlanError
from dsl.repair import parse_model_json
from engine.agent.examples import SHOWN, choose
from engine.agent.plan_grammar import DEFAULT_MAX_STEPS, HIDDEN_PARAMS, tool_names

# What the prompt says a tool is for, beyond its own description (only offered ones shown).
TOOL_HINTS = {
    "calculate": "arithmetic (never llm)",
    "search": "facts in the local corpus",
    "read_file": "a file the goal names",
    "llm": "writing, explaining, comparing",
    "extract": "pulling data out of text",
}


class Tried(Protocol):
    """A planning attempt as the feedback sees it (engine.agent.planner.Attempt)."""

    number: int
    reply: str
    errors: list[str]


def _template(name: str) -> jinja2.Template:
    text = resources.files("engine.agent").joinpath("prompts", name).read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=False, keep_trailing_newline=True).from_string(text)


def planner_prompt(
    goal: str,
    tools: Mapping[str, Any],
    tiers: Mapping[str, str] | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    examples: int = SHOWN,
) -> str:
    """The planner's prompt: rules, one line per offered tool, at most `examples` worked
    examples chosen for the goal.

    `tiers` is accepted for callers that pass it; the prompt names tiers by role only (the
    models behind them are not the planner's concern, and every token costs time)."""
    catalogue = []
    for name, spec in sorted(tools.items()):
        line = f"{_signature(spec)}: {_first_line(spec.description)}"
        if name in TOOL_HINTS:
            line += f" Use for {TOOL_HINTS[name]}."
        catalogue.append(line)
    return _template("planner.md.j2").render(
        goal=goal,
        tools=catalogue,
        examples=choose(goal, tools, shown=examples),
        max_steps=max_steps,
    )


def _signature(spec: Any) -> str:
    """`spec.signature()` without the parameters a plan may not set (the grammar has none)."""
    shown = tuple(p for p in spec.params if p.name not in HIDDEN_PARAMS)
    if len(shown) == len(spec.params):
        return str(spec.signature())
    return str(dataclasses.replace(spec, params=shown).signature())


def _first_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def feedback(attempts: Sequence[Tried], tools: Mapping[str, Any], total: int) -> str:
    """What a retry is told: the latest attempt's errors, the valid step ids and tools, and,
    when the reply repeats an earlier one, that it did (so the same mistake is never fed
    back the same way)."""
    last = attempts[-1]
    lines = [f"Attempt {last.number} of {total}: the plan has these problems:"]
    lines += [f"- {e}" for e in last.errors[:12]]
    same = [a.number for a in attempts[:-1] if a.reply.strip() == last.reply.strip()]
    if same:
        lines.append(
            f"This reply repeats attempt {same[0]} word for word, and fails the same way: "
            "write a different plan, do not repeat it."
        )
    ids = _reply_ids(last.reply)
    positional = [f"s{i}" for i in range(1, max(len(ids), 1) + 1)]
    if ids and ids != positional:
        renames = ", ".join(f"{old} -> {new}" for old, new in zip(ids, positional, strict=True))
        lines.append(f"Step ids must be s1, s2, ... in order: rename {renames}.")
    lines.append(
        f"Valid step ids: {', '.join(positional)}; a step may use only the ids before it, as "
        "{{ s1 }} inside an argument."
    )
    lines.append(f"Valid tools: {tool_names(tools)}.")
    lines.append("Return the whole corrected plan as JSON.")
    return "\n".join(lines)


def _reply_ids(reply: str) -> list[str]:
    """The step ids a reply used, in order (none when it is not a plan)."""
    try:
        doc, _ = parse_model_json(reply, "plan.json")
    except PlanError:
        return []
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, list):
        return []
    return [str(s["id"]) for s in steps if isinstance(s, dict) and s.get("id") is not None]


__all__ = ["TOOL_HINTS", "feedback", "planner_prompt"]

"""Goal files for the planner evaluation: JSON lines, every bad line reported, located.

One goal per line: `goal` (the text), `tools` (the tools a good plan uses; taken from the
reference when left out), and optionally `reference` (a JSON plan that must check),
`id` and `split` (e.g. `tuned` or `heldout`; default: the file's name without suffix).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dsl.checker import check
from dsl.errors import Diagnostic, Location, PlanError
from dsl.json_loader import load_json
from engine.agent.evaluate import Goal, Shape, shape_of

GOAL_KEYS = ("id", "goal", "tools", "reference", "split")


class GoalFileError(PlanError):
    """A goal file has lines that are not goals; every bad line is reported, located."""

    phase = "goal file"


def _goal_of(
    doc: Any, file: str, line: int, tools: Mapping[str, Any]
) -> tuple[Goal | None, list[Diagnostic]]:
    def at(message: str, *path: str | int, hint: str | None = None) -> Diagnostic:
        return Diagnostic(message, Location(file, line, 1, path=path or None), hint)

    if not isinstance(doc, dict):
        return None, [at("a goal line is a JSON object", hint='{"goal": "...", "tools": [...]}')]
    problems = [
        at(f"unknown key `{key}`", key, hint=f"keys: {', '.join(GOAL_KEYS)}")
        for key in doc
        if key not in GOAL_KEYS
    ]
    text = doc.get("goal")
    if not isinstance(text, str) or not text.strip():
        problems.append(at("`goal` must be a non-empty string", "goal"))
    reference: Shape | None = None
    if "reference" in doc:
        try:
            plan, smap = load_json(doc["reference"], f"{file}:{line}: reference", tools)
            reference = shape_of(check(plan, tools, smap))
        except PlanError as err:
            problems += [
                at(f"the reference plan does not check: {d.location}: {d.message}", "reference")
                for d in err.errors
            ]
    expected = doc.get("tools")
    if expected is None and reference is not None:
        expected = sorted(reference.tools)
    if (
        not isinstance(expected, list)
        or not expected
        or not all(isinstance(t, str) for t in expected)
    ):
        problems.append(at("`tools` must be a non-empty list of tool names", "tools"))
        expected = []
    for index, name in enumerate(expected):
        if name not in tools:
            problems.append(at(f"unknown tool `{name}`", "tools", index, hint="`planfile tools`"))
    for key in ("id", "split"):
        if key in doc and not isinstance(doc[key], str):
            problems.append(at(f"`{key}` must be a string", key))
    if problems:
        return None, problems
    goal = Goal(
        id=doc.get("id") or f"line {line}",
        goal=text,  # type: ignore[arg-type]
        tools=frozenset(expected),
        split=doc.get("split") or Path(file).stem,
        reference=reference,
    )
    return goal, []


def load_goals(path: str | Path, tools: Mapping[str, Any]) -> list[Goal]:
    """Read a goal file; raise `GoalFileError` naming every bad line (file:line)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GoalFileError(
            [Diagnostic(f"cannot read the goal file: {err}", Location(file))]
        ) from None
    goals: list[Goal] = []
    problems: list[Diagnostic] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as err:
            where = Location(file, number, err.colno)
            problems.append(Diagnostic(f"not JSON: {err.msg}", where))
            continue
        goal, found = _goal_of(doc, file, number, tools)
        problems += found
        if goal is not None and goal.id in first_line:
            message = f"goal id `{goal.id}` is also on line {first_line[goal.id]}"
            problems.append(Diagnostic(message, Location(file, number, 1, path=("id",))))
        elif goal is not None:
            first_line[goal.id] = number
            goals.append(goal)
    if not goals and not problems:
        problems.append(Diagnostic("the goal file has no goals", Location(file)))
    if problems:
        raise GoalFileError(problems)
    return goals


__all__ = ["GOAL_KEYS", "GoalFileError", "load_goals"]

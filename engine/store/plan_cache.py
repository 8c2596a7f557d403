"""The plan cache: recurring goals reuse a stored plan instead of calling the planner.

A goal's variable parts (numbers, quoted strings, capitalised names) are abstracted into
slots: "cost of living in Austin on 150000" -> "cost of living in {e1} on {n1}". A
stored plan is parameterised by the slots it actually mentions (they become plan inputs);
the slots it does not mention must match exactly on a hit, because the plan may depend on
them in ways text substitution cannot see. The key also covers the tool catalogue and
the planner model. Stored in SQLite under `PLANFILE_HOME`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsl.ir import InputDecl, Plan
from engine.store.home import data_home
from engine.store.sqlite import open_store

_PARTS = re.compile(
    r'"(?P<dq>[^"]{1,200})"'
    r"|'(?P<sq>[^']{1,200})'"
    r"|(?P<num>(?<![\w.])-?\d+(?:[.,]\d+)*(?:\.\d+)?%?(?![\w.]))"
    r"|(?P<ent>(?<![\w])[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)*)"
)
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)$")


@dataclass(frozen=True)
class Slot:
    name: str
    kind: str  # "n" number, "s" quoted string, "e" named entity
    text: str


def abstract_goal(goal: str) -> tuple[str, list[Slot]]:
    """The goal with its variable parts replaced by `{n1}`, `{s1}`, `{e1}`; and the parts."""
    slots: list[Slot] = []
    counts = {"n": 0, "s": 0, "e": 0}
    out: list[str] = []
    position = 0
    for match in _PARTS.finditer(goal):
        kind, text = next((k, v) for k, v in match.groupdict().items() if v is not None)
        letter = {"dq": "s", "sq": "s", "num": "n", "ent": "e"}[kind]
        if letter == "e" and _SENTENCE_START.search(goal[: match.start()]) and " " not in text:
            continue  # a capitalised first word is grammar, not a name
        counts[letter] += 1
        slot = Slot(f"{letter}{counts[letter]}", letter, text)
        slots.append(slot)
        out.append(goal[position : match.start()] + "{" + slot.name + "}")
        position = match.end()
    out.append(goal[position:])
    return " ".join("".join(out).split()), slots


def _catalogue_key(tools: Mapping[str, Any]) -> str:
    return "\n".join(sorted(spec.signature() for spec in tools.values()))


def cache_key(template: str, tools: Mapping[str, Any], model: str) -> str:
    digest = hashlib.sha256()
    for part in (template, _catalogue_key(tools), model):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.]){re.escape(text)}(?![\w])")


def _substitute(value: Any, pattern: re.Pattern[str], replacement: str) -> tuple[Any, int]:
    """Replace inside string values only: ids, keys and numbers stay as they are."""
    if isinstance(value, str):
        return pattern.subn(replacement, value)
    if isinstance(value, list):
        pairs = [_substitute(v, pattern, replacement) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    if isinstance(value, dict) and set(value) != {"ref"}:
        items = {k: _substitute(v, pattern, replacement) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, sum(n for _, n in items.values())
    return value, 0


def parameterise(plan: Plan, slots: Iterable[Slot]) -> tuple[Plan, list[str]]:
    """Replace each slot's text in the plan's strings by `{{ slot }}` and make it an input.

    Returns the parameterised plan and the slots it mentions.
    """
    data = plan.model_dump(mode="json")
    taken = {i.name for i in plan.inputs} | {s.id for s in plan.steps}
    used: list[str] = []
    inputs: list[InputDecl] = list(plan.inputs)
    for slot in slots:
        if slot.name in taken:
            continue
        replaced = [
            _substitute(step["args"], _pattern(slot.text), "{{ " + slot.name + " }}")
            for step in data["steps"]
        ]
        for step, (args, _) in zip(data["steps"], replaced, strict=True):
            step["args"] = args
        if any(count for _, count in replaced):
            used.append(slot.name)
            inputs.append(
                InputDecl(name=slot.name, type="str", description=f"from the goal: {slot.text}")
            )
    data["inputs"] = [i.model_dump(mode="json") for i in inputs]
    return Plan.model_validate(data), used


@dataclass
class Hit:
    plan: Plan
    inputs: dict[str, str]
    saved_usd: float
    hits: int


class PlanCache:
    """Goal templates -> parameterised plans (SQLite, WAL)."""

    def __init__(self, path: Path | None = None, on_warning: Callable[[str], None] | None = None):
        self.path = path or data_home() / "plan_cache.sqlite"
        self.on_warning = on_warning  # hears a broken file being replaced (else stderr)
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        # A broken file is moved aside and rebuilt, with a warning: it is only a cache.
        conn = open_store(self.path, "plan cache", rebuild=True, warn=self.on_warning)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS plans (key TEXT, template TEXT, plan TEXT, params TEXT,"
            " fixed TEXT, planning_cost REAL, hits INTEGER DEFAULT 0)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS plans_key ON plans(key)")
        return conn

    def lookup(self, goal: str, tools: Mapping[str, Any], model: str) -> Hit | None:
        template, slots = abstract_goal(goal)
        values = {slot.name: slot.text for slot in slots}
        key = cache_key(template, tools, model)
        with self._lock:
            conn = self._db()
            try:
                rows = conn.execute(
                    "SELECT rowid, plan, params, fixed, planning_cost, hits FROM plans WHERE key = ?",
                    (key,),
                ).fetchall()
                for rowid, plan_json, params, fixed, cost, hits in rows:
                    if any(values.get(name) != text for name, text in json.loads(fixed).items()):
                        continue
                    conn.execute("UPDATE plans SET hits = hits + 1 WHERE rowid = ?", (rowid,))
                    conn.commit()
                    inputs = {name: values[name] for name in json.loads(params)}
                    return Hit(Plan.model_validate_json(plan_json), inputs, float(cost), hits + 1)
            finally:
                conn.close()
        return None

    def store(
        self, goal: str, plan: Plan, tools: Mapping[str, Any], model: str, planning_cost: float
    ) -> list[str]:
        """Store a plan for a goal; returns the slots it is parameterised by."""
        template, slots = abstract_goal(goal)
        parameterised, used = parameterise(plan, slots)
        fixed = {slot.name: slot.text for slot in slots if slot.name not in used}
        with self._lock:
            conn = self._db()
            try:
                conn.execute(
                    "INSERT INTO plans (key, template, plan, params, fixed, planning_cost) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        cache_key(template, tools, model),
                        template,
                        parameterised.model_dump_json(),
                        json.dumps(used),
                        json.dumps(fixed),
                        planning_cost,
                    ),
                )
                conn.commit()
            finally:
                conn.close()
        return used

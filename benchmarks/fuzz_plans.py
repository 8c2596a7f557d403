"""Mutation fuzzing of the front ends: `.plan` text, JSON plans and templates.

Plans may be written by a model, so every input must end in the project's own error
(`PlanError` for a plan, `TemplateProblem` for a template) or succeed; anything else is
a crash. Seeds are the shipped examples (`examples/*.plan`, `examples/articles/*.json`)
and template fragments; each case applies a few random mutations (spans deleted or
duplicated, keywords and hostile values inserted: huge numbers, deep nesting, NaN,
long strings, template bombs). A plan that loads must also survive `fmt` (comments
kept) and parse back to the same IR.

`tests/test_fuzz.py` runs a few hundred seeded cases in the suite; this script runs for
as long as you like:

    .venv/bin/python -m benchmarks.fuzz_plans --seconds 300
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dsl import PlanError, check, format_plan
from dsl.json_loader import load_json
from dsl.loader import parse_plan_text
from dsl.parser import parse_text
from dsl.templates import TemplateProblem, render, template_names
from stdlib_tools import ToolRegistry

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ToolRegistry.standard()
PLAN_SEEDS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").glob("*.plan"))]
JSON_SEEDS = [
    json.loads(p.read_text(encoding="utf-8"))
    for p in sorted((ROOT / "examples" / "articles").glob("*.json"))
]

TOKENS = [
    "plan", "input", "step", "tier", "type", "output", "for", "in", "after", "retry",
    "timeout", "when", "on_error", "task", "check", "describe", "cache", "approve", "=",
    ":", "(", ")", "[", "]", "{", "}", ",", '"', '"""', "{{", "}}", "{%", "%}", "#", "\n",
    "a", "x", "search", "llm", "calculate", "str", "list[", "json", "?", "-", ".", "10s",
    "0ms", "true", "null", "NaN", "Infinity", "1e999", "-0", "\\u0000", "\\", "\t", "\r",
]  # fmt: skip
HOSTILE = [
    "9" * 5000,
    "1" + "0" * 400,
    "[" * 200 + "]" * 200,
    "{" * 100,
    '"' + "x" * 100_000 + '"',
    '"{{ (9**9999)**9999 }}"',
    "\"{{ '%099999999d' % 1 }}\"",
    '"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"',
    '"{{ x' + "|upper" * 500 + ' }}"',
    '"{{ xs|summ }}"',
    '"x is nosuchtest"',
    "\ufeff",
    "\x00",
    "step a = search(query: a)\n" * 3,
]
JSON_VALUES: list[Any] = [
    None, True, 5, -1, 2**70, 10**5000, 1.5, float("nan"), float("inf"), "", "x", "{{ x }}",
    "{{ (9**9999)**9999 }}", [], {}, [1, "a"], {"ref": "a"}, "a" * 10_000, "$.steps[0]",
]  # fmt: skip
TEMPLATE_PARTS = [
    "{{ x }}", "{{ xs|join(',') }}", "{% for i in xs %}", "{% endfor %}", "{% if x %}",
    "{% endif %}", "{{ x ~ x }}", "{{ 'a' * 3 }}", "{{ 2 ** 10 }}", "{{ x|center(9) }}",
    "{{ '%5d' % 3 }}", "{{ range(5)|list }}", "{{ x.__class__ }}", "{{ xs[0] }}",
    "{% set y = x ~ x %}{{ y }}", "{{ y }}", "{{ xs|sort|first }}", "{{ (", ") }}",
    "{{ 9 ** 9999 }}", "{{ 'x'|indent(99999999) }}", "{{ xs|batch(99999999, 0)|list }}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", "{{ x|nosuch }}", "}}", "{%",
    "text ", "\n",
]  # fmt: skip
Case = tuple[str, Any]


def _mutate_text(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(text))
        span = rng.randint(1, 40)
        choice = rng.random()
        if choice < 0.25:
            text = text[:where] + text[where + span :]
        elif choice < 0.4:
            text = text[:where] + text[where : where + span] * rng.randint(2, 4) + text[where:]
        elif choice < 0.7:
            text = text[:where] + f" {rng.choice(TOKENS)} " + text[where:]
        elif choice < 0.85:
            text = text[:where] + rng.choice(HOSTILE) + text[where:]
        elif choice < 0.95:
            lines = text.split("\n")
            rng.shuffle(lines)
            text = "\n".join(lines)
        else:
            text = text[:where]
    return text


def _mutate_json(rng: random.Random, doc: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        parent: Any = None
        key: Any = None
        node = doc
        for _depth in range(rng.randint(0, 6)):
            if isinstance(node, dict) and node:
                parent, key = node, rng.choice(list(node))
            elif isinstance(node, list) and node:
                parent, key = node, rng.randrange(len(node))
            else:
                break
            node = parent[key]
        value = copy.deepcopy(rng.choice(JSON_VALUES))  # shared lists would make cycles
        if parent is None:
            doc = value if rng.random() < 0.1 else doc
        elif rng.random() < 0.2 and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = value
    return doc


def make_case(rng: random.Random) -> Case:
    """One mutated input: ("plan", text), ("json", document) or ("template", text)."""
    kind = rng.random()
    if kind < 0.5:
        return ("plan", _mutate_text(rng, rng.choice(PLAN_SEEDS)))
    if kind < 0.8:
        return ("json", _mutate_json(rng, rng.choice(JSON_SEEDS)))
    parts = [rng.choice(TEMPLATE_PARTS) for _ in range(rng.randint(1, 8))]
    return ("template", "".join(parts))


def _round_trip(plan: Any, text: str | None, smap: Any) -> None:
    printed = format_plan(plan, text, smap)
    again, _ = parse_text(printed)
    if again != plan:
        raise AssertionError("fmt output parses to a different plan")


def run_case(case: Case) -> str:
    """Run one case; return "ok" or "error" (the project's own), raise on a crash."""
    kind, data = case
    try:
        if kind == "plan":
            plan, smap = parse_plan_text(data, "fuzz.plan", REGISTRY)
            check(plan, REGISTRY, smap, source=data)
            _round_trip(plan, data, smap)
        elif kind == "json":
            plan, smap = load_json(data, "fuzz.json", REGISTRY)
            check(plan, REGISTRY, smap)
            _round_trip(plan, None, None)
        else:
            template_names(data)
            render(data, {"x": "ab", "xs": [3, 1, 2]}, deadline=time.monotonic() + 1)
    except (PlanError, TemplateProblem):
        return "error"
    return "ok"


def signature(err: BaseException) -> str:
    """Where a crash happened: the exception type and the innermost project frame."""
    frames = [
        f for f in traceback.extract_tb(err.__traceback__) if "/site-packages/" not in f.filename
    ]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(err).__name__} at {where}: {str(err)[:80]}"


def _preview(data: Any) -> str:
    try:
        return repr(data)[:300]
    except ValueError:  # e.g. an integer too long to print
        return f"<{type(data).__name__} that cannot be printed>"


def fuzz(seconds: float, seed: int, report: Callable[[str], None] = print) -> Counter[str]:
    """Run cases until `seconds` pass; return the outcome counts and crash signatures."""
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    crashes: dict[str, Case] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        case = make_case(rng)
        try:
            counts[f"{case[0]} {run_case(case)}"] += 1
        except Exception as err:  # a crash is what we are looking for
            sig = signature(err)
            counts["crash"] += 1
            if sig not in crashes:
                crashes[sig] = case
                report(f"CRASH {sig}\n  input: {_preview(case[1])}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    started = time.monotonic()
    counts = fuzz(args.seconds, args.seed)
    tried = sum(v for k, v in counts.items() if k != "crash")
    elapsed = time.monotonic() - started
    print(f"seed {args.seed}: {tried + counts['crash']} inputs in {elapsed:.0f}s")
    for key, value in sorted(counts.items()):
        print(f"  {key}: {value}")
    print(f"crashes: {counts['crash']}")
    return 1 if counts["crash"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

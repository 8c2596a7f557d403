"""A plan holding a lone surrogate (`"\\ud800"`) is refused with its location, on every
front end, never an internal error when the run starts writing its journal and audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.checker import check
from dsl.errors import PlanError
from dsl.json_loader import load_json_text
from dsl.lone_surrogates import may_hold_surrogates, surrogate_path
from stdlib_tools import ToolRegistry

TOOLS = ToolRegistry.standard()


def _plan(value: str, key: str = "text") -> str:
    return json.dumps(
        {"name": "p", "steps": [{"id": "a", "tool": "parse_json", "args": {key: value}}]},
        ensure_ascii=True,  # surrogates become \\uXXXX escapes, as a model may write them
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("\ud800", "steps[0].args.text"),
        ("ok \udfff", "steps[0].args.text"),
        ("\ude00\ud83d", "steps[0].args.text"),  # the pair the wrong way round
    ],
)
def test_json_plan_with_lone_surrogate_is_a_located_error(text: str, where: str) -> None:
    with pytest.raises(PlanError) as err:
        load_json_text(_plan(text), "p.json", TOOLS)
    assert f"p.json:{where}" in str(err.value)
    assert "lone surrogate" in str(err.value)


def test_surrogate_in_a_key_is_located() -> None:
    with pytest.raises(PlanError) as err:
        load_json_text(_plan("x", key="k\ud800"), "p.json", TOOLS)
    assert "lone surrogate" in str(err.value)


@pytest.mark.parametrize("text", ["😀", "\\ud800 as text", "é", ""])
def test_valid_text_and_escaped_backslashes_load(text: str) -> None:
    plan, smap = load_json_text(_plan(text), "p.json", TOOLS)
    checked = check(plan, TOOLS, smap)
    assert json.loads(checked.plan_json)["steps"][0]["args"]["text"] == text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, categories=None), max_size=6))
def test_any_text_loads_and_serialises_or_is_refused(text: str) -> None:
    try:
        plan, smap = load_json_text(_plan(text), "p.json", TOOLS)
    except PlanError as err:
        assert "lone surrogate" in str(err)
        assert surrogate_path(text) == ()
        return
    checked = check(plan, TOOLS, smap)
    assert json.loads(checked.plan_json)["steps"][0]["args"]["text"] == text


def test_prescan_finds_every_escape_spelling() -> None:
    assert may_hold_surrogates('"\\uD800"') and may_hold_surrogates('"\\udbff"')
    assert not may_hold_surrogates('"\\u00e9"') and not may_hold_surrogates("plain")


def test_plan_text_with_lone_surrogate_refused_at_run(tmp_path: Path) -> None:
    """The `.plan` front end keeps the escape; the run refuses it, located, before it
    opens its audit log."""
    plan = tmp_path / "p.plan"
    plan.write_text('plan p\n\nstep a = parse_json(text: "\\ud800")\n')
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(plan), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PLANFILE_HOME": str(home)},
    )
    assert done.returncode == 2, done.stderr
    assert "p.plan:3:" in done.stderr and "lone surrogate" in done.stderr
    assert "internal error" not in done.stderr
    assert not list((home / "audit").glob("*.jsonl")) if (home / "audit").exists() else True

"""The checker's cheap per-step paths decide as the general ones do: names in simple
templates, cycles in plans written in order, and the collector after a large load."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.checker import CheckedPlan, check
from dsl.errors import PlanError, collector_frozen, gc_paused
from dsl.json_loader import load_json
from dsl.templates import TemplateProblem, _parsed_names, template_names
from stdlib_tools import ToolRegistry

pieces = st.sampled_from(
    ["{{ a }}", "{{-b.c-}}", "{{ a.b.c }}", "{{x}}", "{{", "}}", "{", "}", " + ", "text", "{{ 1 }}"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=6).map("".join))
def test_simple_templates_name_what_jinja_finds(text: str) -> None:
    """The one-regex reading of `{{ name }}` templates agrees with jinja2's parse."""
    try:
        expected = _parsed_names(text)
    except TemplateProblem:
        return  # jinja2 refuses it; the renderer reports that when the step runs
    assert template_names(text) == expected


def _plan(steps: list[dict[str, object]]) -> dict[str, object]:
    return {"name": "p", "steps": steps}


def _check(doc: dict[str, object], tools: ToolRegistry) -> CheckedPlan:
    plan, smap = load_json(doc, "p.json", tools)
    return check(plan, tools, smap)


def test_forward_dependencies_without_a_cycle_pass() -> None:
    """A step may wait for one written after it; only a real cycle is refused."""
    tools = ToolRegistry.standard()
    doc = _plan(
        [
            {"id": "a", "tool": "calculate", "args": {"expression": "{{ b }}"}},
            {"id": "b", "tool": "calculate", "args": {"expression": "1"}},
        ]
    )
    checked = _check(doc, tools)
    assert checked.deps["a"] == ("b",)
    doc = _plan(
        [
            {"id": "a", "tool": "calculate", "args": {"expression": "{{ b }}"}},
            {"id": "b", "tool": "calculate", "args": {"expression": "{{ a }}"}},
        ]
    )
    with pytest.raises(PlanError) as err:
        _check(doc, tools)
    assert any(d.code == "cycle" for d in err.value.diagnostics)


def test_unknown_parameters_and_missing_arguments_still_located() -> None:
    """Parameters are looked up by name once per tool; errors keep their JSON paths."""
    tools = ToolRegistry.standard()
    doc = _plan(
        [
            {"id": "a", "tool": "calculate", "args": {"expresion": "1"}},
            {"id": "b", "tool": "calculate", "args": {"expression": "1"}},
        ]
    )
    with pytest.raises(PlanError) as err:
        _check(doc, tools)
    found = {(d.code, d.location.path) for d in err.value.diagnostics}
    assert ("unknown-param", ("steps", 0, "args", "expresion")) in found
    assert ("missing-arg", ("steps", 0, "tool")) in found


def test_a_paused_collector_leaves_nothing_frozen_and_keeps_a_callers_freeze() -> None:
    gc.collect()
    with gc_paused():
        kept = [[i] for i in range(1000)]  # lists: always tracked by the collector
    assert gc.isenabled() and gc.get_freeze_count() == 0
    oldest = {id(obj) for obj in gc.get_objects(generation=2)}
    assert id(kept[0]) in oldest  # promoted, not walked by a young collection
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            [{"step": i} for i in range(1000)]
        assert gc.get_freeze_count() == frozen  # someone else's freeze is theirs
    finally:
        gc.unfreeze()


def test_a_runs_freeze_is_kept_by_a_paused_collector_inside_it() -> None:
    """A run freezes what it holds (`collector_frozen`); the plan work inside it
    (`gc_paused`) neither unfreezes it nor counts the frozen objects to find out."""
    with collector_frozen():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with gc_paused():
            [{"step": i} for i in range(1000)]
        assert gc.get_freeze_count() == frozen
        with collector_frozen():  # nested: the outer freeze stays
            pass
        assert gc.get_freeze_count() >= frozen
    assert gc.get_freeze_count() == 0

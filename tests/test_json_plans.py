"""JSON plans: the canonical schema and the shapes LLMs write, with JSON-path errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dsl import PlanError, check, format_plan
from dsl.json_loader import load_json, load_json_bytes
from dsl.ir import Ref, plan_json_schema
from stdlib_tools import ToolRegistry

from .conftest import ROOT


def load(doc: Any, registry: ToolRegistry) -> Any:
    plan, smap = load_json(doc, "p.json", registry)
    return check(plan, registry, smap)


def errors(doc: Any, registry: ToolRegistry) -> list[str]:
    with pytest.raises(PlanError) as info:
        load(doc, registry)
    return [f"{d.location}: {d.message}" for d in info.value.errors]


def test_schema_file_matches_the_ir() -> None:
    """specs/plan.schema.json is exactly what `planfile schema` prints."""
    on_disk = json.loads((ROOT / "specs" / "plan.schema.json").read_text())
    assert on_disk == plan_json_schema()


def test_llm_shape_with_numbers_and_tool_input(registry: ToolRegistry) -> None:
    """step_number ids, numeric depends_on, tool_input, type and requiredModel map onto the IR."""
    checked = load(
        {
            "goal": "Compare",
            "expectedCost": "$0.05",
            "steps": [
                {"step_number": 1, "tool": "search", "tool_input": "rent Austin", "type": "search"},
                {"step_number": 2, "tool": "calculate", "tool_input": 150000, "depends_on": []},
                {
                    "step_number": 3,
                    "description": "compare $1 with $2",
                    "type": "analyze",
                    "requiredModel": "standard",
                    "depends_on": [1, 2],
                },
            ],
        },
        registry,
    )
    plan = checked.plan
    assert plan.expected_cost_usd == 0.05 and plan.goal == "Compare"
    assert [s.id for s in plan.steps] == ["step_1", "step_2", "step_3"]
    assert plan.steps[0].args == {"query": "rent Austin"} and plan.steps[0].task == "search"
    assert plan.steps[1].args == {"expression": "150000"}
    third = plan.steps[2]
    assert (third.tool, third.tier, third.task) == ("llm", "standard", "analyze")
    assert "{{ step_1 }}" in third.args["prompt"] and "{{ step_2 }}" in third.args["prompt"]
    assert checked.deps["step_3"] == ("step_1", "step_2")


def test_no_dependencies_means_a_chain(registry: ToolRegistry) -> None:
    """When no step declares dependencies, the list order is a chain."""
    checked = load({"plan": ["look up the facts", "write the answer"]}, registry)
    assert checked.deps == {"step_1": (), "step_2": ("step_1",)}
    assert "{{ step_1 }}" in checked.plan.steps[1].args["prompt"]


def test_any_declared_dependency_means_a_dag(registry: ToolRegistry) -> None:
    """When any step declares dependencies, the others run in parallel."""
    checked = load(
        [
            {"id": "a", "tool": "search", "tool_input": "x"},
            {"id": "b", "tool": "search", "tool_input": "y"},
            {"id": "c", "description": "combine", "depends_on": ["a", "b"]},
        ],
        registry,
    )
    assert checked.deps == {"a": (), "b": (), "c": ("a", "b")}


def test_references_in_llm_args(registry: ToolRegistry) -> None:
    """`$1` as a whole argument is a reference; inside text it is a template."""
    checked = load(
        {
            "steps": [
                {"id": 1, "tool": "search", "args": {"query": "x"}},
                {"id": 2, "tool": "summarize", "args": {"text": "$1"}, "depends_on": [1]},
                {"id": 3, "tool": "search", "tool_input": "about ${2}", "depends_on": [2]},
            ]
        },
        registry,
    )
    assert checked.plan.steps[1].args["text"] == Ref(ref="step_1")
    assert checked.plan.steps[2].args["query"] == "about {{ step_2 }}"


def test_errors_carry_json_paths(registry: ToolRegistry) -> None:
    """Loader and checker errors name the path in the original document."""
    found = errors(
        {
            "steps": [
                {"id": "a", "tool": "serch", "args": {"query": "x"}},
                {"id": "b", "tool": "calculate", "args": {"expresion": "1"}, "depends_on": ["a"]},
                {"id": "c", "tool": "calculate", "args": {"expression": "1"}, "depends_on": [7]},
            ]
        },
        registry,
    )
    assert "p.json:steps[2].depends_on[0]: depends on unknown step 7" in found


def test_checker_errors_map_back_to_llm_keys(registry: ToolRegistry) -> None:
    """A checker error on an LLM-shaped step points at the key the LLM wrote."""
    found = errors(
        {
            "steps": [
                {"step_number": 1, "tool": "serch", "tool_input": "x"},
                {"step_number": 2, "tool": "calculate", "tool_input": "1", "depends_on": ["zz"]},
            ]
        },
        registry,
    )
    assert "p.json:steps[0].tool: unknown tool `serch`" in found
    assert "p.json:steps[1].depends_on[0]: `after` names unknown step `zz`" in found


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("nope", "a JSON plan is an object or a list, not a string"),
        ({"steps": 3}, "`steps` must be a list, not a number"),
        ({"name": "x"}, "a plan needs `steps`"),
        ({"steps": [3]}, "a step is an object, not a number"),
        ({"steps": [{"id": "a"}]}, "a step needs a `tool`"),
        ({"steps": [{"id": "a", "tool": "calculate", "bogus": 1}]}, "unknown step field `bogus`"),
        ({"stepz": []}, "unknown plan field `stepz`"),
    ],
)
def test_wrong_shapes(doc: Any, message: str, registry: ToolRegistry) -> None:
    """Wrong shapes are named, not crashed on."""
    assert any(message in e for e in errors(doc, registry))


def test_invalid_json_text_is_located() -> None:
    """Malformed JSON gives line:col; NaN and deep nesting are refused."""
    with pytest.raises(PlanError, match=r"p.json:2:\d+: invalid JSON"):
        try:
            load_json_bytes(b'{"steps": [\n  {"id": "a",, }]}', "p.json")
        except PlanError as err:
            raise PlanError(err.diagnostics) from None
    with pytest.raises(PlanError, match="not a JSON number"):
        load_json_bytes(b'{"steps": [], "expectedCost": NaN}', "p.json")
    with pytest.raises(PlanError, match="nests"):
        load_json_bytes(b"[" * 5000 + b"]" * 5000, "p.json")


def test_json_plan_prints_as_text(registry: ToolRegistry) -> None:
    """A JSON plan converts to .plan text that checks the same."""
    from dsl import parse_text

    checked = load(
        {
            "goal": "g",
            "steps": [
                {"id": "a", "tool": "search", "tool_input": "x"},
                {"id": "b", "description": "sum up"},
            ],
        },
        registry,
    )
    text = format_plan(checked.plan)
    reparsed, smap = parse_text(text)
    assert check(reparsed, registry, smap).deps == checked.deps

"""JSON plans: the canonical schema and the shapes LLMs write, with JSON-path errors."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import PlanError, check, format_plan, parse_text
from dsl.ir import Ref, plan_json_schema
from dsl.json_loader import load_json, load_json_bytes
from dsl.loader import parse_plan_text
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
    """Malformed JSON is repaired with a located note, or is a located error; NaN and
    deep nesting are refused."""
    with pytest.raises(PlanError) as info:
        load_json_bytes(b'{"steps": [\n  {"id": "a",, }]}', "p.json")
    rendered = info.value.render()
    assert "p.json:2:" in rendered and "note: repaired:" in rendered
    assert "p.json:steps[0]: error: a step needs a `tool`" in rendered
    with pytest.raises(PlanError, match=r"p.json:1:1: invalid JSON"):
        load_json_bytes(b"no plan here, sorry", "p.json")
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


# --- model noise: property tests ------------------------------------------------------
_words = st.text(alphabet=string.ascii_letters + string.digits + " .,?'-", min_size=1, max_size=20)


@st.composite
def canonical_plans(draw: st.DrawFn) -> dict[str, Any]:
    """Canonical JSON plans that check against the standard tools."""
    count = draw(st.integers(1, 5))
    steps: list[dict[str, Any]] = []
    for index in range(count):
        kind = draw(st.sampled_from(["search", "llm", "calculate"]))
        if kind == "search":
            args: dict[str, Any] = {"query": draw(_words)}
            if draw(st.booleans()):
                args["k"] = draw(st.integers(1, 20))
        elif kind == "llm":
            args = {"prompt": draw(_words)}
            if draw(st.booleans()):
                args["temperature"] = draw(
                    st.floats(0, 2, allow_nan=False).map(lambda f: round(f, 3))
                )
            if draw(st.booleans()):
                args["max_tokens"] = draw(st.integers(1, 4000))
        else:
            args = {"expression": f"{draw(st.integers(0, 999))} * {draw(st.integers(0, 999))}"}
        step: dict[str, Any] = {"id": f"s{index}", "tool": kind, "args": args}
        if index and draw(st.booleans()):
            step["after"] = sorted(draw(st.sets(st.sampled_from([f"s{i}" for i in range(index)]))))
        if draw(st.booleans()):
            step["retry"] = draw(st.integers(0, 5))
        if draw(st.booleans()):
            step["timeout_s"] = draw(
                st.floats(0.5, 600, allow_nan=False).map(lambda f: round(f, 2))
            )
        steps.append(step)
    return {"name": "noisy", "steps": steps}


def _add_noise(doc: dict[str, Any], fence: bool, commas: bool) -> str:
    """Numbers as strings, a fence with prose around it, trailing commas."""
    noisy = json.loads(json.dumps(doc))
    for step in noisy["steps"]:
        for key in ("retry", "timeout_s"):
            if key in step:
                step[key] = json.dumps(step[key])
        for name in ("k", "temperature", "max_tokens"):
            if name in step["args"]:
                step["args"][name] = json.dumps(step["args"][name])
    text = json.dumps(noisy, indent=2)
    if commas:
        text = re.sub(r"(?<=[^\[{,\s])(\n\s*[}\]])", r",\1", text)
    if fence:
        text = f"Here is the plan:\n```json\n{text}\n```\nLet me know if it needs changes."
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_plans(), st.booleans(), st.booleans())
def test_canonical_plans_survive_model_noise(
    doc: dict[str, Any], fence: bool, commas: bool
) -> None:
    """A canonical plan with model noise loads to the same IR, every change a note."""
    registry = ToolRegistry.standard()
    clean, clean_map = parse_plan_text(json.dumps(doc), "p.json", registry)
    noisy, noisy_map = parse_plan_text(_add_noise(doc, fence, commas), "p.json", registry)
    assert noisy == clean
    assert not clean_map.notes
    checked = check(noisy, registry, noisy_map)
    notes = [d.message for d in checked.warnings if d.severity == "note"]
    if fence:
        assert "repaired: removed the code fence around the JSON at line 2" in notes
    # The printer's text of what was loaded parses back to the same IR.
    reparsed, _ = parse_text(format_plan(noisy))
    assert reparsed == noisy


def test_coercion_is_noted_and_lossy_values_stay_errors(registry: ToolRegistry) -> None:
    """`"1000"` -> 1000 with a note; `"2.5"` for an int is a located type error."""
    doc = {"steps": [{"id": "a", "tool": "search", "args": {"query": "x", "k": "5"}}]}
    checked = load(doc, registry)
    assert checked.plan.steps[0].args["k"] == 5
    notes = [f"{d.location}: {d.message}" for d in checked.warnings if d.severity == "note"]
    assert notes == ['p.json:steps[0].args.k: coerced "5" to int 5 for `k` of `search`']
    doc["steps"][0]["args"]["k"] = "2.5"
    assert errors(doc, registry) == [
        "p.json:steps[0].args.k: `k` of `search` is `int`, but the value is `str`"
    ]


def test_timeouts_in_any_unit(registry: ToolRegistry) -> None:
    """`timeout` (ms), `timeout_ms`, `timeout_s`, and duration text all become seconds."""
    cases = [
        ("timeout", 30000, 30.0),
        ("timeout_ms", 1500, 1.5),
        ("timeout_s", 12, 12.0),
        ("timeout", "30s", 30.0),
        ("timeout_s", "2m", 120.0),
        ("timeout_ms", "250", 0.25),
    ]
    for key, value, seconds in cases:
        doc = {"steps": [{"id": "a", "tool": "search", "args": {"query": "x"}, key: value}]}
        assert load(doc, registry).plan.steps[0].timeout_s == seconds, (key, value)
    bad = {"steps": [{"id": "a", "tool": "search", "args": {"query": "x"}, "timeout": "soon"}]}
    assert errors(bad, registry) == [
        'p.json:steps[0].timeout: `timeout` must be a positive duration, not "soon"'
    ]


def test_repairs_are_listed_with_their_lines(registry: ToolRegistry) -> None:
    text = (
        '{\n  "steps": [\n    {"id": "a", "tool": "search", "args": {"query": \'rent\'}},\n  ],\n}'
    )
    plan, smap = parse_plan_text(text, "p.json", registry)
    assert [d.message for d in smap.notes] == [
        "repaired: single-quoted string at line 3",
        "repaired: trailing comma at line 3",
        "repaired: trailing comma at line 4",
    ]
    assert plan.steps[0].args == {"query": "rent"}


def test_unrepairable_reply_shows_where_it_broke(registry: ToolRegistry) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_text("Sorry, I can't make a plan for that.", "reply.json", registry)
    assert info.value.render().startswith("reply.json:1:1: error: invalid JSON")


def test_tool_calls_are_independent_steps(registry: ToolRegistry) -> None:
    """OpenAI `tool_calls`: each call a step, none waiting for another."""
    message = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "search", "arguments": '{"query": "rent Austin"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "search", "arguments": '{"query": "rent SF", "k": "2"}'},
            },
        ],
    }
    checked = load(message, registry)
    assert [s.id for s in checked.plan.steps] == ["call_1", "call_2"]
    assert checked.deps == {"call_1": (), "call_2": ()}
    assert checked.plan.steps[1].args == {"query": "rent SF", "k": 2}
    bad = {"tool_calls": [{"id": "c", "function": {"name": "serch", "arguments": "{}"}}]}
    assert errors(bad, registry)[0].startswith("p.json:tool_calls[0].function.name: unknown tool")


def test_planner_reads_replies_through_the_same_repair(tmp_path: Any) -> None:
    """A fenced reply with a trailing comma is repaired (and listed), not sent back."""
    import asyncio

    from .test_planner import GOOD, PROVIDER, Reply, planner

    PROVIDER.reset()
    text = json.dumps(GOOD, indent=1)
    broken = "```json\n" + text[: text.rindex("]")] + ",]\n}\n```"  # a trailing comma
    PROVIDER.add("planner", Reply(broken))
    planned = asyncio.run(planner(tmp_path).plan("What is 15% of 2400?"))
    assert planned.ok and len(planned.attempts) == 1
    assert (
        "repaired: removed the code fence around the JSON at line 1" in planned.attempts[0].repairs
    )
    assert any(r.startswith("repaired: trailing comma") for r in planned.attempts[0].repairs)


def test_plan_text_language_stays_strict(registry: ToolRegistry) -> None:
    """Coercion is for model-written JSON: in `.plan` text `"5"` for an int is an error."""
    plan, smap = parse_text('step a = search(query: "x", k: "5")', "t.plan")
    with pytest.raises(PlanError, match=r"t.plan:1:\d+: `k` of `search` is `int`, but the value"):
        check(plan, registry, smap)


def test_tool_map_applies_to_llmcompiler_text(registry: ToolRegistry) -> None:
    """`--map-tool` names reach the LLMCompiler/ReWOO importers, before their aliases."""
    from dsl.importers import import_plan

    plan = import_plan(
        "llmcompiler", '1. lookup("rent")\n2. join()', registry, None, {"lookup": "search"}
    )
    assert (plan.steps[0].tool, plan.steps[0].args) == ("search", {"query": "rent"})


def test_outputs_follow_renamed_step_ids(registry: ToolRegistry) -> None:
    """An id a model spelled oddly (`"step 1"`) is renamed; `outputs` naming it by that
    spelling follow the rename, with a note, as references to it already do."""
    doc = {
        "name": "sp",
        "steps": [
            {"id": "step 1", "tool": "calculate", "args": {"expression": "1+1"}},
            {
                "id": "step-2",
                "tool": "calculate",
                "args": {"expression": "{{ step_1 }}*2"},
                "depends_on": ["step 1"],
            },
        ],
        "outputs": ["step 1", "step-2"],
    }
    plan, smap = load_json(doc, "p.json", registry)
    checked = check(plan, registry, smap)
    assert list(checked.plan.outputs) == ["step_1", "step_2"]
    notes = [d.message for d in smap.notes]
    assert "output `step 1` is step `step_1`" in notes
    assert "output `step-2` is step `step_2`" in notes

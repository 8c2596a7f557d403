"""Every plan format shown in the source articles (../shared/articles) loads as written.

Each example is in examples/articles/, copied verbatim from its article (000: the
`ExecutionPlan` JSON its planner prompt asks for, filled in; 003: the example plan;
004: the planner output and the Python lists of dicts; 002/004: LangGraph's
`Plan.steps: list[str]`). Each either checks or fails with an error naming the field
and the fix.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from dsl import PlanError, check
from dsl.loader import parse_plan_text, read_plan_file
from engine import Engine
from stdlib_tools import ToolRegistry

from .conftest import ROOT

ARTICLES = ROOT / "examples" / "articles"

# The 000 article's planner prompt, verbatim: the template a model may echo back.
EXECUTION_PLAN_TEMPLATE = """{
"goal": "...",
"steps": [
{
"id": "step-1",
"type": "search|analyze|code|reasoning|writing",
"prompt": "...",
"requiredModel": "fast|standard|frontier",
"timeout": 30000
}
],
"expectedCost": 0.05
}"""


def load_file(name: str, registry: ToolRegistry, **kw: Any) -> Any:
    plan, smap, text = read_plan_file(ARTICLES / name, registry, **kw)
    return check(plan, registry, smap, source=text)


def problems(name: str, registry: ToolRegistry, **kw: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(PlanError) as info:
        load_file(name, registry, **kw)
    # Locations relative to the articles folder: `004_research_plan.json:steps[0].tool`.
    prefix = f"{ARTICLES}/"
    return [
        (str(d.location).removeprefix(prefix), d.message, d.hint or "") for d in info.value.errors
    ]


def test_000_execution_plan_loads_with_tiers_timeouts_and_cost(registry: ToolRegistry) -> None:
    """`timeout` is milliseconds in this shape; tiers, task types and cost carry over."""
    checked = load_file("000_execution_plan.json", registry)
    plan = checked.plan
    assert plan.expected_cost_usd == 0.05
    assert [(s.id, s.tier, s.task, s.timeout_s) for s in plan.steps] == [
        ("step_1", "fast", "search", 30.0),
        ("step_2", "standard", "analyze", 30.0),
        ("step_3", "standard", "writing", 60.0),
    ]
    notes = [d.message for d in checked.warnings if d.severity == "note"]
    assert "`timeout` 30000 read as milliseconds: timeout_s 30" in notes


def test_000_template_echoed_back_names_the_fields_and_the_fix(registry: ToolRegistry) -> None:
    """A model that returns the prompt's template gets told to pick one value per field."""
    with pytest.raises(PlanError) as info:
        plan, smap = parse_plan_text(EXECUTION_PLAN_TEMPLATE, "plan.json", registry)
        check(plan, registry, smap)
    found = {(str(d.location), d.hint) for d in info.value.errors}
    assert (
        "plan.json:steps[0].type",
        "task types: search, analyze, code, reasoning, writing",
    ) in found
    assert any(loc == "plan.json:steps[0].requiredModel" for loc, _ in found)
    assert all("pick one" in d.message for d in info.value.errors)


def test_003_example_plan_checks_as_a_dag(registry: ToolRegistry) -> None:
    """step_number / depends_on / tool_input: steps 1-3 independent, 4 waits for 3."""
    checked = load_file("003_cost_of_living.json", registry)
    assert checked.deps == {"step_1": (), "step_2": (), "step_3": (), "step_4": ("step_3",)}
    assert checked.plan.steps[2].args == {"expression": "150000 * 0.30"}


def test_003_example_plan_runs_offline(registry: ToolRegistry) -> None:
    """Housing is 45000 and what remains 105000 (the calculator, no model needed)."""
    checked = load_file("003_cost_of_living.json", registry)
    engine = Engine(settings={"workspace": str(ROOT / "examples" / "workspace")})
    result = asyncio.run(engine.run(checked.plan))
    assert result.status == "succeeded", result
    assert result.outputs["step_4"] == 105000
    assert result.steps["step_3"].output == 45000


def test_004_planner_output_names_unknown_tools_and_the_mapping(registry: ToolRegistry) -> None:
    """`web_search`, `research_db`, ...: the error lists the tools, the closest, `--map-tool`."""
    found = problems("004_research_plan.json", registry)
    assert [loc for loc, _, _ in found] == [
        f"004_research_plan.json:steps[{i}].tool" for i in range(4)
    ]
    message, hint = found[0][1], found[0][2]
    assert message == "unknown tool `web_search`"
    assert "did you mean `search`?" in hint and "available tools: calculate," in hint
    assert "`--map-tool web_search=search`" in hint
    assert "did you mean `summarize`?" in found[3][2]


def test_004_planner_output_checks_with_a_tool_map(registry: ToolRegistry) -> None:
    """With the names mapped, descriptions become the search queries and LLM prompts."""
    tool_map = {
        "web_search": "search",
        "research_db": "search",
        "analysis": "llm",
        "summary_generator": "llm",
    }
    checked = load_file("004_research_plan.json", registry, tool_map=tool_map)
    steps = checked.plan.steps
    assert [s.tool for s in steps] == ["search", "search", "llm", "llm"]
    assert steps[0].args == {"query": "Search for recent quantum computing advancements"}
    assert "{{ step_3 }}" in steps[3].args["prompt"]
    notes = [d.message for d in checked.warnings if d.severity == "note"]
    assert "tool `web_search` mapped to `search`" in notes


@pytest.mark.parametrize("name", ["004_financial_plan.json", "004_research_list.json"])
def test_004_action_lists_name_their_actions_as_tools(name: str, registry: ToolRegistry) -> None:
    """`{"step": "fetch_market_data", "params": {...}}`: the action is the tool to find."""
    found = problems(name, registry)
    first = json.loads((ARTICLES / name).read_text())[0]["step"]
    assert found[0][:2] == (f"{name}:[0].step", f"unknown tool `{first}`")
    assert "--map-tool" in found[0][2]


def test_004_research_list_maps_its_loose_keys_to_arguments(registry: ToolRegistry) -> None:
    """Keys beside `step` are the tool's arguments; a mapped action checks."""
    tool_map = {"search_academic_databases": "search"}
    found = problems("004_research_list.json", registry, tool_map=tool_map)
    assert not any(loc.startswith("004_research_list.json:[0]") for loc, _, _ in found)
    plan, _, _ = read_plan_file(ARTICLES / "004_research_list.json", registry, tool_map=tool_map)
    assert plan.steps[0].args == {"query": "quantum computing cryptography 2025"}


@pytest.mark.parametrize(
    "doc",
    [
        {"steps": ["Find the rent in Austin", "Compare it with San Francisco"]},  # LangGraph Plan
        {"plan": ["Find the rent in Austin", "Compare it with San Francisco"]},  # replanner
        {"action": {"steps": ["Find the rent in Austin", "Compare it with San Francisco"]}},  # Act
    ],
)
def test_002_langgraph_and_eino_string_steps_are_a_chain(doc: Any, registry: ToolRegistry) -> None:
    plan, smap = parse_plan_text(json.dumps(doc), "plan.json", registry)
    checked = check(plan, registry, smap)
    assert [s.tool for s in checked.plan.steps] == ["llm", "llm"]
    assert checked.deps == {"step_1": (), "step_2": ("step_1",)}


def test_002_replanner_final_answer_is_not_a_plan(registry: ToolRegistry) -> None:
    with pytest.raises(PlanError, match=r"final answer \(`response`\), not a plan"):
        parse_plan_text('{"response": "Austin leaves more."}', "plan.json", registry)


def test_cli_check_prints_tiers_cost_and_notes(capsys: pytest.CaptureFixture[str]) -> None:
    """`planfile check` on the 000 example: its tiers, expected cost and the unit notes."""
    from engine.cli import main

    assert main(["check", str(ARTICLES / "000_execution_plan.json")]) == 0
    out, err = capsys.readouterr()
    assert "ok (3 steps; tiers fast (1), standard (2); expected cost $0.05; 3 notes)" in out
    assert "note: `timeout` 30000 read as milliseconds: timeout_s 30" in err


def test_cli_map_tool_flag_and_config(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--map-tool NAME=TOOL` and `[tools.map]` in planfile.toml rename tools on load."""
    from engine.cli import main

    plan = str(ARTICLES / "004_research_plan.json")
    monkeypatch.chdir(tmp_path)
    assert main(["check", plan]) == 2
    flags = ["--map-tool", "web_search=search", "--map-tool", "research_db=search"]
    (tmp_path / "planfile.toml").write_text(
        '[tools.map]\nanalysis = "llm"\nsummary_generator = "llm"\nweb_search = "nothing"\n'
    )
    capsys.readouterr()
    assert main(["check", plan, *flags]) == 0
    assert "tool `web_search` mapped to `search`" in capsys.readouterr().err
    assert main(["check", plan, "--map-tool", "web_search"]) == 2


def test_cli_run_of_003_prints_housing_and_remaining(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`planfile run` of the 003 example, offline: 45000 for housing, 105000 remaining,
    each labelled with its step's description (`step_3` alone says nothing)."""
    from engine.cli import main

    monkeypatch.chdir(ROOT / "examples" / "workspace")
    assert main(["run", str(ARTICLES / "003_cost_of_living.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "step_3 (Calculate housing cost at 30% of $150,000): 45000.0" in lines
    assert "step_4 (Calculate remaining income after housing): 105000.0" in lines


TWICE_TOOL = '''from stdlib_tools.registry import tool


@tool
def twice(n: int) -> int:
    """Double n."""
    return 2 * n
'''


def test_cli_run_json_carries_the_loader_notes_and_show_returns_them(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model-written plan's repairs and coercions are in `run --json` as `notes`, and
    `show --json` (from the journal) returns the same document."""
    from engine.cli import main

    (tmp_path / "tools.py").write_text(TWICE_TOOL)
    plan = tmp_path / "plan.json"
    plan.write_text(
        'Here is the plan:\n```json\n{"steps": [\n'
        '  {"id": "a", "tool": "twice", "tool_input": "21"},\n]}\n```\n'
    )
    tools = ["--tools", str(tmp_path / "tools.py")]
    assert main(["run", "--json", *tools, str(plan)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["outputs"] == {"a": 42}
    notes = {(n["code"], n["message"], n["where"]) for n in doc["notes"]}
    assert ("repaired", "repaired: trailing comma at line 4", f"{plan}:4:51") in notes
    coerced = (
        "coerced",
        'coerced "21" to int 21 for `n` of `twice`',
        f"{plan}:steps[0].tool_input",
    )
    assert coerced in notes
    assert main(["show", "--json", doc["run_id"]]) == 0
    assert json.loads(capsys.readouterr().out) == doc


def test_001_numbered_steps_with_tools_inputs_and_criteria(registry: ToolRegistry) -> None:
    """001's "numbered JSON arrays with fields for step description, required tools,
    expected inputs, and success criteria": one tool per step, criteria in the prompt."""
    doc = [
        {
            "step": 1,
            "description": "Find the rent in Austin",
            "required_tools": ["search"],
            "expected_inputs": "the city",
            "success_criteria": "a monthly rent in USD",
        },
        {
            "step": 2,
            "description": "Say which city is cheaper",
            "required_tools": [],
            "expected_inputs": "the rent from step 1",
            "success_criteria": "one city named",
        },
    ]
    plan, smap = parse_plan_text(json.dumps(doc), "plan.json", registry)
    checked = check(plan, registry, smap)
    first, second = checked.plan.steps
    assert (first.tool, first.args) == ("search", {"query": "Find the rent in Austin"})
    assert second.tool == "llm" and second.args["prompt"].endswith("Done when: one city named")
    assert checked.deps == {"step_1": (), "step_2": ("step_1",)}
    doc[1]["required_tools"] = ["search", "calculate"]
    with pytest.raises(PlanError, match="a step calls one tool"):
        parse_plan_text(json.dumps(doc), "plan.json", registry)

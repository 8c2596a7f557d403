"""The planner: scripted replies for valid, repaired and hopeless plans; the joiner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from dsl.ir import Plan, Step
from engine.agent.planner import Planner, add_joiner, allowed_tools, planner_schema
from engine.api import Engine
from engine.config import Config, ModelSettings
from engine.models.ledger import Ledger
from stdlib_tools import ToolRegistry

from .scripted_provider import Reply, registered

PROVIDER = registered()

GOOD = {
    "goal": "15% of 2400, explained",
    "steps": [
        {
            "id": "share",
            "tool": "calculate",
            "args": {"expression": "2400 * 0.15"},
            "depends_on": [],
            "description": "d",
        },
        {
            "id": "answer",
            "tool": "llm",
            "tier": "fast",
            "args": {"prompt": "Explain {{ share }}"},
            "depends_on": ["share"],
            "description": "d",
        },
    ],
    "outputs": ["answer"],
}
BAD = {
    "goal": "g",
    "steps": [
        {
            "id": "share",
            "tool": "calculate",
            "args": {"expresion": "1"},
            "depends_on": ["nope"],
            "description": "d",
        }
    ],
    "outputs": ["share"],
}


@pytest.fixture(autouse=True)
def fresh() -> None:
    PROVIDER.reset()


def planner(tmp_path: Path, max_repairs: int = 2) -> Planner:
    config = Config(
        tiers={"planner": "pftest/planner", "fast": "pftest/fast"},
        models={
            "pftest/planner": ModelSettings(input_cost_per_million=15, output_cost_per_million=15)
        },
    )
    engine = Engine(config=config, ledger=Ledger(tmp_path / "ledger.sqlite"))
    tools = allowed_tools(engine.registry)
    return Planner(engine.model_gateway(), tools, tiers=engine.tier_map(), max_repairs=max_repairs)


def test_valid_plan_first_try(tmp_path: Path) -> None:
    """A valid reply is loaded, checked and priced; the request carries the schema."""
    PROVIDER.add("planner", Reply(GOOD, 2000, 300))
    planned = asyncio.run(planner(tmp_path).plan("What is 15% of 2400?"))
    assert planned.ok and len(planned.attempts) == 1
    assert [s.id for s in planned.checked.plan.steps] == ["share", "answer"]
    assert planned.usage.cost_usd == pytest.approx(2300 * 15e-6)
    schema = PROVIDER.calls[0]["params"]["response_format"]["json_schema"]["schema"]
    tools = [
        shape["properties"]["tool"]["const"]
        for shape in schema["properties"]["steps"]["items"]["anyOf"]
    ]
    assert "calculate" in tools and "http_get" not in tools
    prompt = PROVIDER.calls[0]["messages"][-1]["content"]
    assert "calculate(expression: str) -> float" in prompt and "What is 15% of 2400?" in prompt


def test_invalid_plan_is_repaired(tmp_path: Path) -> None:
    """Errors with JSON paths go back to the model; the repaired plan is accepted."""
    PROVIDER.add("planner", Reply(BAD), Reply(GOOD))
    planned = asyncio.run(planner(tmp_path).plan("g"))
    assert planned.ok and len(planned.attempts) == 2
    errors = planned.attempts[0].errors
    assert any("steps[0].args.expresion" in e and "did you mean `expression`" in e for e in errors)
    repair = PROVIDER.calls[1]["messages"][-1]["content"]
    assert "steps[0].args.expresion" in repair
    assert planned.attempts[0].repairs == [
        "steps[0].depends_on: dropped nope (no such earlier step)"
    ]


def test_hopeless_plan_fails_after_n_attempts(tmp_path: Path) -> None:
    """A model that never produces a valid plan stops after 1 + max_repairs attempts."""
    PROVIDER.default["planner"] = Reply("not json at all")
    planned = asyncio.run(planner(tmp_path, max_repairs=2).plan("g"))
    assert not planned.ok and len(planned.attempts) == 3
    assert all(a.errors and "not JSON" in a.errors[0] for a in planned.attempts)


def test_disallowed_tool_is_refused(tmp_path: Path) -> None:
    """A plan using a tool outside the allowlist (http_get) does not check."""
    sneaky = json.loads(json.dumps(GOOD))
    sneaky["steps"][0] = {
        "id": "share",
        "tool": "http_get",
        "args": {"url": "http://x"},
        "depends_on": [],
        "description": "d",
    }
    PROVIDER.add("planner", Reply(sneaky))
    planned = asyncio.run(planner(tmp_path, max_repairs=0).plan("g"))
    assert not planned.ok and "unknown tool `http_get`" in planned.attempts[0].errors[0]


def test_joiner_added_when_no_model_step_answers(registry: ToolRegistry) -> None:
    """A plan ending in non-model steps gets a standard-tier synthesis step."""
    plan = Plan(
        name="p",
        goal="two numbers",
        steps=(
            Step(id="a", tool="calculate", args={"expression": "1"}),
            Step(id="b", tool="calculate", args={"expression": "2"}),
        ),
    )
    joined = add_joiner(plan, registry)
    answer = joined.steps[-1]
    assert joined.outputs == ("answer",) and answer.tier == "standard"
    assert "{{ a }}" in answer.args["prompt"] and "{{ b }}" in answer.args["prompt"]
    assert add_joiner(joined, registry) == joined


def test_schema_names_only_allowed_tools(registry: ToolRegistry) -> None:
    """One step shape per allowed tool, with that tool's own parameters."""
    shapes = planner_schema(allowed_tools(registry, ["http_get"]))["properties"]["steps"]["items"][
        "anyOf"
    ]
    by_tool = {shape["properties"]["tool"]["const"]: shape for shape in shapes}
    assert "http_get" in by_tool and "calculate" in by_tool
    args = by_tool["calculate"]["properties"]["args"]
    assert args["required"] == ["expression"] and args["additionalProperties"] is False
    assert (
        "tier" in by_tool["llm"]["properties"] and "tier" not in by_tool["calculate"]["properties"]
    )


def test_cli_plan_writes_a_checked_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """`planfile plan` writes canonical .plan text that `planfile check` accepts."""
    from engine.cli.main import main

    PROVIDER.add("planner", Reply(GOOD))
    out = tmp_path / "p.plan"
    code = main(
        [
            "plan",
            "What is 15% of 2400?",
            "-o",
            str(out),
            "--tier",
            "planner=pftest/planner",
            "--tier",
            "fast=pftest/fast",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (
        "step share: float = calculate" in out.read_text()
        or "step share = calculate" in out.read_text()
    )
    assert main(["check", str(out)]) == 0
    PROVIDER.default["planner"] = Reply("{}")
    assert main(["plan", "g", "--tier", "planner=pftest/planner", "--max-repairs", "0"]) == 1


def test_cli_ask_plans_runs_and_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`planfile ask`: plan, show it, run it, answer; planning cost is in the total."""
    from engine.cli.main import main

    (tmp_path / "planfile.toml").write_text(
        '[tiers]\nplanner = "pftest/planner"\nfast = "pftest/fast"\n'
        '[models."pftest/planner"]\ninput_cost_per_million = 15.0\noutput_cost_per_million = 15.0\n'
        '[models."pftest/fast"]\ninput_cost_per_million = 1.0\noutput_cost_per_million = 1.0\n'
    )
    PROVIDER.add("planner", Reply(GOOD, 1000, 0))
    PROVIDER.add("fast", Reply("15% of 2400 is 360.", 100, 0))
    code = main(
        ["ask", "What is 15% of 2400?", "--json", "--config", str(tmp_path / "planfile.toml")]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["outputs"] == {"answer": "15% of 2400 is 360."}
    assert doc["steps"]["share"]["output"] == 360.0
    assert doc["cost_usd"] == pytest.approx(1000 * 15e-6 + 100 * 1e-6)
    assert "step share" in captured.err  # the plan is shown


def test_mechanical_repairs_are_recorded(tmp_path: Path) -> None:
    """Dependencies and outputs naming no step are dropped, and the attempt says so."""
    sloppy = json.loads(json.dumps(GOOD))
    sloppy["steps"][0]["depends_on"] = ["rewoo", "share"]
    sloppy["outputs"] = ["answer", "summary_of_everything"]
    PROVIDER.add("planner", Reply(sloppy))
    planned = asyncio.run(planner(tmp_path, max_repairs=0).plan("g"))
    assert planned.ok
    assert planned.attempts[0].repairs == [
        "steps[0].depends_on: dropped rewoo, share (no such earlier step)",
        "outputs: dropped names of no step (the joiner answers from the results)",
    ]


def test_a_repeated_mistake_is_not_fed_back_identically(tmp_path: Path) -> None:
    """The same wrong reply three times: each retry is told something new (that it repeats
    an earlier attempt, the attempt number), at a higher temperature, with the valid ids
    and tools; the history does not pile up copies of the failed reply."""
    copied = json.loads(json.dumps(GOOD))  # an example's step names, not positional ids
    copied["steps"][0]["tool"] = "rewoo_search"
    PROVIDER.default["planner"] = Reply(copied)
    planned = asyncio.run(planner(tmp_path, max_repairs=2).plan("What is 15% of 2400?"))
    assert not planned.ok and len(planned.attempts) == 3
    calls = PROVIDER.calls
    feedback = [call["messages"][-1]["content"] for call in calls[1:]]
    assert feedback[0] != feedback[1]
    assert "repeats attempt 1" in feedback[1] and "repeats" not in feedback[0]
    for text in feedback:
        assert "unknown tool `rewoo_search`" in text
        assert "rename share -> s1, answer -> s2" in text
        assert "Valid step ids: s1, s2" in text and "Valid tools: calculate, extract" in text
    temperatures = [call["params"].get("temperature") for call in calls]
    assert len(set(temperatures)) == 3
    # Only the latest failed reply is in the conversation, once.
    assert [m["role"] for m in calls[2]["messages"]] == ["system", "user", "assistant", "user"]


def test_the_embedded_model_gets_a_grammar_and_a_new_seed_per_attempt(tmp_path: Path) -> None:
    """On the embedded model the request carries the plan grammar (no schema), a reply
    bound from the step bound, and a seed and temperature that change per attempt."""
    from engine.models.local_model import LOCAL_MODEL

    plan = planner(tmp_path)
    first, second = plan.request(LOCAL_MODEL, 1), plan.request(LOCAL_MODEL, 2)
    assert first["schema"] is None and 'root ::= "{\\"steps\\": ["' in first["extra"]["grammar"]
    assert (first["extra"]["seed"], second["extra"]["seed"]) == (1, 2)
    assert first["temperature"] != second["temperature"]
    assert first["max_tokens"] < 1000
    other = plan.request("pftest/planner", 1)
    assert other["extra"] is None and other["schema"]["properties"]["steps"]["maxItems"] == 4


def test_raw_control_characters_in_a_reply_are_accepted(tmp_path: Path) -> None:
    """A reply with a raw tab, newline or control character inside a JSON string is
    repaired, not rejected as 'not JSON'."""
    reply = (
        '{"steps": [{"id": "s1", "tool": "calculate", "args": {"expression": "2400 * 0.15"}}, '
        '{"id": "s2", "tool": "llm", "tier": "fast", "args": {"prompt": "Explain\t{{ s1 }}\n'
        'in a line\x01"}}], "outputs": ["s2"]}'
    )
    PROVIDER.add("planner", Reply(reply))
    planned = asyncio.run(planner(tmp_path, max_repairs=0).plan("What is 15% of 2400?"))
    assert planned.ok, planned.attempts[0].errors


def test_template_like_goal_text_makes_a_plan_that_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A goal with `{%`/`{{` text: the written .plan (goal, joiner prompt) checks."""
    from engine.cli.main import main

    goal = "Explain {% if x %} and {{ y }} {# z"
    PROVIDER.add(
        "planner",
        Reply(
            '{"steps": [{"id": "s1", "tool": "calculate", "args": {"expression": "2 + 2"}}], '
            '"outputs": ["s1"]}'
        ),
    )
    out = tmp_path / "p.plan"
    code = main(["plan", goal, "-o", str(out), "--tier", "planner=pftest/planner"])
    assert code == 0, capsys.readouterr().err
    assert main(["check", str(out)]) == 0


@pytest.mark.slow
def test_embedded_model_plans_check_by_construction() -> None:
    """Real runs on the embedded model: everyday goals, each plan checks on its first attempt
    (the grammar makes any reply a plan that loads and checks)."""
    from engine.models.local_model import available

    if not available():
        pytest.skip("embedded model not installed")
    engine = Engine()
    plan = Planner(engine.model_gateway(), allowed_tools(engine.registry), tiers=engine.tier_map())
    for goal in (
        "What is 8% of 1250, and is that more than 90?",
        "Write a short reply to a neighbour about {{ noise }} at night {% please %}",
        "Find what our notes say about parking permits and summarize it",
    ):
        planned = asyncio.run(plan.plan(goal))
        checked = planned.checked
        assert checked is not None and len(planned.attempts) == 1, planned.attempts[-1].errors
        ids = [s.id for s in checked.plan.steps]
        assert ids[0] == "s1" and checked.plan.goal == goal

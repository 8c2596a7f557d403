"""Agent steps in the language (issue 13, items 1 and 6): `.plan` and JSON forms, the
checker's rules with located errors, `--executor agent`, the printer and the schema."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsl import PlanError, check, format_plan, parse_text
from dsl.agent_steps import DEFAULT_AGENT_TOOLS
from dsl.importers import import_plan
from dsl.ir import Plan, Ref, plan_json_schema
from dsl.json_loader import load_json
from dsl.loader import read_plan_file
from dsl.parser import SourceMap
from engine.run.result import StepRecord
from stdlib_tools import ToolRegistry

from .conftest import EXAMPLES, ROOT
from .scripted_provider import Reply, registered

PROVIDER = registered()

AGENT_PLAN = """\
type Facts { rent: float, city: str }
input city: str = "Austin"

step facts: Facts = agent(tier: fast, task: "Find the rent in {{ city }} and compute 30% of it", tools: [search, calculate], max_iterations: 5)
step notes: list[str] = agent(task: "List what {{ facts.city }} costs", tools: ["search"])

output facts, notes
"""


def parse_check(text: str, registry: Mapping[str, Any], file: str = "a.plan") -> Any:
    plan, smap = parse_text(text, file)
    return check(plan, registry, smap, source=text)


def problems(text: str, registry: ToolRegistry) -> list[tuple[str, str, str, str]]:
    """(location, severity, message, hint) of every diagnostic of a `.plan` text."""
    with pytest.raises(PlanError) as info:
        parse_check(text, registry)
    return [(str(d.location), d.severity, d.message, d.hint or "") for d in info.value.diagnostics]


def json_problems(doc: Any, registry: ToolRegistry, **kw: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(PlanError) as info:
        plan, smap = load_json(doc, "p.json", registry, **kw)
        check(plan, registry, smap)
    return [(str(d.location), d.message, d.hint or "") for d in info.value.errors]


def load_checked(doc: Any, registry: ToolRegistry, **kw: Any) -> Any:
    plan, smap = load_json(doc, "p.json", registry, **kw)
    return check(plan, registry, smap)


# --- .plan ---------------------------------------------------------------------------


def test_plan_agent_step_holds_tool_names_not_references(registry: ToolRegistry) -> None:
    """Inside `tools: [...]` bare names are tools (strings in the IR), not steps or inputs;
    `tier` stays a step setting; the task is a template over the step's inputs."""
    checked = parse_check(AGENT_PLAN, registry)
    facts, notes = checked.plan.steps
    assert facts.tool == "agent" and facts.tier == "fast"
    assert facts.args == {
        "task": "Find the rent in {{ city }} and compute 30% of it",
        "tools": ["search", "calculate"],
        "max_iterations": 5,
    }
    assert notes.args["tools"] == ["search"]  # quoted names are the same names
    assert checked.deps == {"facts": (), "notes": ("facts",)}  # from the task template
    # The declared record and list types are the final answer's types.
    assert str(checked.result_types["facts"]) == "Facts"
    assert str(checked.result_types["notes"]) == "list[str]"


def test_a_tool_name_may_equal_a_step_or_input_name(registry: ToolRegistry) -> None:
    """`search` in `tools` is the tool even where a step is called `search`."""
    text = (
        'step search: str = search(query: "x")\n'
        'step a = agent(task: "use {{ search }}", tools: [search])\n'
    )
    checked = parse_check(text, registry)
    assert checked.plan.steps[1].args["tools"] == ["search"]
    assert checked.deps["a"] == ("search",)  # through the template only


def test_agent_step_in_a_fan_out(registry: ToolRegistry) -> None:
    text = (
        'input cities: list[str] = ["Austin", "Boston"]\n'
        'step rents: list[float] = for c in cities: agent(task: "rent in {{ c }}", tools: [search])\n'
    )
    checked = parse_check(text, registry)
    assert checked.plan.steps[0].for_each is not None
    assert str(checked.result_types["rents"]) == "list[float]"


@pytest.mark.parametrize(
    ("step", "at", "message", "hint"),
    [
        (
            'agent(task: "x", tools: [serch])',
            "serch",
            "unknown tool `serch` in `tools`",
            "did you mean `search`?",
        ),
        (
            'agent(task: "x", tools: [search, agent])',
            "agent])",
            "an agent step cannot offer `agent` (agents do not nest)",
            "list the tools",
        ),
        (
            'agent(task: "x", tools: [search], max_iterations: 0)',
            "0)",
            "`max_iterations` is 0; it must be from 1 to 50",
            "max_iterations: 5",
        ),
        (
            'agent(task: "x", tools: [search], max_iterations: 51)',
            "51",
            "`max_iterations` is 51; it must be from 1 to 50",
            "",
        ),
        (
            'agent(task: "x", tools: [])',
            "[]",
            "`tools` of `agent` is empty: the agent needs at least one tool",
            "`llm` step",
        ),
        (
            'agent(task: "x", tools: search)',
            "search)",
            "`tools` of `agent` is a list of tool names, not `search`",
            "tools: [search, calculate]",
        ),
        (
            'agent(task: "x", tools: [search, a.b])',
            "a.b",
            "`tools` lists tool names; `a.b` is not one",
            "named, not computed",
        ),
        (
            'agent(task: "x", tools: ["{{ t }}"])',
            '"{{',
            "`tools` lists tool names; `'{{ t }}'` is not one",
            "",
        ),
        (
            'agent(task: "x", tools: [search], max_cost_usd: 0)',
            "0)",
            "`max_cost_usd` is 0; a cost cap is more than 0 dollars",
            "",
        ),
        (
            'agent(task: "x")',
            "agent(",
            "`agent` needs `tools`",
            "signature: agent(",
        ),
        (
            'agent(tools: [search], max_iterations: "5")',
            "agent(",
            "`agent` needs `task`",
            "",
        ),
        (
            'agnt(task: "x", tools: [search])',
            "agnt",
            "unknown tool `agnt`",
            "did you mean `agent`?",
        ),
    ],
)
def test_agent_errors_are_located_with_the_fix(
    step: str, at: str, message: str, hint: str, registry: ToolRegistry
) -> None:
    """Each error points at what is wrong (`at`: the text under the caret)."""
    where = f"a.plan:1:{len('step a = ') + step.rindex(at) + 1}"
    found = problems(f"step a = {step}\n", registry)
    errors = [(loc, msg, h) for loc, severity, msg, h in found if severity == "error"]
    assert (where, message) in [(loc, msg) for loc, msg, _ in errors], found
    assert hint in next(h for loc, msg, h in errors if msg == message)


def test_a_tool_listed_twice_is_a_warning(registry: ToolRegistry) -> None:
    checked = parse_check('step a = agent(task: "x", tools: [search, search])\n', registry)
    assert [(str(d.location), d.message) for d in checked.warnings] == [
        ("a.plan:1:43", "tool `search` is listed twice")
    ]


def test_only_the_catalogue_given_to_the_checker_is_allowed(registry: ToolRegistry) -> None:
    """The checker's catalogue is the allowlist (the planner passes the allowed tools):
    a registered tool outside it is unknown inside `tools` too."""
    allowed = {name: registry[name] for name in ("agent", "search", "calculate")}
    with pytest.raises(PlanError) as info:
        parse_check('step a = agent(task: "x", tools: [search, http_get])\n', allowed)
    (error,) = info.value.errors
    assert (str(error.location), error.message) == (
        "a.plan:1:43",
        "unknown tool `http_get` in `tools`",
    )


# --- printer ------------------------------------------------------------------------


def test_agent_steps_print_back_to_plan_text(registry: ToolRegistry) -> None:
    plan, _ = parse_text(AGENT_PLAN)
    text = format_plan(plan)
    assert "tools: [search, calculate]" in text and "tools: [search])" in text
    assert parse_text(text)[0] == plan
    parse_check(text, registry)


def test_fmt_of_an_agent_json_plan_reparses_to_the_same_plan(registry: ToolRegistry) -> None:
    """`planfile fmt --executor agent` output runs as the JSON did, marker included."""
    plan, _ = load_json(
        {"steps": ["Find the rent", "Compare"]}, "p.json", registry, executor="agent"
    )
    text = format_plan(plan)
    assert "    executor agent" in text
    again, _ = parse_text(text)
    assert again == plan


def test_an_unknown_executor_in_plan_text_is_located(registry: ToolRegistry) -> None:
    found = problems('step a = llm(prompt: "x")\n    executor robot\n', registry)
    assert found[0][:3] == ("a.plan:2:14", "error", "unknown executor `robot`")


# --- JSON ----------------------------------------------------------------------------


def test_json_canonical_agent_step(registry: ToolRegistry) -> None:
    doc = {
        "steps": [
            {
                "id": "a",
                "tool": "agent",
                "args": {"task": "Find x", "tools": ["search", "calculate"], "max_iterations": 5},
                "type": "list[str]",
                "tier": "fast",
            }
        ]
    }
    (step,) = load_checked(doc, registry).plan.steps
    assert step.args == {"task": "Find x", "tools": ["search", "calculate"], "max_iterations": 5}
    assert step.executor is None  # written as an agent step, nothing was made up


def test_json_agent_keys_at_the_step_top_level_as_models_write_them(
    registry: ToolRegistry,
) -> None:
    """`task`, `tools`, `max_iterations` beside `"tool": "agent"`; tool names mapped and
    text coerced with notes."""
    doc = {
        "steps": [
            {
                "id": "a",
                "tool": "agent",
                "task": "Find the rent",
                "tools": ["web_search", "Calculate"],
                "max_iterations": "4",
            }
        ]
    }
    checked = load_checked(doc, registry, tool_map={"web_search": "search"})
    (step,) = checked.plan.steps
    assert step.args == {
        "task": "Find the rent",
        "tools": ["search", "calculate"],
        "max_iterations": 4,
    }
    notes = {(str(d.location), d.message) for d in checked.warnings}
    assert ("p.json:steps[0].tools[0]", "tool `web_search` mapped to `search`") in notes
    assert (
        "p.json:steps[0].max_iterations",
        'coerced "4" to int 4 for `max_iterations` of `agent`',
    ) in notes


def test_json_task_type_beside_an_agent_is_still_a_task_type(registry: ToolRegistry) -> None:
    doc = [
        {"id": "a", "tool": "agent", "task": "search", "description": "Find x", "tools": ["search"]}
    ]
    (step,) = load_checked(doc, registry).plan.steps
    assert step.task == "search" and step.args["task"] == "Your task: Find x"


def test_json_description_with_a_tools_list_is_an_agent_step(registry: ToolRegistry) -> None:
    """A description (or prompt) and a `tools` list: the agent's task, with the goal and
    the earlier results as for an `llm` step; one name is read as a list of one."""
    doc = {
        "goal": "Compare rents",
        "steps": [
            {"description": "Find the rent in Austin", "tools": ["search", "calculate"]},
            {"prompt": "Compare it", "tools": "search"},
        ],
    }
    checked = load_checked(doc, registry)
    first, second = checked.plan.steps
    assert (first.tool, first.args["tools"]) == ("agent", ["search", "calculate"])
    assert first.args["task"] == "Overall goal: Compare rents\nYour task: Find the rent in Austin"
    assert second.args["tools"] == ["search"] and "- step_1: {{ step_1 }}" in second.args["task"]
    assert checked.deps == {"step_1": (), "step_2": ("step_1",)}
    assert first.executor is None  # the plan asked for an agent


def test_json_agent_errors_name_the_json_path(registry: ToolRegistry) -> None:
    doc = {
        "steps": [
            {
                "id": "a",
                "tool": "agent",
                "args": {
                    "task": "x",
                    "tools": ["serch", {"ref": "b"}, "agent"],
                    "max_iterations": 99,
                },
            },
            {"id": "b", "tool": "agent", "task": "y", "tools": []},
            {"id": "c", "tool": "agent", "task": "y", "args": {"task": "z", "tools": ["search"]}},
        ]
    }
    found = json_problems(doc, registry)
    assert [(loc, msg) for loc, msg, _ in found] == [
        ("p.json:steps[2].task", "`task` is given twice (here and in the arguments)"),
    ]
    del doc["steps"][2]
    found = json_problems(doc, registry)
    located = sorted((loc, msg) for loc, msg, _ in found)
    assert located == sorted(
        [
            ("p.json:steps[0].args.tools[0]", "unknown tool `serch` in `tools`"),
            ("p.json:steps[0].args.tools[1]", "`tools` lists tool names; `b` is not one"),
            (
                "p.json:steps[0].args.tools[2]",
                "an agent step cannot offer `agent` (agents do not nest)",
            ),
            (
                "p.json:steps[0].args.max_iterations",
                "`max_iterations` is 99; it must be from 1 to 50",
            ),
            (
                "p.json:steps[1].tools",
                "`tools` of `agent` is empty: the agent needs at least one tool",
            ),
        ]
    )
    hint = next(h for loc, _, h in found if loc.endswith("tools[0]"))
    assert "did you mean `search`?" in hint and "--map-tool serch=search" in hint
    assert "available tools: calculate," in hint  # `agent` is no tool an agent may call


def test_several_required_tools_suggest_an_agent_step(registry: ToolRegistry) -> None:
    doc = [{"step": 1, "description": "Find x", "required_tools": ["search", "calculate"]}]
    with pytest.raises(PlanError, match="a step calls one tool") as info:
        load_json(doc, "p.json", registry)
    assert '"tools": [...] beside its description' in (info.value.errors[0].hint or "")


# --- --executor ------------------------------------------------------------------------


def test_description_steps_are_llm_steps_by_default_and_say_so(registry: ToolRegistry) -> None:
    checked = load_checked({"steps": ["Find the rent in Austin", "Compare it"]}, registry)
    assert [(s.tool, s.executor) for s in checked.plan.steps] == [("llm", "llm"), ("llm", "llm")]
    assert not [d for d in checked.warnings if d.code == "executor"]


def test_executor_agent_runs_description_steps_as_agents(registry: ToolRegistry) -> None:
    """LangGraph's `list[str]` plan: each string an agent step over the default tools,
    chained as before; a note per step says so."""
    doc = {"goal": "Rent", "steps": ["Find the rent in Austin", "Compare it"]}
    checked = load_checked(doc, registry, executor="agent")
    first, second = checked.plan.steps
    assert (first.tool, first.executor) == ("agent", "agent")
    assert first.args == {
        "task": "Overall goal: Rent\nYour task: Find the rent in Austin",
        "tools": list(DEFAULT_AGENT_TOOLS),
    }
    assert "{{ step_1 }}" in second.args["task"]
    assert checked.deps == {"step_1": (), "step_2": ("step_1",)}
    notes = [(str(d.location), d.message) for d in checked.warnings if d.code == "executor"]
    assert notes[0] == (
        "p.json:steps[0].description",
        "the step names no tool: it runs as an agent step over search, calculate, read_file,"
        " list_files, json_query (--executor agent)",
    )
    assert len(notes) == 2


def test_executor_agent_runs_unknown_tools_as_agents(registry: ToolRegistry) -> None:
    """Article 004's invented tools: by default an error whose hint names `--executor
    agent`; with it, an agent step whose task is the description and the asked-for call."""
    doc = {
        "steps": [
            {"id": "s1", "tool": "web_search", "description": "Search for quantum advances"},
            {
                "id": "s2",
                "tool": "fetch_market_data",
                "args": {"symbol": "AAPL", "since": {"ref": "s1"}},
            },
        ]
    }
    found = json_problems(doc, registry)
    assert found[0][:2] == ("p.json:steps[0].tool", "unknown tool `web_search`")
    assert found[0][2].endswith(
        "or run the step as an agent over the default tools: `--executor agent`"
    )
    checked = load_checked(doc, registry, executor="agent")
    s1, s2 = checked.plan.steps
    assert (s1.tool, s1.executor, s1.args["tools"]) == ("agent", "agent", list(DEFAULT_AGENT_TOOLS))
    assert (
        s1.args["task"]
        == "Your task: Search for quantum advances\nDo what the tool `web_search` would do."
    )
    assert "- symbol: AAPL\n- since: {{ s1 }}" in s2.args["task"]
    assert checked.deps["s2"] == ("s1",)
    notes = [(str(d.location), d.message) for d in checked.warnings if d.code == "executor"]
    assert notes[1] == (
        "p.json:steps[1].tool",
        "tool `fetch_market_data` is not registered: it runs as an agent step over search,"
        " calculate, read_file, list_files, json_query (--executor agent)",
    )


def test_executor_agent_for_the_articles_plans(registry: ToolRegistry) -> None:
    """004's research plan (tools nobody registered) checks as agent steps."""
    plan, smap, text = read_plan_file(
        ROOT / "examples" / "articles" / "004_research_plan.json", registry, executor="agent"
    )
    checked = check(plan, registry, smap, source=text)
    assert {s.tool for s in checked.plan.steps} == {"agent"}
    assert all(s.executor == "agent" for s in checked.plan.steps)


def test_plan_text_stays_strict_under_executor_agent(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    """`.plan` text names its tools: a typo stays an error, whatever the executor."""
    path = tmp_path / "a.plan"
    path.write_text('step a = serch(query: "x")\n')
    plan, smap, text = read_plan_file(path, registry, executor="agent")
    with pytest.raises(PlanError, match="unknown tool `serch`"):
        check(plan, registry, smap, source=text)


@pytest.mark.parametrize(
    ("kind", "text", "step", "task"),
    [
        (
            "llmcompiler",
            '1. stock_price("AAPL", period="1y")\n2. join()',
            "step_1",
            "Do what the tool `stock_price` would do with:\n- arg1: AAPL\n- period: 1y",
        ),
        (
            "rewoo",
            "Plan: Find it.\n#E1 = Google[x]\nPlan: Count.\n#E2 = Census[people in #E1]",
            "E2",
            "Count.\nDo what the tool `Census` would do with:\n- input: people in {{ E1 }}",
        ),
    ],
)
def test_importers_run_unknown_tools_as_agents(
    kind: str, text: str, step: str, task: str, registry: ToolRegistry
) -> None:
    notes: list[Any] = []
    plan = import_plan(kind, text, registry, "p.txt", executor="agent", notes=notes)
    made = next(s for s in plan.steps if s.id == step)
    assert (made.tool, made.executor, made.args["task"]) == ("agent", "agent", task)
    assert [n.code for n in notes] == ["executor"] and "--executor agent" in notes[0].message
    check(plan, registry, SourceMap("p.txt", is_json=True, notes=notes))
    if kind == "llmcompiler":
        with pytest.raises(PlanError) as info:
            import_plan(kind, text, registry, "p.txt")
        assert "`--executor agent`" in (info.value.errors[0].hint or "")


def test_step_record_says_which_executor_ran() -> None:
    record = StepRecord(tool="agent", executor="agent")
    assert record.to_json()["executor"] == "agent"
    assert StepRecord.from_json(record.to_json()).executor == "agent"
    assert "executor" not in StepRecord(tool="search").to_json()


# --- schema ----------------------------------------------------------------------------


def test_schema_accepts_agent_steps_and_every_example() -> None:
    schema = plan_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "name": "p",
        "steps": [
            {
                "id": "a",
                "tool": "agent",
                "args": {"task": "x", "tools": ["search"], "max_iterations": 5},
            },
            {"id": "b", "tool": "llm", "args": {"prompt": "y"}, "executor": "llm"},
        ],
    }
    assert not list(validator.iter_errors(good))
    for bad_args in (
        {"task": "x", "tools": []},
        {"task": "x", "tools": ["agent"]},
        {"tools": ["search"]},
        {"task": "x", "tools": ["search"], "max_iterations": 0},
    ):
        bad = {"name": "p", "steps": [{"id": "a", "tool": "agent", "args": bad_args}]}
        assert list(validator.iter_errors(bad)), bad_args
    for path in sorted(EXAMPLES.glob("*.plan")):
        plan, _ = parse_text(path.read_text(), str(path))
        assert not list(validator.iter_errors(plan.model_dump(mode="json", exclude_none=True))), (
            path
        )
    plan, _ = parse_text(AGENT_PLAN)
    assert not list(validator.iter_errors(plan.model_dump(mode="json", exclude_none=True)))
    assert Plan.model_validate(plan.model_dump(mode="json")) == plan
    assert json.loads((ROOT / "specs" / "plan.schema.json").read_text()) == schema


# --- command line ------------------------------------------------------------------------


def test_cli_executor_flag_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    doc = tmp_path / "p.json"
    doc.write_text(
        json.dumps({"steps": [{"tool": "fetch_market_data", "description": "Get AAPL"}]})
    )
    assert main(["check", str(doc)]) == 2
    assert "--executor agent" in capsys.readouterr().err
    assert main(["check", str(doc), "--executor", "agent"]) == 0
    assert "runs as an agent step" in capsys.readouterr().err
    (tmp_path / "planfile.toml").write_text('executor = "agent"\n')
    assert main(["check", str(doc)]) == 0
    assert main(["check", str(doc), "--executor", "llm"]) == 2  # the flag wins
    capsys.readouterr()
    assert main(["fmt", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "step_1 = agent(task:" in out and "executor agent" in out


def test_run_record_says_the_step_ran_as_an_llm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`planfile run --json`: a description-only step's record carries `executor`."""
    from engine.cli import main

    PROVIDER.reset()
    PROVIDER.default["standard"] = Reply("Austin is cheaper", 10, 5)
    config = tmp_path / "planfile.toml"
    config.write_text('[tiers]\nstandard = "pftest/standard"\n')
    doc = tmp_path / "p.json"
    doc.write_text(json.dumps({"steps": ["Say which city is cheaper"]}))
    code = main(["run", str(doc), "--json", "--config", str(config), "--workspace", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    record = result["steps"]["step_1"]
    assert (record["tool"], record["executor"]) == ("llm", "llm")


def test_refs_in_plan_text_are_kept_outside_agent_tools(registry: ToolRegistry) -> None:
    """Only `tools` of `agent` holds names: other tools' list arguments keep references."""
    plan, _ = parse_text(
        'input q: str = "x"\nstep a = search(query: q)\nstep b = llm(prompt: "{{ a }}", stop: [a])\n'
    )
    assert plan.steps[1].args["stop"] == [Ref(ref="a")]


def test_run_record_says_the_step_ran_as_an_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--executor agent`: the description-only step runs the agent loop over the
    default tools and its record says `"executor": "agent"`."""
    from engine.cli import main

    PROVIDER.reset()
    PROVIDER.add(
        "standard",
        Reply("", 10, 5, tool_calls=[{"name": "calculate", "arguments": {"expression": "2 * 21"}}]),
        Reply("42", 10, 5),
    )
    config = tmp_path / "planfile.toml"
    config.write_text('[tiers]\nstandard = "pftest/standard"\n')
    doc = tmp_path / "p.json"
    doc.write_text(json.dumps({"steps": ["Compute twice 21"]}))
    argv = ["run", str(doc), "--json", "--config", str(config), "--workspace", str(tmp_path)]
    code = main([*argv, "--executor", "agent"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    record = result["steps"]["step_1"]
    assert (record["tool"], record["executor"], record["output"]) == ("agent", "agent", "42")
    assert [call["tool"] for call in record["tool_calls"]] == ["calculate"]
    offered = PROVIDER.calls[0]["params"].get("tools") or []
    assert sorted(t["function"]["name"] for t in offered) == sorted(DEFAULT_AGENT_TOOLS)


_CALLABLE = sorted(set(ToolRegistry.standard()) - {"agent"})


@given(
    st.lists(st.sampled_from(_CALLABLE), min_size=1, max_size=6, unique=True),
    st.integers(1, 50),
    st.booleans(),
)
def test_any_tool_list_checks_as_names_and_prints_back(
    names: list[str], iterations: int, quoted: bool
) -> None:
    """Whatever registered tools an agent lists, bare or quoted, the IR holds their
    names in order, the checker accepts them, and the printed text parses back."""
    shown = ", ".join(f'"{n}"' if quoted else n for n in names)
    text = f'step a = agent(task: "t", tools: [{shown}], max_iterations: {iterations})\n'
    registry = ToolRegistry.standard()
    checked = parse_check(text, registry)
    (step,) = checked.plan.steps
    assert step.args["tools"] == names and step.args["max_iterations"] == iterations
    assert parse_text(format_plan(checked.plan))[0] == checked.plan


def test_an_empty_agent_task_is_a_located_error(registry: ToolRegistry) -> None:
    """`agent(task: "")`, an empty `task`, or an empty description read as the task (or
    run as an agent step under --executor agent) say where, not run a taskless agent."""
    found = problems('step a = agent(task: "  ", tools: [search])\n', registry)
    assert [(loc, sev) for loc, sev, _, _ in found] == [("a.plan:1:22", "error")]
    assert "`task` of `agent` is empty" in found[0][2]
    doc: Any = {"steps": [{"id": "a", "tool": "agent", "task": "", "tools": ["search"]}]}
    assert [loc for loc, _, _ in json_problems(doc, registry)] == ["p.json:steps[0].task"]
    described = {"goal": "Find the rent", "steps": [{"description": " ", "tools": ["search"]}]}
    assert [loc for loc, _, _ in json_problems(described, registry)] == [
        "p.json:steps[0].description"
    ]
    for empty in ({"goal": "Find the rent", "steps": [{"description": ""}]}, [""]):
        found_json = json_problems(empty, registry, executor="agent")
        assert [msg for _, msg, _ in found_json] == [
            "the step's description is empty: as an agent step it needs a task"
        ]

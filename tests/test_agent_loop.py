"""Agent steps' loop: tool calls over iterations, concurrency, caps, budgets, replay, types.

Offline and exact: the in-process `pftest/...` provider scripts each model reply (text,
or function calls) with chosen token counts, and prices come from the config.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Engine, load_plan
from engine.agent.loop import AGENT_LOOP
from engine.agent.offer import function_spec, offered_tools, tool_result_text
from engine.config import Config, ModelSettings
from engine.models.ledger import Ledger
from engine.run.events import AgentModelCalled, AgentToolCalled, Event, EventBus
from engine.run.executor import RetryPolicy, RunContext, StepError, StepRunner
from engine.run.result import RunResult, StepRecord
from stdlib_tools.registry import ToolContext, ToolRegistry, tool

from .scripted_provider import Reply, registered

PROVIDER = registered()
PRICE = ModelSettings(input_cost_per_million=0.80, output_cost_per_million=0.80)
STRONG = ModelSettings(input_cost_per_million=3.0, output_cost_per_million=3.0)
TIERS = {"fast": "pftest/fast", "standard": "pftest/standard"}
CALL_COST = (100 + 50) * 0.80 / 1e6  # one scripted reply on the fast tier

VALUES = {"paris": "2.1 million people", "rome": "2.8 million people", "oslo": "0.7 million"}


class Probe:
    """What the test tools saw: calls, and how many ran at once."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.secret_calls = 0
        self.keys: list[str] = []


PROBE = Probe()


@tool
async def lookup(city: str, ctx: ToolContext) -> str:
    """Look up a city's population.

    Args:
        city: the city, lower case
    """
    PROBE.active += 1
    PROBE.most = max(PROBE.most, PROBE.active)
    PROBE.keys.append(ctx.idempotency_key)
    try:
        await asyncio.sleep(0.2)
    finally:
        PROBE.active -= 1
    if city not in VALUES:
        raise KeyError(f"no city `{city}`")
    return VALUES[city]


@tool
def secret(x: str) -> str:
    """A tool no agent step lists."""
    PROBE.secret_calls += 1
    return "leaked"


@tool
def long_text() -> str:
    """A tool with a very long output."""
    return "x" * 20_000


TOOLS = [lookup, secret, long_text]


@pytest.fixture(autouse=True)
def fresh() -> None:
    PROVIDER.reset()
    global PROBE
    PROBE.__init__()  # type: ignore[misc]


def config(**models: ModelSettings) -> Config:
    return Config(
        tiers=TIERS,
        models={"pftest/fast": PRICE, "pftest/standard": STRONG, **models},
    )


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def plan(args: str, type_: str = "str", extra: str = "", retry: str = "") -> str:
    return f"plan t\n{extra}step a: {type_} = agent({args}, tier: fast){retry}\noutput a\n"


def run(text: str, *, events: list[Event] | None = None, **kwargs: Any) -> RunResult:
    kwargs.setdefault("config", config())
    kwargs.setdefault("retry", RetryPolicy(base_s=0.001, cap_s=0.002))
    engine = Engine(tools=TOOLS, **kwargs)
    try:
        checked = load_plan(text, tools=TOOLS, tiers=["fast", "standard"])
        return asyncio.run(
            engine.run(checked, on_event=events.append if events is not None else None)
        )
    finally:
        engine.close()


def system_messages() -> list[str]:
    return [c["messages"][0]["content"] for c in PROVIDER.calls]


TASK = 'task: "How many people live in Paris and in Rome?", tools: ["lookup"]'


# --- the loop -------------------------------------------------------------------------


def test_answers_in_one_go_offering_only_the_listed_tools() -> None:
    PROVIDER.add("fast", Reply("Paris has 2.1 million people."))
    result = run(plan(TASK))
    assert result.ok, result.steps["a"].error
    assert result.outputs["a"] == "Paris has 2.1 million people."
    step = result.to_json()["steps"]["a"]
    assert step["iterations"] == 1 and step["tool_calls"] == []
    assert step["cost_usd"] == pytest.approx(CALL_COST)
    (only,) = PROVIDER.calls
    offered = only["params"]["tools"]
    assert [t["function"]["name"] for t in offered] == ["lookup"]
    parameters = offered[0]["function"]["parameters"]
    assert parameters["required"] == ["city"]
    assert parameters["properties"]["city"]["description"] == "the city, lower case"
    assert "ctx" not in parameters["properties"]
    assert only["messages"][1] == {
        "role": "user",
        "content": "How many people live in Paris and in Rome?",
    }


def test_tool_calls_over_iterations_feed_results_back() -> None:
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("lookup", city="paris")]),
        Reply("", tool_calls=[call("lookup", city="rome")]),
        Reply("Paris 2.1M, Rome 2.8M"),
    )
    events: list[Event] = []
    result = run(plan(TASK), events=events)
    assert result.ok, result.steps["a"].error
    assert result.outputs["a"] == "Paris 2.1M, Rome 2.8M"
    record = result.steps["a"]
    assert record.iterations == 3
    assert record.tool_calls is not None
    assert [(c["tool"], c["args"], c["output"]) for c in record.tool_calls] == [
        ("lookup", {"city": "paris"}, "2.1 million people"),
        ("lookup", {"city": "rome"}, "2.8 million people"),
    ]
    assert all(c["finished_at"] >= c["started_at"] for c in record.tool_calls)
    last = PROVIDER.calls[-1]["messages"]
    tool_messages = [m for m in last if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["2.1 million people", "2.8 million people"]
    assert tool_messages[0]["tool_call_id"] == "call_0"
    assert last[2]["tool_calls"][0]["function"]["name"] == "lookup"
    # One event per inner call, in order; the step's cost is its calls' sum.
    inner = [e for e in events if isinstance(e, AgentModelCalled | AgentToolCalled)]
    assert [type(e).__name__ for e in inner] == [
        "AgentModelCalled",
        "AgentToolCalled",
        "AgentModelCalled",
        "AgentToolCalled",
        "AgentModelCalled",
    ]
    assert record.cost_usd == pytest.approx(3 * CALL_COST)
    # Each tool call has its own idempotency key: run, step, attempt and call index.
    assert [key.split(":")[1:] for key in PROBE.keys] == [["a", "1", "1"], ["a", "1", "3"]]


def test_system_message_counts_down_iterations() -> None:
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("lookup", city="paris")]),
        Reply("done"),
    )
    result = run(plan(TASK + ", max_iterations: 3"))
    assert result.ok
    first, second = system_messages()
    assert "3 model calls left" in first and "2 model calls left" in second
    assert "budget" not in first


def test_parallel_tool_calls_run_concurrently() -> None:
    cities = ["paris", "rome", "oslo"]
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("lookup", city=c) for c in cities]),
        Reply("all three"),
    )
    result = run(plan(TASK))
    assert result.ok, result.steps["a"].error
    # All three were running at once (an overlap check: timings on a loaded machine lie).
    assert PROBE.most == 3
    record = result.steps["a"]
    assert record.tool_calls is not None
    assert sorted(c["args"]["city"] for c in record.tool_calls) == sorted(cities)
    # The model reads the results in the order it asked for them.
    tool_messages = [m for m in PROVIDER.calls[-1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_0", "call_1", "call_2"]
    assert [m["content"] for m in tool_messages] == [VALUES[c] for c in cities]


# --- caps -----------------------------------------------------------------------------


def test_max_iterations_cap_names_itself_and_is_retried_by_the_steps_policy() -> None:
    PROVIDER.default["fast"] = Reply("", tool_calls=[call("lookup", city="paris")])
    result = run(plan(TASK + ", max_iterations: 2", retry=" retry 2"))
    record = result.steps["a"]
    # The first attempt hits the cap; `retry` runs the loop afresh, escalated to a
    # stronger tier, whose model answers.
    assert result.ok, record.error
    assert record.attempts == 2
    assert [c["model"] for c in PROVIDER.calls[:2]] == [PROVIDER.calls[0]["model"]] * 2
    assert PROVIDER.calls[2]["model"] != PROVIDER.calls[0]["model"]
    assert record.model == "pftest/" + PROVIDER.calls[2]["model"]


def test_max_iterations_cap_without_retry_fails_once() -> None:
    PROVIDER.default["fast"] = Reply("", tool_calls=[call("lookup", city="paris")])
    result = run(plan(TASK + ", max_iterations: 3"))
    record = result.steps["a"]
    assert record.error == "max_iterations (3) reached after 3 model calls and 2 tool calls"
    assert record.attempts == 1


def test_step_cost_cap() -> None:
    PROVIDER.default["fast"] = Reply("", tool_calls=[call("lookup", city="paris")])
    result = run(plan(TASK + ", max_cost_usd: 0.0002"))
    record = result.steps["a"]
    assert record.error == (
        "max_cost_usd ($0.0002) reached after 2 model calls and 2 tool calls ($0.000240 spent)"
    )
    assert len(PROVIDER.calls) == 2
    assert record.cost_usd == pytest.approx(2 * CALL_COST)
    first, second = system_messages()
    assert "This step may spend $0.000200 more" in first
    assert "This step may spend $0.000080 more" in second


def test_run_budget_stops_the_loop_and_is_told_to_the_model() -> None:
    small = ModelSettings(input_cost_per_million=0.80, output_cost_per_million=0.80, max_tokens=100)
    PROVIDER.default["fast"] = Reply("", tool_calls=[call("lookup", city="paris")])
    result = run(plan(TASK), config=config(**{"pftest/fast": small}), budget_usd=0.0003)
    assert str(result.status) == "budget_exceeded"
    assert "run budget exhausted" in (result.steps["a"].error or "")
    assert len(PROVIDER.calls) == 1
    assert "The run's budget has $0.000300 left" in system_messages()[0]


def test_ledger_sum_is_the_step_cost(tmp_path: Any) -> None:
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("lookup", city="paris")], input_tokens=321, output_tokens=7),
        Reply("", tool_calls=[call("lookup", city="rome")], input_tokens=555, output_tokens=13),
        Reply("done", input_tokens=800, output_tokens=21),
    )
    ledger = Ledger(tmp_path / "ledger.sqlite")
    result = run(plan(TASK), ledger=ledger)
    assert result.ok
    ledger.open()
    rows = (
        ledger._db()
        .execute("SELECT step, cost_usd FROM calls WHERE run_id = ?", (result.run_id,))
        .fetchall()
    )
    assert len(rows) == 3 and {row[0] for row in rows} == {"a"}
    assert sum(row[1] for row in rows) == pytest.approx(result.steps["a"].cost_usd, abs=1e-12)
    assert result.steps["a"].input_tokens == 321 + 555 + 800


# --- bad calls go back to the model ---------------------------------------------------


def test_bad_calls_are_errors_the_model_reads() -> None:
    PROVIDER.add(
        "fast",
        Reply(
            "",
            tool_calls=[
                call("nope", q="x"),
                call("lookup", town="paris"),
                {"name": "lookup", "arguments": "{not json"},
                call("lookup", city="atlantis"),
                call("secret", x="y"),
            ],
        ),
        Reply("I could not find it"),
    )
    result = run(plan(TASK))
    assert result.ok, result.steps["a"].error
    assert PROBE.secret_calls == 0  # not in the step's `tools`: never run
    record = result.steps["a"]
    assert record.tool_calls is not None
    errors = [c["error"] for c in record.tool_calls]
    assert errors[0] == "there is no tool `nope` here; the tools you may call: `lookup`"
    assert errors[1].startswith("argument `city` of `lookup`: Field required")
    assert errors[2].startswith("the arguments are not JSON")
    assert "no city `atlantis`" in errors[3]
    assert errors[4].startswith("there is no tool `secret`")
    fed_back = [m["content"] for m in PROVIDER.calls[-1]["messages"] if m["role"] == "tool"]
    assert len(fed_back) == 5 and all(text.startswith("error: ") for text in fed_back)


def test_long_tool_output_is_cut_for_the_model_and_says_so() -> None:
    PROVIDER.add("fast", Reply("", tool_calls=[call("long_text")]), Reply("ok"))
    result = run(plan('task: "read it", tools: ["long_text"]'))
    assert result.ok
    (fed,) = [m["content"] for m in PROVIDER.calls[-1]["messages"] if m["role"] == "tool"]
    assert fed.endswith("[cut: 20000 characters, the first 4000 shown]")
    assert len(fed) < 4100
    assert tool_result_text({"a": 1}) == '{"a": 1}'


def test_tools_an_agent_may_not_offer_are_refused_at_run_time_too() -> None:
    # The checker refuses these in a plan; a RunContext built by other code is held too.
    registry = {spec.name: spec for spec in TOOLS}
    registry["agent"] = ToolRegistry.standard()["agent"]
    with pytest.raises(StepError, match="an agent step cannot start another"):
        offered_tools(["agent"], registry)
    with pytest.raises(StepError, match="`nope`, which is not a registered tool"):
        offered_tools(["nope"], registry)
    assert list(offered_tools(["lookup"], registry)) == ["lookup"]


# --- typed final answers --------------------------------------------------------------


def test_record_answer_is_structured_with_one_repair() -> None:
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("lookup", city="paris")]),
        Reply("Paris has 2.1 million"),  # not JSON: repaired once
        Reply(json.dumps({"city": "paris", "millions": 2.1})),
    )
    text = plan(TASK, type_="City", extra="type City { city: str, millions: float }\n")
    result = run(text)
    assert result.ok, result.steps["a"].error
    assert result.outputs["a"] == {"city": "paris", "millions": 2.1}
    assert '"millions"' in system_messages()[0]  # the schema is asked for up front
    repair = PROVIDER.calls[-1]
    assert "response_format" in repair["params"]
    assert repair["messages"][-1]["role"] == "user"
    assert "not valid" in repair["messages"][-1]["content"]


def test_an_inner_model_tool_is_priced_into_the_step_but_not_typed_like_it() -> None:
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("llm", prompt="Name a big city")]),
        Reply("Paris, most likely"),  # the inner `llm` call: text, not a `City`
        Reply(json.dumps({"city": "paris", "millions": 2.1})),
    )
    text = plan(
        'task: "t", tools: ["llm"]',
        type_="City",
        extra="type City { city: str, millions: float }\n",
    )
    result = run(text)
    assert result.ok, result.steps["a"].error
    record = result.steps["a"]
    assert record.tool_calls is not None
    assert record.tool_calls[0]["output"] == "Paris, most likely"
    assert record.cost_usd == pytest.approx(3 * CALL_COST)  # two agent calls + the inner one
    assert record.model == "pftest/fast"


def test_list_answer_is_validated() -> None:
    PROVIDER.add("fast", Reply('```json\n["paris", "rome"]\n```'))
    result = run(plan(TASK, type_="list[str]"))
    assert result.ok, result.steps["a"].error
    assert result.outputs["a"] == ["paris", "rome"]
    assert len(PROVIDER.calls) == 1


def test_a_typed_answer_that_never_fits_is_an_invalid_reply() -> None:
    PROVIDER.add("fast", Reply("no idea"), Reply("still no idea"))
    result = run(plan(TASK, type_="list[int]"))
    error = result.steps["a"].error or ""
    assert "answered twice with data that does not fit `list[int]`" in error


def test_a_malformed_answer_on_the_last_iteration_is_repaired_without_tools() -> None:
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("lookup", city="paris")]),
        Reply("two numbers: 2 and 3"),
        Reply("[2, 3]"),
    )
    result = run(plan(TASK + ", max_iterations: 2", type_="list[int]"))
    record = result.steps["a"]
    assert result.ok, record.error
    assert result.outputs["a"] == [2, 3]
    # The repair is one more model call beyond `max_iterations`, which only answers.
    assert len(PROVIDER.calls) == 3
    assert record.iterations == 3
    assert "tools" in PROVIDER.calls[1]["params"]
    assert "tools" not in PROVIDER.calls[2]["params"]
    assert "response_format" in PROVIDER.calls[2]["params"]


def test_the_repair_call_does_not_start_past_the_step_cost_cap() -> None:
    PROVIDER.add(
        "fast",
        Reply("", tool_calls=[call("lookup", city="paris")]),
        Reply("two numbers: 2 and 3"),
        Reply("[2, 3]"),
    )
    result = run(plan(TASK + ", max_cost_usd: 0.0002", type_="list[int]"))
    record = result.steps["a"]
    assert record.error == (
        "max_cost_usd ($0.0002) reached after 2 model calls and 1 tool call ($0.000240 spent)"
    )
    assert len(PROVIDER.calls) == 2
    assert record.cost_usd == pytest.approx(2 * CALL_COST)


# --- replay (resume mid-loop) ---------------------------------------------------------


def _harness(
    text: str, replay: list[dict[str, Any]]
) -> tuple[StepRunner, list[tuple[str, dict[str, Any]]], Engine]:
    registry = ToolRegistry.standard()
    for spec in TOOLS:
        registry.add(spec)
    engine = Engine(tools=registry, config=config())
    checked = load_plan(text, tools=registry, tiers=["fast", "standard"])
    gateway = engine.model_gateway(checked.plan.tiers)
    journaled: list[tuple[str, dict[str, Any]]] = []
    ctx = RunContext(
        run_id="r1",
        checked=checked,
        tools=registry,
        inputs={},
        records={"a": StepRecord("agent")},
        events=EventBus(),
        pool=ThreadPoolExecutor(2),
        services={"models": gateway, "agent": AGENT_LOOP},
        on_agent_call=lambda step, c: journaled.append((step, c)),
        agent_replay=lambda step: replay if step == "a" else [],
    )
    return StepRunner(ctx, ["a"]), journaled, engine


def test_replay_skips_recorded_calls_and_goes_on_live() -> None:
    tool_call = {"id": "c1", "name": "lookup", "arguments": '{"city": "paris"}'}
    replay = [
        {
            "kind": "model",
            "index": 0,
            "iteration": 1,
            "attempt": 1,
            "model": "pftest/fast",
            "reply": {"content": None, "tool_calls": [tool_call]},
            "input_tokens": 100,
            "output_tokens": 50,
            "cost_usd": CALL_COST,
        },
        {
            "kind": "tool",
            "index": 1,
            "iteration": 1,
            "attempt": 1,
            "key": "r1:a:1:1",
            "tool": "lookup",
            "args": {"city": "paris"},
            "output": "recorded 2.1 million",
        },
    ]
    runner, journaled, engine = _harness(plan(TASK), replay)
    PROVIDER.add("fast", Reply("Paris: 2.1 million"))
    try:
        outcome = asyncio.run(runner.run(0))
    finally:
        engine.close()
    assert outcome.kind == "ok" and outcome.value == "Paris: 2.1 million"
    assert PROBE.keys == []  # the tool was not called again
    (live,) = PROVIDER.calls  # one model call: the recorded one was not made again
    assert live["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "recorded 2.1 million",
    }
    record = runner.ctx.records["a"]
    assert record.iterations == 2
    assert record.cost_usd == pytest.approx(2 * CALL_COST)  # recorded + live
    assert (
        record.tool_calls is not None and record.tool_calls[0]["output"] == "recorded 2.1 million"
    )
    # Only the live call is journaled, with the next index.
    assert [(s, c["kind"], c["index"]) for s, c in journaled] == [("a", "model", 2)]
    # Replayed spending is not budgeted or ledgered again.
    assert runner.ctx.services["models"].budget.spent == pytest.approx(CALL_COST)


def test_function_spec_is_cached_and_has_no_titles() -> None:
    spec = function_spec(lookup)
    assert spec is function_spec(lookup)
    assert "title" not in spec["function"]["parameters"]
    assert spec["function"]["description"] == "Look up a city's population."


def test_an_unusable_answer_is_retried_on_a_stronger_tier() -> None:
    PROVIDER.add("fast", Reply("no idea"), Reply("still no idea"))
    PROVIDER.add("standard", Reply("[1, 2]"))
    result = run(plan(TASK, type_="list[int]", retry=" retry 1"))
    assert result.ok, result.steps["a"].error
    assert result.outputs["a"] == [1, 2]
    record = result.steps["a"]
    assert record.attempts == 2 and record.model == "pftest/standard"
    assert [c["model"] for c in PROVIDER.calls] == ["fast", "fast", "standard"]


def test_only_agent_steps_have_iterations_and_tool_calls_in_json() -> None:
    plain = StepRecord("calculate").to_json()
    assert "iterations" not in plain and "tool_calls" not in plain
    agent = StepRecord("agent", iterations=2, tool_calls=[{"tool": "x", "args": {}}])
    doc = agent.to_json()
    assert doc["iterations"] == 2 and doc["tool_calls"] == [{"tool": "x", "args": {}}]
    back = StepRecord.from_json(doc)
    assert back.iterations == 2 and back.tool_calls == doc["tool_calls"]


@given(text=st.text(max_size=300), limit=st.integers(min_value=1, max_value=200))
def test_tool_results_are_cut_only_when_long_and_say_so(text: str, limit: int) -> None:
    shown = tool_result_text(text, limit)
    if len(text) <= limit:
        assert shown == text
    else:
        assert shown.startswith(text[:limit])
        assert shown.endswith(f"[cut: {len(text)} characters, the first {limit} shown]")

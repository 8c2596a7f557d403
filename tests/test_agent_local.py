"""Agent steps on the embedded model: grammar-constrained tool calls, and the example plan.

The tests that run the model are `slow` (the 135M model reads ~300-500 prompt tokens a
second); the grammar's shape is tested without it.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from engine.models.local_model import LOCAL_MODEL, available
from engine.models.local_tools import (
    local_messages,
    parse_reply,
    reply_grammar,
    reply_schema,
    tool_request,
)

from .conftest import EXAMPLES
from .loopback_openai import Call, LoopbackServer, Reply, Rule, Script, loopback_server  # noqa: F401

PLANFILE = str(Path(sys.executable).parent / "planfile")
needs_model = pytest.mark.skipif(
    not available(), reason="embedded model not installed (see README)"
)

# --- random tool sets -------------------------------------------------------------------
_names = st.text(string.ascii_lowercase + "_", min_size=3, max_size=12).filter(
    lambda s: s[0] != "_"
)
_leaf = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "string", "enum": ["low", "high"]},
    ]
)


@st.composite
def tool_specs(draw: st.DrawFn, max_tools: int = 4) -> list[dict[str, Any]]:
    """OpenAI function specs: distinct names, 0-3 typed parameters, some required."""
    names = draw(st.lists(_names, min_size=1, max_size=max_tools, unique=True))
    specs = []
    for name in names:
        params = draw(st.dictionaries(_names, _leaf, max_size=3))
        required = [p for p in params if draw(st.booleans())]
        parameters = {"type": "object", "properties": params, "required": required}
        specs.append(
            {
                "type": "function",
                "function": {"name": name, "description": f"Do {name}.", "parameters": parameters},
            }
        )
    return specs


def check_reply(
    message: Any, specs: Sequence[dict[str, Any]], answer: dict[str, Any] | None
) -> str:
    """Assert the reply is a call of an offered tool with valid arguments, or an answer
    (valid against `answer` when given); which one it was."""
    offered = {s["function"]["name"]: s["function"]["parameters"] for s in specs}
    calls = message.tool_calls
    if calls:
        for call in calls:
            assert call.type == "function" and call.id
            assert call.function.name in offered
            jsonschema.validate(json.loads(call.function.arguments), offered[call.function.name])
        return "tool"
    assert isinstance(message.content, str)
    if answer is not None:
        jsonschema.validate(json.loads(message.content), answer)
    return "answer"


# --- the grammar's shape, without the model -----------------------------------------------
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(min_size=1, max_size=20),
    "integer": st.integers(-1000, 1000),
    "number": st.floats(-1e6, 1e6, allow_nan=False),
    "boolean": st.booleans(),
}


def _instance(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of one of `_leaf`'s schemas."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema["type"] == "array":
        return st.lists(_instance(schema["items"]), max_size=3)
    return _VALUES[schema["type"]]


@given(tool_specs(), st.data())
def test_every_value_the_schema_admits_is_an_offered_call_or_an_answer(
    specs: list[dict[str, Any]], data: st.DataObject
) -> None:
    """The grammar's schema admits a call of each offered tool with valid arguments, and
    an answer; each maps back to litellm's tool call (or text) unchanged."""
    request = tool_request({"tools": specs})
    assert request is not None
    schema = reply_schema(request)
    spec = data.draw(st.sampled_from(specs))["function"]
    properties = spec["parameters"]["properties"]
    optional = [p for p in properties if p not in spec["parameters"]["required"]]
    keep = set(spec["parameters"]["required"]) | set(
        data.draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []
    )
    arguments = {p: data.draw(_instance(properties[p])) for p in properties if p in keep}
    arguments = {
        p: (v[:200] if isinstance(v, str) else v) for p, v in arguments.items()
    }  # the grammar's string bound
    value: dict[str, Any] = {"tool": spec["name"], "arguments": arguments}
    if data.draw(st.booleans()):
        value = {"answer": data.draw(st.text(max_size=40))}
    jsonschema.validate(value, schema)
    parsed = parse_reply(json.dumps(value), request)
    if "tool" in value:
        assert parsed.tool_calls is not None and parsed.finish_reason == "tool_calls"
        (call,) = parsed.tool_calls
        assert call["function"]["name"] == spec["name"]
        assert json.loads(call["function"]["arguments"]) == arguments
    else:
        assert parsed.content == value["answer"] and parsed.finish_reason == "stop"
    # A call of a tool that was not offered is outside the schema.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool": "not_offered_tool", "arguments": {}}, schema)


def test_tool_choice_narrows_the_grammar() -> None:
    specs = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("search", "calculate")
    ]
    auto = tool_request({"tools": specs})
    assert auto is not None and auto.may_answer and set(auto.tools) == {"search", "calculate"}
    required = tool_request({"tools": specs, "tool_choice": "required"})
    assert required is not None and not required.may_answer
    forced = tool_request(
        {"tools": specs, "tool_choice": {"type": "function", "function": {"name": "calculate"}}}
    )
    assert forced is not None and list(forced.tools) == ["calculate"] and not forced.may_answer
    assert tool_request({"tools": specs, "tool_choice": "none"}) is None
    assert tool_request({}) is None
    # llama.cpp accepts the grammar; strings hold no raw control characters.
    from llama_cpp import LlamaGrammar

    grammar = reply_grammar(auto)
    assert "\\x00-\\x1F" in grammar
    LlamaGrammar.from_string(grammar, verbose=False)


def test_the_answer_follows_the_steps_schema_and_refs_resolve() -> None:
    """A record-typed step's schema (with `$defs`) is the answer's; the refs still resolve."""
    answer = {
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/City"}},
        "required": ["city"],
        "$defs": {"City": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }
    specs = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    request = tool_request(
        {
            "tools": specs,
            "response_format": {"type": "json_schema", "json_schema": {"schema": answer}},
        }
    )
    assert request is not None
    schema = reply_schema(request)
    assert "$defs" in schema and "City" in schema["$defs"]
    jsonschema.validate({"answer": {"city": {"name": "Paris"}}}, schema)
    parsed = parse_reply('{"answer": {"city": {"name": "Paris"}}}', request)
    assert json.loads(parsed.content or "") == {"city": {"name": "Paris"}}
    reply_grammar(request)  # the converter resolves the hoisted refs


def test_a_cut_off_answer_keeps_its_text() -> None:
    specs = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    request = tool_request({"tools": specs})
    assert request is not None
    assert parse_reply('{"answer": "Rent in Austin fell in 20', request).content == (
        "Rent in Austin fell in 20"
    )


class _CharTokenizer:
    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)


def test_the_conversation_is_rewritten_for_the_model_and_results_fit_the_budget() -> None:
    specs = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Full-text search over the corpus.\nMore text.",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
                    "required": ["query"],
                },
            },
        }
    ]
    request = tool_request({"tools": specs})
    assert request is not None
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Find the rent."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"query": "rent"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "rent is high. " * 200},
    ]
    out = local_messages(messages, request, _CharTokenizer(), budget=1200)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert "- search(query: str, k?: int): Full-text search over the corpus." in out[0]["content"]
    assert json.loads(out[2]["content"]) == {"tool": "search", "arguments": {"query": "rent"}}
    assert out[3]["content"].startswith("Result of search:\nrent is high.")
    assert sum(len(m["content"]) for m in out) <= 1200 + 40  # the cut's marker
    assert out[1]["content"] == "Find the rent."


# --- the real model ---------------------------------------------------------------------
def _local_completion(messages: list[dict[str, Any]], **params: Any) -> Any:
    from engine.models.provider import litellm_module

    litellm = litellm_module()
    # litellm imports its MCP gateway (and the `mcp` package) for any call with `tools`
    # unless told not to.
    return litellm.completion(
        model=LOCAL_MODEL, messages=messages, max_tokens=160, _skip_mcp_handler=True, **params
    )


TASKS = st.sampled_from(
    [
        "What is 17 * 23?",
        "Find the rent in Austin.",
        "Look up the churn rate, then report it.",
        "Which is larger, 2**10 or 1000?",
    ]
)


@pytest.mark.slow
@needs_model
@settings(max_examples=6, phases=[Phase.explicit, Phase.generate])  # no shrinking: slow
@given(tool_specs(max_tools=3), TASKS)
def test_the_embedded_model_only_makes_well_formed_tool_calls(
    specs: list[dict[str, Any]], task: str
) -> None:
    """Whatever tools are offered, every reply calls one of them with arguments its schema
    accepts, or answers."""
    messages = [{"role": "system", "content": "Use the tools."}, {"role": "user", "content": task}]
    reply = _local_completion(messages, tools=specs)
    kind = check_reply(reply.choices[0].message, specs, None)
    # An answer may be cut by max_tokens (the text so far is kept); a call never is.
    expected = {"tool_calls"} if kind == "tool" else {"stop", "length"}
    assert reply.choices[0].finish_reason in expected
    assert reply.usage.prompt_tokens > 0


@pytest.mark.slow
@needs_model
def test_the_embedded_model_follows_tool_choice_and_the_answer_schema() -> None:
    specs = [
        {
            "type": "function",
            "function": {
                "name": "calculate",
                "description": "Evaluate arithmetic.",
                "parameters": {
                    "type": "object",
                    "properties": {"expression": {"type": "string"}},
                    "required": ["expression"],
                },
            },
        }
    ]
    task = [{"role": "user", "content": "What is 17 * 23?"}]
    forced = _local_completion(task, tools=specs, tool_choice="required")
    assert check_reply(forced.choices[0].message, specs, None) == "tool"
    answer = {
        "type": "object",
        "properties": {"value": {"type": "number"}},
        "required": ["value"],
    }
    call = forced.choices[0].message.tool_calls[0]
    history: list[dict[str, Any]] = [
        *task,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "391"},
    ]
    reply = _local_completion(
        history,
        tools=specs,
        tool_choice="auto",
        response_format={"type": "json_schema", "json_schema": {"schema": answer}},
    )
    check_reply(reply.choices[0].message, specs, answer)


@pytest.mark.slow
@needs_model
def test_the_example_agent_plan_runs_offline_on_the_embedded_model() -> None:
    """`cd examples/workspace && planfile run ../agent_housing.plan` with nothing configured:
    the agent step runs on the embedded model, its calls well-formed, and ends."""
    done = subprocess.run(
        [PLANFILE, "run", "../agent_housing.plan", "--json"],
        cwd=EXAMPLES / "workspace",
        capture_output=True,
        text=True,
        timeout=300,
    )
    document = json.loads(done.stdout)
    record = document["steps"]["budget"]
    assert record["model"] == LOCAL_MODEL
    assert all(call["tool"] in {"search", "calculate"} for call in record["tool_calls"])
    assert done.returncode == 0, record.get("error")
    assert isinstance(document["outputs"]["budget"], str)

"""Every standard tool's parameters compile into the embedded model's tool-call grammar
(no model needed): an untyped parameter such as json_query's `data` admits any JSON."""

from __future__ import annotations

import jsonschema
import pytest
from llama_cpp import LlamaGrammar

from engine.agent.offer import function_spec
from engine.models.local_tools import reply_grammar, reply_schema, tool_request
from stdlib_tools.registry import ToolRegistry

_STANDARD = ToolRegistry.standard()


@pytest.mark.parametrize("name", list(_STANDARD))
def test_each_standard_tool_compiles_into_the_grammar(name: str) -> None:
    request = tool_request({"tools": [function_spec(_STANDARD[name])]})
    assert request is not None
    LlamaGrammar.from_string(reply_grammar(request), verbose=False)


def test_all_standard_tools_together_compile_into_one_grammar() -> None:
    request = tool_request({"tools": [function_spec(spec) for spec in _STANDARD.values()]})
    assert request is not None
    LlamaGrammar.from_string(reply_grammar(request), verbose=False)


def test_an_untyped_parameter_admits_any_json_value() -> None:
    parameters = {
        "type": "object",
        "properties": {"data": {"description": "the JSON value to query"}, "q": {"type": "string"}},
        "required": ["data", "q"],
    }
    tool = {"type": "function", "function": {"name": "json_query", "parameters": parameters}}
    request = tool_request({"tools": [tool], "tool_choice": "required"})
    assert request is not None
    reply_grammar(request)  # llama.cpp's converter used to refuse: "Unrecognized schema"
    schema = reply_schema(request)
    for data in ({"a": [1, 2]}, [1, "x"], "text", 3.5, True, None):
        jsonschema.validate({"tool": "json_query", "arguments": {"data": data, "q": "a"}}, schema)

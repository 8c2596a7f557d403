"""Tool calling for the embedded model: a grammar that only admits well-formed tool calls.

SmolLM2-135M was not trained for function calling, so litellm's `tools` are turned into
three things here: a compact description of the tools added to the system message, a JSON
schema that llama.cpp compiles into a grammar (each reply is `{"tool": <an offered name>,
"arguments": <that tool's parameters>}` or `{"answer": <the step's answer>}`), and the
translation of the constrained reply back into litellm's `message.tool_calls`. The model
can pick the wrong tool or a useless argument, but never a tool that was not offered nor
arguments its schema rejects.

Earlier turns of the conversation (assistant `tool_calls`, `tool` results) are rewritten
into the same JSON form and plain user turns: the model's chat template knows no `tool`
role, and showing it its own earlier calls in the shape it must produce keeps it on track.

Just over 400 lines: the schema it builds and the reply it parses back must agree, so
both directions stay in one module.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.models.trim import Tokenizer, cut_middle, shared_cap

# Bounds on the strings the grammar admits: a tiny model that starts repeating itself
# inside a JSON string would otherwise run to max_tokens and leave unparseable JSON.
MAX_ARGUMENT_CHARS = 200
MAX_ANSWER_CHARS = 600
# Tool descriptions are one line each, cut to this many characters (the prompt budget is
# ~1,000 tokens and the model reads ~300-500 tokens a second).
MAX_DESCRIPTION_CHARS = 90
_ids = itertools.count(1)
# A JSON string character as upstream llama.cpp's (json-schema-to-grammar.cpp) has it, no
# raw control characters, and no braces either: a tiny model echoes the reply's closing
# braces into the argument it is writing ("expression": "} }. The result is ..."). Values
# stay valid for the tool's schema; they only cannot hold a brace.
_CHAR_RULE = r'char ::= [^"\\{}\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})'
_ANSWER_START = re.compile(r'\s*\{\s*"answer"\s*:\s*"')


@dataclass(frozen=True)
class ToolRequest:
    """What litellm asked for: the tools the reply may call, and whether it may answer."""

    tools: dict[str, dict[str, Any]]  # name -> JSON schema of its arguments
    descriptions: dict[str, str]
    may_answer: bool
    answer_schema: dict[str, Any] | None  # the step's response_format schema, if any


def tool_request(params: dict[str, Any]) -> ToolRequest | None:
    """The tool request in litellm's optional params (`tools`, `tool_choice`,
    `response_format`), or None when no tool may be called."""
    offered = [t for t in params.get("tools") or [] if isinstance(t, dict)]
    choice = params.get("tool_choice")
    if not offered or choice == "none":
        return None
    forced: str | None = None
    if isinstance(choice, dict):
        forced = str((choice.get("function") or {}).get("name") or "") or None
    tools: dict[str, dict[str, Any]] = {}
    descriptions: dict[str, str] = {}
    for item in offered:
        function = item.get("function") or item
        name = function.get("name")
        if not isinstance(name, str) or (forced and name != forced):
            continue
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        tools[name] = copy.deepcopy(schema)
        descriptions[name] = str(function.get("description") or "").strip()
    if not tools:
        return None
    return ToolRequest(
        tools=tools,
        descriptions=descriptions,
        may_answer=choice in (None, "auto") and not forced,
        answer_schema=_response_schema(params.get("response_format")),
    )


def _response_schema(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    else:
        schema = response_format.get("schema")
    return copy.deepcopy(schema) if isinstance(schema, dict) else None


def reply_schema(request: ToolRequest) -> dict[str, Any]:
    """The JSON schema every reply must match (llama.cpp turns it into a grammar)."""
    defs: dict[str, dict[str, Any]] = {"$defs": {}, "definitions": {}}
    branches: list[dict[str, Any]] = []
    for name, parameters in request.tools.items():
        arguments = _bounded(_typed(_hoist_defs(parameters, defs)), MAX_ARGUMENT_CHARS)
        branches.append(_object({"tool": {"const": name}, "arguments": arguments}))
    if request.may_answer:
        answer = request.answer_schema
        if answer is None:
            answer = {"type": "string", "maxLength": MAX_ANSWER_CHARS}
        branches.append(_object({"answer": _typed(_hoist_defs(answer, defs))}))
    schema: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    hoisted = {key: {n: _typed(d) for n, d in found.items()} for key, found in defs.items()}
    return {**schema, **{key: found for key, found in hoisted.items() if found}}


def reply_grammar(request: ToolRequest) -> str:
    """`reply_schema` as a llama.cpp GBNF grammar whose strings hold no raw control
    characters and no braces (`_CHAR_RULE`; the converter's own admits a raw newline,
    which a small model uses to wander off mid-string, and which strict JSON rejects)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    grammar = json_schema_to_gbnf(json.dumps(reply_schema(request)))
    lines = [_CHAR_RULE if line.startswith("char ::=") else line for line in grammar.splitlines()]
    return "\n".join(lines) + "\n"


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _hoist_defs(schema: dict[str, Any], defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The schema without its `$defs` (or `definitions`), which move to the root, where
    `#/$defs/...` refs resolve once the schemas are combined."""
    schema = dict(schema)
    for key, found in defs.items():
        found.update(schema.pop(key, None) or {})
    return schema


# Keys that give a schema its shape; a schema with none of them (only `description`,
# `title`, `default`...) admits any JSON value, which llama.cpp's converter refuses
# ("Unrecognized schema"): such a schema becomes an explicit union of every JSON type.
_SHAPE_KEYS = frozenset(
    {
        "type",
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "const",
        "enum",
        "properties",
        "items",
        "prefixItems",
        "additionalProperties",
        "pattern",
        "format",
        "not",
    }
)
_ANY_JSON: tuple[str, ...] = ("string", "number", "boolean", "null", "array", "object")
# Where a schema holds sub-schemas: by name (a dict of them), in a list, or directly.
_SUB_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUB_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUB_ONE = ("items", "additionalProperties", "not")


def _typed(schema: Any) -> Any:
    """`schema` with every untyped (any JSON value) sub-schema spelled out as a union of
    the JSON types, so that llama.cpp can compile it into a grammar."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SUB_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _typed(sub) for name, sub in out[key].items()}
    for key in _SUB_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_typed(sub) for sub in out[key]]
    for key in _SUB_ONE:
        if isinstance(out.get(key), dict):
            out[key] = _typed(out[key])
    if not (_SHAPE_KEYS & out.keys()):
        out["anyOf"] = [{"type": kind} for kind in _ANY_JSON]
    return out


def _bounded(schema: Any, limit: int) -> Any:
    """`schema` with every free-form string 1 to `limit` characters long (the tool's own
    bounds kept)."""
    if isinstance(schema, list):
        return [_bounded(item, limit) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _bounded(value, limit) for key, value in schema.items()}
    free = not ({"enum", "const", "pattern", "format", "minLength", "maxLength"} & out.keys())
    if out.get("type") == "string" and free:
        # Non-empty too: a tiny model otherwise closes the string at once ("").
        out["minLength"] = 1
        out["maxLength"] = limit
    return out


def describe(request: ToolRequest) -> str:
    """The tools in a few lines: `name(arg: type, opt?: type): what it does`."""
    lines = ["Tools you can call:"]
    for name, schema in request.tools.items():
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        args = ", ".join(
            f"{arg}{'' if arg in required else '?'}: {_type_name(spec)}"
            for arg, spec in properties.items()
        )
        text = request.descriptions.get(name, "").split("\n")[0][:MAX_DESCRIPTION_CHARS]
        lines.append(f"- {name}({args}){': ' + text if text else ''}")
    name, schema = next(iter(request.tools.items()))
    example = {arg: "..." for arg in (schema.get("required") or [])[:1]}
    call = json.dumps({"tool": name, "arguments": example})
    lines.append(f"Reply with JSON only. To call a tool: {call}")
    if request.may_answer:
        lines.append('When the results answer the task: {"answer": "..."}')
    return "\n".join(lines)


def _type_name(spec: Any) -> str:
    if not isinstance(spec, dict):
        return "any"
    kind = spec.get("type")
    if kind == "array":
        return f"list[{_type_name(spec.get('items'))}]"
    if isinstance(kind, str):
        return {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(
            kind, kind
        )
    return "any"


def local_messages(
    messages: Sequence[dict[str, Any]],
    request: ToolRequest,
    words: Tokenizer | None = None,
    budget: int = 0,
) -> list[dict[str, Any]]:
    """The conversation as the embedded model should read it: the tools described in the
    system message, earlier calls in the reply's JSON form, tool results as user turns.
    With a tokenizer and a budget (> 0), tool results are cut so the whole fits (the
    longest first; the task and the instructions are never cut)."""
    names: dict[str, str] = {}
    # A nudge after each result: small models otherwise repeat the call they just made.
    after = "\n\nAnswer now if this is enough." if request.may_answer else ""
    out: list[dict[str, Any]] = []
    results: list[int] = []  # indexes in `out` of tool results (the part that may be cut)
    for message in messages:
        role = message.get("role")
        content = _text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                names[str(call.get("id"))] = str(function.get("name"))
                calls.append(
                    json.dumps(
                        {"tool": function.get("name"), "arguments": _arguments(function)},
                        ensure_ascii=False,
                    )
                )
            out.append({"role": "assistant", "content": "\n".join(calls)})
        elif role == "tool":
            name = names.get(str(message.get("tool_call_id")), message.get("name") or "the tool")
            results.append(len(out))
            out.append({"role": "user", "content": f"Result of {name}:\n{content}{after}"})
        elif role in ("system", "developer"):
            out.append({"role": "system", "content": content})
        else:
            out.append({"role": str(role or "user"), "content": content})
    tools = describe(request)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{tools}"}
    else:
        out.insert(0, {"role": "system", "content": tools})
        results = [index + 1 for index in results]
    if words is not None and budget > 0 and results:
        out = _fit_results(out, results, words, budget)
    return out


def _fit_results(
    out: list[dict[str, Any]], results: list[int], words: Tokenizer, budget: int
) -> list[dict[str, Any]]:
    encoded = {i: words.encode(out[i]["content"]) for i in results}
    fixed = sum(len(words.encode(m["content"])) for i, m in enumerate(out) if i not in encoded)
    if fixed + sum(len(ids) for ids in encoded.values()) <= budget:
        return out
    # Water-filling as for step inputs: short results stay whole, long ones share the room.
    cap = shared_cap([len(ids) for ids in encoded.values()], budget - fixed)
    if cap is None:
        cap = 16
    fitted = list(out)
    for i, ids in encoded.items():
        fitted[i] = {**out[i], "content": cut_middle(ids, cap, words)}
    return fitted


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def _arguments(function: dict[str, Any]) -> Any:
    raw = function.get("arguments")
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw if raw is not None else {}


def repeats(messages: Sequence[dict[str, Any]], reply: LocalReply) -> bool:
    """Whether every call in `reply` was already made, with the same arguments, earlier in
    the conversation (its result is there already; small models loop on one call)."""
    if not reply.tool_calls:
        return False
    made = {
        _call_key(call.get("function") or {})
        for message in messages
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or []
    }
    return all(_call_key(call["function"]) in made for call in reply.tool_calls)


def _call_key(function: dict[str, Any]) -> str:
    return json.dumps([function.get("name"), _arguments(function)], sort_keys=True)


def answer_only(request: ToolRequest) -> ToolRequest:
    """The request with no tool left to call: the grammar admits only the answer."""
    return replace(request, tools={}, may_answer=True)


@dataclass(frozen=True)
class LocalReply:
    """A constrained reply as litellm returns it: text, or tool calls."""

    content: str | None
    tool_calls: list[dict[str, Any]] | None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


def parse_reply(text: str, request: ToolRequest) -> LocalReply:
    """The grammar-constrained reply as tool calls or an answer. A reply cut short by
    max_tokens (the only way it can fail to parse) is returned as text: the agent loop
    treats it as an answer that its validation may reject."""
    try:
        value = json.loads(text)
    except ValueError:
        return LocalReply(_salvage_answer(text), None)
    if isinstance(value, dict) and value.get("tool") in request.tools:
        arguments = value.get("arguments")
        call = {
            "id": f"call_local_{next(_ids)}",
            "type": "function",
            "function": {
                "name": value["tool"],
                "arguments": json.dumps(arguments if arguments is not None else {}),
            },
        }
        return LocalReply(None, [call])
    if isinstance(value, dict) and "answer" in value:
        answer = value["answer"]
        if request.answer_schema is None and isinstance(answer, str):
            return LocalReply(answer, None)
        return LocalReply(json.dumps(answer, ensure_ascii=False), None)
    return LocalReply(text, None)


def _salvage_answer(text: str) -> str:
    """The text of a plain answer cut off mid-string (`{"answer": "The rent is ...`)."""
    start = _ANSWER_START.match(text)
    if start is None:
        return text
    body = text[start.end() :]
    for end in range(len(body), 0, -1):
        try:
            return str(json.loads('"' + body[:end].rstrip("\\") + '"'))
        except ValueError:
            continue
    return body


__all__ = [
    "LocalReply",
    "ToolRequest",
    "answer_only",
    "describe",
    "local_messages",
    "parse_reply",
    "repeats",
    "reply_grammar",
    "reply_schema",
    "tool_request",
]

"""Structured output: a step's declared type as a JSON schema for the model, and its reply
parsed, validated by pydantic, and (once) sent back to the model to repair."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from dsl.ir import Step
from dsl.repair import parse_reply_json
from engine.config import ModelSettings
from engine.errors import ProviderError
from engine.models.local_model import PROVIDER


class InvalidReply(ProviderError):
    """The model's structured reply did not fit the type, even after a repair attempt.

    Worth retrying: a retry escalates to a stronger tier.
    """

    transient = True


def run_adapter(run: Any, step: Step) -> TypeAdapter[Any] | None:
    """The adapter for a step's declared type when it calls for structured output."""
    declared = run.checked.result_types.get(step.id)
    if declared is None or declared.kind in ("json", "str"):
        return None
    from dsl.types import build_record_models, type_adapter

    plan = run.checked.plan
    models = build_record_models({r.name: dict(r.fields) for r in plan.types})
    target = declared.item if step.for_each is not None and declared.item is not None else declared
    if target.kind in ("json", "str"):
        return None
    return type_adapter(target, models)


def structured_schema(adapter: TypeAdapter[Any]) -> tuple[dict[str, Any], bool]:
    """The JSON schema to request; non-object types are wrapped as {"value": ...}."""
    schema = adapter.json_schema()
    if schema.get("type") == "object" and "properties" in schema:
        return schema, False
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {"value": schema},
        "required": ["value"],
        "additionalProperties": False,
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped, True


def schema_request(schema: dict[str, Any]) -> str:
    """The text appended to the prompt asking for a reply that fits `schema`."""
    return (
        "\n\nReply with only a JSON value matching this JSON schema:\n"
        f"{json.dumps(schema, separators=(',', ':'))}"
    )


def response_format(
    model: str, settings: ModelSettings, schema: dict[str, Any]
) -> dict[str, Any] | None:
    """litellm's `response_format` for `schema` in the form `model`'s server takes."""
    mode = settings.structured_output
    if mode is None:
        # llama.cpp-style servers (any api_base) and the embedded model take the schema
        # inside json_object; hosted APIs take OpenAI's json_schema.
        mode = (
            "json_object_schema"
            if (model.startswith(PROVIDER + "/") or settings.api_base)
            else "json_schema"
        )
    if mode == "none":
        return None
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    return {
        "type": "json_schema",
        "json_schema": {"name": "result", "schema": schema, "strict": False},
    }


def parse_reply(text: str) -> Any:
    """JSON from a model reply (code fences, text around it, trailing commas, ...): the
    one repair of dsl/repair.py; ValueError when there is none, or it was cut off."""
    return parse_reply_json(text)


def validate_reply(reply: str, adapter: TypeAdapter[Any], wrapped: bool) -> Any:
    """The reply as JSON-ready data of the declared type; ValueError/ValidationError if not."""
    data = parse_reply(reply)
    if wrapped:
        if not isinstance(data, dict) or "value" not in data:
            data = {"value": data}
        data = data["value"]
    return adapter.dump_python(adapter.validate_python(data), mode="json")


def repair_messages(
    messages: list[dict[str, Any]], reply: str, error: BaseException
) -> list[dict[str, Any]]:
    """The conversation for the one repair attempt: the model sees its reply and what was
    wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"That reply is not valid: {short_error(error)}. Reply again with "
            "only JSON matching the schema.",
        },
    ]


async def validate_or_repair(
    reply: str,
    messages: list[dict[str, Any]],
    adapter: TypeAdapter[Any],
    wrapped: bool,
    repair: Callable[[list[dict[str, Any]]], Awaitable[str]],
    model: str,
    declared: object,
) -> Any:
    """`reply` in the declared type, or, when it does not fit, the reply of one repair call
    (`repair(messages)`: the model sees its reply and what was wrong) in it.

    InvalidReply, naming `model` and the `declared` type, when the repaired reply does not
    fit either.
    """
    try:
        return validate_reply(reply, adapter, wrapped)
    except (ValueError, ValidationError) as first_error:
        messages = repair_messages(messages, reply, first_error)
    repaired = await repair(messages)
    try:
        return validate_reply(repaired, adapter, wrapped)
    except (ValueError, ValidationError) as err:
        raise InvalidReply(
            f"`{model}` answered twice with data that does not fit `{declared}`: {short_error(err)}"
        ) from None


def short_error(err: BaseException) -> str:
    """A validation error's first problem, located, in one line."""
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{first['msg']}" + (f" at `{where}`" if where else "")
    return str(err)[:200]

"""What an agent step offers its model: the allowed tools as function specs, and tool
results as the text the model reads back."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from dsl.agent_steps import AGENT_TOOL
from engine.run.executor import StepError
from engine.run.result import jsonable
from stdlib_tools.registry import ToolSpec

# A tool result longer than this is cut before the model sees it (the record keeps it
# whole): one long page must not crowd the task out of a small model's context.
MAX_TOOL_RESULT_CHARS = 4000


@functools.cache
def function_spec(spec: ToolSpec) -> dict[str, Any]:
    """A tool as an OpenAI function spec for litellm's `tools` (its plan-facing
    parameters; the descriptions from its docstring)."""
    parameters: dict[str, Any] = (
        spec.args_model.model_json_schema()
        if spec.args_model is not None
        else {"type": "object", "properties": {}}
    )
    parameters.pop("title", None)
    for param in spec.params:
        prop = parameters.get("properties", {}).get(param.name)
        if prop is not None:
            prop.pop("title", None)
            if param.description:
                prop["description"] = param.description
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": parameters},
    }


def offered_tools(names: list[str], registry: Mapping[str, ToolSpec]) -> dict[str, ToolSpec]:
    """The tools an agent step may call, by name; StepError for one it may not."""
    offered: dict[str, ToolSpec] = {}
    for name in names:
        spec = registry.get(name)
        if spec is None:
            raise StepError(f"`tools` names `{name}`, which is not a registered tool")
        if spec.name == AGENT_TOOL:
            raise StepError(
                f"`tools` may not list `{AGENT_TOOL}`: an agent step cannot start another"
            )
        if spec.needs_approval:
            raise StepError(
                f"`tools` lists `{name}`, which needs a person's approval for every call; "
                "call it from its own step"
            )
        offered[name] = spec
    return offered


def tool_result_text(output: Any, limit: int = MAX_TOOL_RESULT_CHARS) -> str:
    """A tool's output as the `tool` message the model reads, cut to `limit` characters
    (and saying so)."""
    if isinstance(output, str):
        text = output
    else:
        try:
            text = json.dumps(jsonable(output), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = str(output)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[cut: {len(text)} characters, the first {limit} shown]"

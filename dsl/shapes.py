"""The plan shapes LLMs and other frameworks' planners write: the JSON loader's tables.

Which keys name a plan's goal, a step's id, dependencies, text, tier, timeout (and its
unit), which task types and tier names models use, and how an OpenAI tool call or an
Anthropic `tool_use` block names its tool and arguments. dsl/json_loader.py applies
them; specs/plan-shapes.md is the table for users (keep the two in step).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

PLAN_KEYS = {
    "name": "name",
    "plan_name": "name",
    "title": "name",
    "goal": "goal",
    "objective": "goal",
    "task": "goal",
    "question": "goal",
    "inputs": "inputs",
    "tiers": "tiers",
    "types": "types",
    "steps": "steps",
    "plan": "steps",
    "outputs": "outputs",
    "output": "outputs",
    "expected_cost_usd": "expected_cost_usd",
    "expectedCost": "expected_cost_usd",
    "expected_cost": "expected_cost_usd",
    "estimated_cost": "expected_cost_usd",
    "$schema": None,
    "tool_calls": "steps",
    "role": None,
    "content": None,
    "refusal": None,
    "reasoning": None,
    "thought": None,
    "thoughts": None,
}

STEP_ID_KEYS = ("id", "step_number", "step_id", "stepNumber", "step", "number")
DEP_KEYS = ("after", "depends_on", "dependencies", "dependsOn", "deps", "requires")
TEXT_KEYS = ("prompt", "description", "instruction", "instructions", "action", "query_text")
TIER_KEYS = ("tier", "requiredModel", "required_model", "model_tier", "modelTier")
CANONICAL_STEP_KEYS = {
    "id",
    "tool",
    "args",
    "type",
    "for_each",
    "after",
    "tier",
    "model",
    "task",
    "retry",
    "when",
    "on_error",
    "check",
    "description",
    "cache",
    "approve",
    "executor",
}
IGNORED_STEP_KEYS = {
    "reasoning",
    "thought",
    "rationale",
    "expected_output",
    "expectedOutput",
    "expected_cost",
    "expectedCost",
    "estimated_tokens",
    "status",
    "output",
    "expected_inputs",  # article 001: what the step needs; its dependencies say it
    "expectedInputs",
}
# Article 001: "fields for step description, required tools, expected inputs, and
# success criteria". A step calls one tool; the criteria go into an LLM step's prompt.
TOOL_LIST_KEYS = ("required_tools", "requiredTools", "tools", "tools_needed")
CRITERIA_KEYS = ("success_criteria", "successCriteria", "acceptance_criteria", "done_when")
TASK_ALIASES = {
    "search": "search",
    "research": "search",
    "lookup": "search",
    "retrieval": "search",
    "analyze": "analyze",
    "analysis": "analyze",
    "analyse": "analyze",
    "code": "code",
    "coding": "code",
    "reasoning": "reasoning",
    "reason": "reasoning",
    "math": "reasoning",
    "writing": "writing",
    "write": "writing",
    "summarize": "writing",
}
TIER_ALIASES = {
    "fast": "fast",
    "cheap": "fast",
    "small": "fast",
    "mini": "fast",
    "standard": "standard",
    "medium": "standard",
    "default": "standard",
    "frontier": "frontier",
    "strong": "frontier",
    "large": "frontier",
    "planner": "frontier",
}


REQUEST_PARAMS = {"query", "question", "prompt", "instruction", "task", "topic", "request"}
TIMEOUT_KEYS = {  # key -> the unit of a bare number
    "timeout_s": "s",
    "timeout": "ms",  # the ExecutionPlan shape (TypeScript `timeout: number`) is in ms
    "timeout_ms": "ms",
    "timeoutMs": "ms",
    "timeout_seconds": "s",
    "timeoutSeconds": "s",
}


def is_tool_call(item: Any) -> bool:
    return isinstance(item, dict) and tool_call(item) is not None


def tool_call(raw: dict[str, Any]) -> tuple[Any, str, Any, str, Any] | None:
    """An OpenAI tool call (`{"function": {"name", "arguments"}}`) or an Anthropic
    `tool_use` block -> (tool, tool key, arguments, arguments key, path mapper)."""
    function = raw.get("function")
    if isinstance(function, dict) and "name" in function:
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            # OpenAI sends arguments as JSON text; an empty string means none.
            # Text that is not JSON stays text: it goes to the tool's first parameter.
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments) if arguments.strip() else None
        return (
            function["name"],
            "name",
            arguments,
            "arguments",
            lambda path: (*path, "function"),
        )
    if raw.get("type") == "tool_use" and "name" in raw:
        return raw["name"], "name", raw.get("input"), "input", lambda path: path
    return None

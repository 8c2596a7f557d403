"""Agent steps in the language: what `agent(task:, tools: [...])` means to the front ends.

An agent step calls the `agent` tool (stdlib_tools/agent_tool.py): a model works on the
step's `task`, calling only the tools its `tools` argument names, for at most
`max_iterations` model calls. Inside `tools: [...]` a bare name is a tool's name, not a
reference to a step or input, so the IR holds those names as strings. The parser, the
JSON loader and the importers use this module to build such steps; the checker uses it
to check them (every name a tool of the run's catalogue, no nested agents, caps in range).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from dsl.ir import NAME_PATTERN, Ref, is_template

from .errors import Path

AGENT_TOOL = "agent"
TASK_ARG = "task"
TOOLS_ARG = "tools"
MAX_ITERATIONS_ARG = "max_iterations"
MAX_COST_ARG = "max_cost_usd"
MIN_ITERATIONS, MAX_ITERATIONS = 1, 50
DEFAULT_MAX_ITERATIONS = 5
# What `--executor agent` offers a step that names no registered tool: the tools that
# stay inside the run's workspace and call no model (issue 13, item 6).
DEFAULT_AGENT_TOOLS = ("search", "calculate", "read_file", "list_files", "json_query")
# Keys a model writes at a JSON step's top level for the agent's arguments.
AGENT_TOP_LEVEL_KEYS = (TASK_ARG, TOOLS_ARG, MAX_ITERATIONS_ARG, MAX_COST_ARG)

Executor = Literal["llm", "agent"]
EXECUTORS: tuple[Executor, ...] = ("llm", "agent")


class Reporter(Protocol):
    """What the checks need of the checker: located errors and warnings, and its hint
    for an unknown tool name (closest tool; for JSON plans the list and `--map-tool`)."""

    def error(
        self, path: Path, message: str, hint: str | None = None, code: str = "error"
    ) -> None: ...

    def warn(
        self, path: Path, message: str, hint: str | None = None, code: str = "warning"
    ) -> None: ...

    def unknown_tool_hint(self, name: str) -> str: ...


def agent_step_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema `if`/`then` pair that types an agent step's arguments (in
    `planfile schema`): a task, a non-empty list of tool names, the iteration cap."""
    condition = {"properties": {"tool": {"const": AGENT_TOOL}}, "required": ["tool"]}
    arguments = {
        "type": "object",
        "required": [TASK_ARG, TOOLS_ARG],
        "properties": {
            TASK_ARG: {"type": "string", "description": "What the agent must do (a template)."},
            TOOLS_ARG: {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "pattern": NAME_PATTERN, "not": {"const": AGENT_TOOL}},
                "description": "The tools the agent may call, by name.",
            },
            MAX_ITERATIONS_ARG: {
                "type": "integer",
                "minimum": MIN_ITERATIONS,
                "maximum": MAX_ITERATIONS,
                "default": DEFAULT_MAX_ITERATIONS,
            },
            MAX_COST_ARG: {"type": ["number", "null"], "exclusiveMinimum": 0},
        },
    }
    return condition, {"required": ["args"], "properties": {"args": arguments}}


def is_agent_step(tool: str) -> bool:
    return tool == AGENT_TOOL


def names_from_refs(value: Any) -> Any:
    """`.plan` text's `tools: [search, calculate]` parses as references; they are tool
    names. Anything else (a dotted reference, a number, a bare reference instead of a
    list) stays as written for the checker to report."""
    if not isinstance(value, list):
        return value
    return [item.ref if isinstance(item, Ref) and not item.path else item for item in value]


def default_tools(catalogue: Mapping[str, Any]) -> list[str]:
    """The default agent tools the catalogue holds (all of them in the standard one)."""
    return [name for name in DEFAULT_AGENT_TOOLS if not catalogue or name in catalogue]


def args_as_task(task: str, tool: str, args: Mapping[str, Any]) -> str:
    """The task of an agent standing in for a tool nobody registered: the step's text,
    then the call it asked for, references as template variables (so the checker infers
    the dependencies and the run fills in the values)."""
    lines = [task] if task else []
    lines.append(f"Do what the tool `{tool}` would do" + (" with:" if args else "."))
    for name, value in args.items():
        lines.append(f"- {name}: {_as_text(value)}")
    return "\n".join(lines)


def _as_text(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"ref"} and isinstance(value["ref"], str):
        return "{{ " + value["ref"] + " }}"
    if isinstance(value, Ref):
        return "{{ " + value.ref + " }}"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_as_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_as_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def check_agent_args(
    args: Mapping[str, Any], path: Path, tools: Mapping[str, Any], report: Reporter
) -> None:
    """The agent-specific rules for one `agent` step's arguments (the generic checks of
    parameter names and types run as for any tool call)."""
    task = args.get(TASK_ARG)
    if isinstance(task, str) and not task.strip():
        report.error(
            (*path, "args", TASK_ARG),
            f"the `{TASK_ARG}` of `{AGENT_TOOL}` is empty: the agent would not know what to do",
            hint=f'say what it must do, e.g. `{TASK_ARG}: "Find the rent in {{{{ city }}}}"`',
            code="invalid",
        )
    if TOOLS_ARG in args:
        _check_tool_list(args[TOOLS_ARG], (*path, "args", TOOLS_ARG), tools, report)
    iterations = args.get(MAX_ITERATIONS_ARG)
    if (
        isinstance(iterations, int)
        and not isinstance(iterations, bool)
        and not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS
    ):
        report.error(
            (*path, "args", MAX_ITERATIONS_ARG),
            f"`{MAX_ITERATIONS_ARG}` is {iterations}; it must be from {MIN_ITERATIONS} to"
            f" {MAX_ITERATIONS}",
            hint=f"{MAX_ITERATIONS_ARG}: {DEFAULT_MAX_ITERATIONS} is the default; each iteration is one model call",
            code="invalid",
        )
    cost = args.get(MAX_COST_ARG)
    if isinstance(cost, int | float) and not isinstance(cost, bool) and cost <= 0:
        report.error(
            (*path, "args", MAX_COST_ARG),
            f"`{MAX_COST_ARG}` is {cost}; a cost cap is more than 0 dollars",
            hint="leave it out for no per-step cap (the run's budget still holds)",
            code="invalid",
        )


def _check_tool_list(value: Any, path: Path, tools: Mapping[str, Any], report: Reporter) -> None:
    example = f"e.g. `{TOOLS_ARG}: [search, calculate]`"
    if not isinstance(value, list):
        shown = value.ref if isinstance(value, Ref) else repr(value)[:40]
        report.error(
            path,
            f"`{TOOLS_ARG}` of `{AGENT_TOOL}` is a list of tool names, not `{shown}`",
            hint=example,
            code="type",
        )
        return
    if not value:
        report.error(
            path,
            f"`{TOOLS_ARG}` of `{AGENT_TOOL}` is empty: the agent needs at least one tool",
            hint=f"{example}; a step that needs no tool is an `llm` step",
            code="invalid",
        )
        return
    seen: set[str] = set()
    for index, item in enumerate(value):
        where: Path = (*path, index)
        if not isinstance(item, str) or is_template(item) or not item.isidentifier():
            shown = item.ref if isinstance(item, Ref) else repr(item)[:40]
            report.error(
                where,
                f"`{TOOLS_ARG}` lists tool names; `{shown}` is not one",
                hint=example + " (tools are named, not computed)",
                code="type",
            )
            continue
        if item == AGENT_TOOL:
            report.error(
                where,
                f"an agent step cannot offer `{AGENT_TOOL}` (agents do not nest)",
                hint="list the tools the inner agent would use instead",
                code="invalid",
            )
            continue
        if item in seen:
            report.warn(where, f"tool `{item}` is listed twice", code="duplicate")
            continue
        seen.add(item)
        if item not in tools:
            report.error(
                where,
                f"unknown tool `{item}` in `{TOOLS_ARG}`",
                hint=report.unknown_tool_hint(item),
                code="unknown-tool",
            )

"""The printer: Plan IR -> canonical `.plan` text (`planfile fmt`).

The output parses back to the same IR (`parse(print(plan)) == plan`, a property test),
so a JSON plan written by an LLM can be read, diffed and edited as text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from dsl.ir import Plan, Ref, Step

from .parser import decode_long_string, default_plan_name

INDENT = "    "


def format_string(text: str, indent: str = "") -> str:
    """A string literal: triple-quoted when multi-line and exact, else JSON-escaped."""
    if "\n" in text and '"""' not in text and "\\" not in text and "\r" not in text:
        body = "\n".join(f"{indent}{INDENT}{line}" if line else "" for line in text.split("\n"))
        candidate = f'"""\n{body}\n{indent}{INDENT}"""'
        if decode_long_string(candidate) == text:
            return candidate
    return json.dumps(text, ensure_ascii=False)


def format_number(value: int | float) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be written in a plan")
        return repr(value)
    return str(value)


def format_value(value: Any, indent: str = "") -> str:
    """An argument value in `.plan` syntax (references bare, strings quoted)."""
    if isinstance(value, Ref):
        return value.ref
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, str):
        return format_string(value, indent)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v, indent) for v in value) + "]"
    if isinstance(value, dict):
        items = (
            f"{json.dumps(k, ensure_ascii=False)}: {format_value(v, indent)}"
            for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot print {type(value).__name__} in a plan")


def format_duration(seconds: float) -> str:
    if seconds >= 1 or seconds == 0:
        text = repr(float(seconds))
        return (text[:-2] if text.endswith(".0") else text) + "s"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds!r}s"


def format_step(step: Step) -> str:
    head = f"step {step.id}"
    if step.type is not None:
        head += f": {step.type}"
    head += " = "
    if step.for_each is not None:
        head += f"for {step.for_each.var} in {step.for_each.over.ref}: "
    args: list[str] = []
    if step.tier is not None:
        args.append(f"tier: {step.tier}")
    if step.model is not None:
        args.append(f"model: {format_string(step.model)}")
    args.extend(f"{name}: {format_value(value)}" for name, value in step.args.items())
    call = f"{step.tool}({', '.join(args)})"
    lines = [head + call]
    if step.after:
        lines.append(f"{INDENT}after {', '.join(step.after)}")
    if step.retry:
        lines.append(f"{INDENT}retry {step.retry}")
    if step.timeout_s is not None:
        lines.append(f"{INDENT}timeout {format_duration(step.timeout_s)}")
    if step.when is not None:
        lines.append(f"{INDENT}when {format_string(step.when, INDENT)}")
    if step.on_error != "fail":
        lines.append(f"{INDENT}on_error {step.on_error}")
    if step.task is not None:
        lines.append(f"{INDENT}task {step.task}")
    if step.check is not None:
        lines.append(f"{INDENT}check {format_string(step.check, INDENT)}")
    if step.description is not None:
        lines.append(f"{INDENT}describe {format_string(step.description, INDENT)}")
    if step.cache:
        lines.append(f"{INDENT}cache")
    if step.approve:
        lines.append(f"{INDENT}approve")
    return "\n".join(lines)


def format_plan(plan: Plan) -> str:
    """The canonical `.plan` text of a plan."""
    blocks: list[str] = []
    header = f"plan {plan.name}"
    if plan.goal is not None:
        header += f" {format_string(plan.goal)}"
    if plan.expected_cost_usd is not None:
        header += f" expected_cost {format_number(plan.expected_cost_usd)}"
    blocks.append(header)
    if plan.inputs:
        lines = []
        for decl in plan.inputs:
            line = f"input {decl.name}: {decl.type}"
            if decl.default is not None:
                line += f" = {format_value(decl.default)}"
            if decl.description is not None:
                line += f" describe {format_string(decl.description)}"
            lines.append(line)
        blocks.append("\n".join(lines))
    if plan.tiers:
        blocks.append(
            "\n".join(f"tier {name} = {format_string(model)}" for name, model in plan.tiers.items())
        )
    for record in plan.types:
        fields = "".join(f"{INDENT}{name}: {type_}\n" for name, type_ in record.fields.items())
        blocks.append(f"type {record.name} {{\n{fields}}}")
    if plan.steps:
        blocks.append("\n\n".join(format_step(step) for step in plan.steps))
    if plan.outputs:
        blocks.append(f"output {', '.join(plan.outputs)}")
    return "\n\n".join(blocks) + "\n"


__all__ = ["default_plan_name", "format_plan", "format_step", "format_string", "format_value"]

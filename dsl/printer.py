"""The printer: Plan IR -> canonical `.plan` text (`planfile fmt`).

The output parses back to the same IR (`parse(print(plan)) == plan`, a property test),
so a JSON plan written by an LLM can be read, diffed and edited as text. Given the source
text and its source map, comments are kept: a comment on its own line stays above the
statement that follows it, one after code moves to the end of its statement's last line
(several such comments of one statement are joined there).
"""

from __future__ import annotations

import bisect
import json
import math
from collections import defaultdict
from typing import Any

from dsl.ir import Plan, Ref, Step

from .agent_steps import TOOLS_ARG, is_agent_step
from .parser import SourceMap, decode_long_string, default_plan_name, scan_comments

INDENT = "    "


def format_string(text: str, indent: str = "") -> str:
    """A string literal: triple-quoted when multi-line (or quoting quotes) and exact, else
    JSON-escaped."""
    readable = "\n" in text or text.count('"') >= 2
    if readable and '"""' not in text and "\\" not in text and "\r" not in text:
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


_RESERVED_WORDS = frozenset({"true", "false", "null"})


def format_tool_names(value: Any) -> str:
    """An agent's `tools`: names bare (`[search, calculate]`), as the parser reads them;
    anything that is not a name (the checker's error) as a value."""
    if not isinstance(value, list):
        return format_value(value)
    return (
        "["
        + ", ".join(
            item
            if isinstance(item, str)
            and item.isidentifier()
            and item.isascii()
            and item not in _RESERVED_WORDS
            else format_value(item)
            for item in value
        )
        + "]"
    )


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
    agent = is_agent_step(step.tool)
    args.extend(
        f"{name}: {format_tool_names(value) if agent and name == TOOLS_ARG else format_value(value)}"
        for name, value in step.args.items()
    )
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
    if step.executor is not None:
        lines.append(f"{INDENT}executor {step.executor}")
    return "\n".join(lines)


Key = tuple[str, ...]


class _Comments:
    """The comments of a source, attached to the statements the printer writes."""

    def __init__(self, plan: Plan, source: str | None, smap: SourceMap | None) -> None:
        self.leading: dict[Key, list[str]] = defaultdict(list)
        self.trailing: dict[Key, list[str]] = defaultdict(list)
        self.tail: list[str] = []
        if source is None or smap is None or smap.is_json or "#" not in source:
            return
        starts: list[tuple[int, Key]] = []
        positions = smap.positions
        candidates: list[tuple[Key, tuple[Any, ...]]] = [(("plan",), ("name",))]
        candidates += [(("input", str(i)), ("inputs", i)) for i in range(len(plan.inputs))]
        candidates += [(("tier", name), ("tiers", name)) for name in plan.tiers]
        candidates += [(("type", str(i)), ("types", i)) for i in range(len(plan.types))]
        candidates += [(("step", str(i)), ("steps", i)) for i in range(len(plan.steps))]
        candidates.append((("output",), ("outputs", 0)))
        for key, path in candidates:
            if path in positions:
                starts.append((positions[path][0], key))
        starts.sort()
        lines = [line for line, _ in starts]
        for comment in scan_comments(source):
            if comment.after_code:
                index = bisect.bisect_right(lines, comment.line) - 1
                if index >= 0:
                    self.trailing[starts[index][1]].append(comment.text)
                    continue
            index = bisect.bisect_right(lines, comment.line)
            if index < len(starts):
                self.leading[starts[index][1]].append(comment.text)
            else:
                self.tail.append(comment.text)

    def wrap(self, key: Key, text: str) -> str:
        """`text` with its statement's comments: above it, and at the end of its last line."""
        if key in self.trailing:
            text += "  " + " ".join(self.trailing[key])
        if key in self.leading:
            text = "\n".join(self.leading[key]) + "\n" + text
        return text


def format_plan(plan: Plan, source: str | None = None, smap: SourceMap | None = None) -> str:
    """The canonical `.plan` text of a plan; with its `.plan` source, comments are kept."""
    notes = _Comments(plan, source, smap)
    blocks: list[str] = []
    header = f"plan {plan.name}"
    if plan.goal is not None:
        header += f" {format_string(plan.goal)}"
    if plan.expected_cost_usd is not None:
        header += f" expected_cost {format_number(plan.expected_cost_usd)}"
    blocks.append(notes.wrap(("plan",), header))
    if plan.inputs:
        lines = []
        for index, decl in enumerate(plan.inputs):
            line = f"input {decl.name}: {decl.type}"
            if decl.default is not None:
                line += f" = {format_value(decl.default)}"
            if decl.description is not None:
                line += f" describe {format_string(decl.description)}"
            lines.append(notes.wrap(("input", str(index)), line))
        blocks.append("\n".join(lines))
    if plan.tiers:
        blocks.append(
            "\n".join(
                notes.wrap(("tier", name), f"tier {name} = {format_string(model)}")
                for name, model in plan.tiers.items()
            )
        )
    for index, record in enumerate(plan.types):
        fields = "".join(f"{INDENT}{name}: {type_}\n" for name, type_ in record.fields.items())
        blocks.append(notes.wrap(("type", str(index)), f"type {record.name} {{\n{fields}}}"))
    if plan.steps:
        blocks.append(
            "\n\n".join(
                notes.wrap(("step", str(index)), format_step(step))
                for index, step in enumerate(plan.steps)
            )
        )
    if plan.outputs:
        blocks.append(notes.wrap(("output",), f"output {', '.join(plan.outputs)}"))
    if notes.tail:
        blocks.append("\n".join(notes.tail))
    return "\n\n".join(blocks) + "\n"


__all__ = ["default_plan_name", "format_plan", "format_step", "format_string", "format_value"]

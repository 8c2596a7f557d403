"""Loading a plan from a file, text, a JSON value or an IR object, and checking it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from dsl.ir import Plan

from .agent_steps import Executor
from .bounded_read import FileTooLarge, read_bounded
from .checker import CheckedPlan, ToolLike, check
from .errors import Diagnostic, Location, PlanError
from .json_loader import load_json, load_json_text
from .parser import MAX_PLAN_BYTES, SourceMap, decode_source, parse_text

PlanSource = str | Path | Mapping[str, Any] | list[Any] | Plan


def looks_like_json(text: str) -> bool:
    """JSON, or a model's reply holding fenced JSON (```json ...)."""
    start = text.lstrip()
    return start[:1] in ("{", "[") or start.startswith("```")


def read_plan_file(
    path: str | Path,
    tools: Mapping[str, Any] | None = None,
    source_format: str | None = None,
    *,
    tool_map: Mapping[str, str] | None = None,
    executor: Executor = "llm",
) -> tuple[Plan, SourceMap, str]:
    """Read a `.plan` or `.json` file (or LLMCompiler/ReWOO text) into IR; raise PlanError.
    `executor` says how a JSON or imported step naming no registered tool runs (see
    `dsl.json_loader.load_json`); `.plan` text states every step's tool."""
    file = str(path)
    try:
        data = read_bounded(path, MAX_PLAN_BYTES)
    except FileTooLarge as err:
        limit = f"{MAX_PLAN_BYTES // 2**20} MiB"
        raise PlanError(
            [
                Diagnostic(
                    f"plan is {err.size / 1e6:.1f} MB; the limit is {limit}"
                    if err.size is not None
                    else f"plan is over the {limit} limit (or never ends)",
                    Location(file),
                    hint="split the work into several plans",
                    code="too-large",
                )
            ]
        ) from None
    except FileNotFoundError:
        raise PlanError([Diagnostic("no such file", Location(file), code="io")]) from None
    except IsADirectoryError:
        raise PlanError(
            [Diagnostic("is a folder, not a plan file", Location(file), code="io")]
        ) from None
    except OSError as err:
        raise PlanError(
            [Diagnostic(f"cannot read: {err.strerror}", Location(file), code="io")]
        ) from None
    text = decode_source(data, file)
    if source_format is not None:
        from .importers import import_plan

        smap = SourceMap(file, is_json=True)
        plan = import_plan(
            source_format, text, tools or {}, file, tool_map, executor=executor, notes=smap.notes
        )
        return plan, smap, text
    plan, smap = parse_plan_text(text, file, tools, tool_map=tool_map, executor=executor)
    return plan, smap, text


def parse_plan_text(
    text: str,
    file: str | None = None,
    tools: Mapping[str, Any] | None = None,
    *,
    tool_map: Mapping[str, str] | None = None,
    executor: Executor = "llm",
) -> tuple[Plan, SourceMap]:
    """`.plan` text or JSON text -> IR (JSON when the file ends in .json or looks like it).

    JSON is read as models write it: repaired where needed, each repair a note
    (dsl/repair.py); `tool_map` renames tools on load. `.plan` text stays strict."""
    is_json = (file or "").lower().endswith(".json") or (
        not (file or "").lower().endswith(".plan") and looks_like_json(text)
    )
    if is_json:
        return load_json_text(text, file, tools, tool_map=tool_map, executor=executor)
    return parse_text(text, file)


def load_and_check(
    source: PlanSource,
    tools: Mapping[str, ToolLike],
    *,
    tiers: Collection[str] = (),
    tool_map: Mapping[str, str] | None = None,
    executor: Executor = "llm",
) -> CheckedPlan:
    """Any plan source -> a CheckedPlan; raise PlanError with every problem found."""
    text: str | None = None
    if isinstance(source, Plan):
        plan, smap = source, SourceMap(None, is_json=True)
    elif isinstance(source, Mapping | list):
        plan, smap = load_json(source, None, tools, tool_map=tool_map, executor=executor)
    elif isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and Path(source).suffix in (".plan", ".json")
    ):
        plan, smap, text = read_plan_file(source, tools, tool_map=tool_map, executor=executor)
    else:
        text = str(source)
        plan, smap = parse_plan_text(text, None, tools, tool_map=tool_map, executor=executor)
    return check(plan, tools, smap, tiers=tiers, source=text)

"""Commands on plan files that run nothing: check, fmt, graph, schema, tools.

None of them imports the engine, litellm or the live display: they start as fast as
the plan front end loads (see the start-up figures in the README).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsl.errors import Diagnostic, ExitCode, Location, PlanError
from engine.cli.common import (
    config_if_present,
    executor_choice,
    journal,
    load_checked,
    registry,
    tool_map,
)
from engine.errors import UsageError

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def cmd_check(args: argparse.Namespace) -> int:
    from dsl import read_plan_file
    from dsl.checker import check

    tools = registry(args.tools)
    config = config_if_present()
    names = tool_map(args.map_tool, config)
    chosen = executor_choice(args, config)
    status = ExitCode.OK
    for file in args.plans:
        try:
            plan, smap, text = read_plan_file(
                file, tools, args.source_format, tool_map=names, executor=chosen
            )
            checked = check(plan, tools, smap, source=text)
        except PlanError as err:
            print(err.render(), file=sys.stderr)
            print(f"{file}: {_plural(len(err.errors), 'error')}", file=sys.stderr)
            status = ExitCode.INVALID
            continue
        for warning in checked.warnings:
            print(warning.render(text), file=sys.stderr)
        if not args.quiet:
            print(f"{file}: ok ({_check_summary(checked)})")
    return status


def _check_summary(checked: CheckedPlan) -> str:
    """`3 steps; tiers fast (1), standard (2); expected cost $0.05; 3 notes`."""
    plan = checked.plan
    parts = [_plural(len(plan.steps), "step")]
    tiers: dict[str, int] = {}
    for step in plan.steps:
        if step.tier:
            tiers[step.tier] = tiers.get(step.tier, 0) + 1
    if tiers:
        parts.append("tiers " + ", ".join(f"{t} ({n})" for t, n in tiers.items()))
    if plan.expected_cost_usd is not None:
        parts.append(f"expected cost ${plan.expected_cost_usd:g}")
    notes = sum(1 for d in checked.warnings if d.severity == "note")
    warned = len(checked.warnings) - notes
    counts = [_plural(n, w) for n, w in ((warned, "warning"), (notes, "note")) if n]
    return "; ".join(parts + ([", ".join(counts)] if counts else []))


def cmd_graph(args: argparse.Namespace) -> int:
    from engine.observe.export import to_dot, to_json, to_mermaid
    from engine.run.latency import LatencyModel

    states: dict[str, str] | None = None
    if args.run:
        from dsl.checker import check
        from dsl.ir import Plan

        store = journal()
        row = store.run(args.run)
        records = store.steps(row.run_id)
        if args.plan:
            checked, tools = load_checked(args.plan, args.tools)
        else:
            tools = registry(args.tools)
            checked = check(Plan.model_validate_json(row.plan_json), tools)
        states = {
            s.id: str(getattr(records[s.id].status, "value", records[s.id].status))
            if s.id in records
            else "pending"
            for s in checked.plan.steps
        }
    elif args.plan:
        checked, tools = load_checked(args.plan, args.tools)
    else:
        raise UsageError("give a PLAN file, or --run RUN")
    if args.format == "mermaid":
        sys.stdout.write(to_mermaid(checked, states))
    elif args.format == "dot":
        sys.stdout.write(to_dot(checked, states))
    else:
        latency = LatencyModel.from_tools(tools)
        durations = {s.id: latency.estimate(s, tools) for s in checked.plan.steps}
        print(json.dumps(to_json(checked, durations, states), indent=2))
    return ExitCode.OK


def cmd_fmt(args: argparse.Namespace) -> int:
    """Print one plan as canonical text, or check or rewrite several (`fmt -w *.plan`).

    Like `check`, a plan with errors is reported and the others are still done; the exit
    code is 2 if any plan is invalid, else 1 if `--check` found one not canonical."""
    if len(args.plans) > 1 and not (args.write or args.check_only):
        raise UsageError(
            "give one PLAN to print, or several with --write or --check",
            hint="planfile fmt -w a.plan b.plan rewrites each; planfile fmt --check *.plan checks",
        )
    if args.write:
        json_plans = [file for file in args.plans if file.lower().endswith(".json")]
        if json_plans:
            raise UsageError(
                f"--write rewrites .plan files, not {json_plans[0]}",
                hint="redirect the output to convert JSON: planfile fmt PLAN.json > PLAN.plan",
            )
    tools = registry(args.tools)
    config = config_if_present()
    names = tool_map(args.map_tool, config)
    args.executor = executor_choice(args, config)  # the flag, else the config's choice
    status = ExitCode.OK
    for file in args.plans:
        try:
            if not _fmt_one(args, file, tools, names):
                status = max(status, ExitCode.FAILED)
        except PlanError as err:
            if len(args.plans) == 1:
                raise
            print(err.render(), file=sys.stderr)
            status = ExitCode.INVALID
    return status


def _fmt_one(args: argparse.Namespace, file: str, tools: Any, names: dict[str, str]) -> bool:
    """Format one plan as `args` asks; False if `--check` finds it not canonical."""
    from dsl import read_plan_file
    from dsl.printer import format_plan

    plan, smap, text = read_plan_file(
        file, tools, args.source_format, tool_map=names, executor=args.executor
    )
    for note in smap.notes:  # what the JSON loader repaired, coerced or mapped
        print(note.render(), file=sys.stderr)
    formatted = format_plan(plan, text, smap)  # the source's comments are kept
    if args.check_only:
        if formatted != text:
            print(f"{file}: not canonically formatted (run `planfile fmt -w`)", file=sys.stderr)
            return False
        return True
    if args.write:
        if formatted != text:
            try:
                _replace_file(Path(file), formatted)
            except OSError as err:  # like a plan that cannot be read: located, exit 2
                raise PlanError(
                    [Diagnostic(f"cannot write: {err.strerror}", Location(file), code="io")]
                ) from None
        return True
    sys.stdout.write(formatted)
    return True


def _replace_file(path: Path, text: str) -> None:
    """Write `text` over the user's plan atomically: a crash, a full disk or a Ctrl-C
    midway leaves the old plan whole, never half a file. A symlinked plan is written
    where the link points (the link stays), with the file's permissions kept."""
    import os
    import tempfile

    target = path.resolve()
    mode = target.stat().st_mode & 0o7777
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def cmd_schema(args: argparse.Namespace) -> int:
    from dsl.ir import plan_json_schema

    print(json.dumps(plan_json_schema(), indent=2))
    return ExitCode.OK


def cmd_tools(args: argparse.Namespace) -> int:
    tools = registry(args.tools)
    if args.json:
        catalogue = [
            {
                "name": spec.name,
                "signature": spec.signature(),
                "description": spec.description,
                "params": [
                    {
                        "name": p.name,
                        "type": str(p.type),
                        "required": p.required,
                        "default": p.default,
                        "description": p.description,
                    }
                    for p in spec.params
                ],
                "returns": str(spec.returns),
                "uses_model": spec.uses_model,
                "network": spec.network,
                "source": spec.source,
            }
            for spec in tools.values()
        ]
        print(json.dumps(catalogue, indent=2, default=str))
        return ExitCode.OK
    for spec in tools.values():
        notes = []
        if spec.uses_model:
            notes.append("calls a model")
        if spec.network:
            notes.append("network: off unless allowed")
        if spec.source != "stdlib":
            notes.append(f"from {spec.source}")
        print(spec.signature() + (f"    [{'; '.join(notes)}]" if notes else ""))
        print(f"    {spec.description}")
        for param in spec.params:
            if param.description:
                print(f"      {param.name}: {param.description}")
    return ExitCode.OK

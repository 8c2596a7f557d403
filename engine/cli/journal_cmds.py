"""Commands on journaled runs: `runs`, `show`, and `approve`/`reject` of a waiting step."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from typing import Any

from dsl.errors import ExitCode, escape_controls
from engine.cli.common import journal, registry, warn, write_file
from engine.errors import ApprovalError
from engine.store.journal import INTERRUPTED


def _status(value: Any) -> str:
    return str(getattr(value, "value", value))


def tool_call_lines(calls: Iterable[Mapping[str, Any]], indent: str = "      ") -> list[str]:
    """An agent step's inner tool calls, one line each: tool, arguments, output or
    error (previews) and duration."""
    from engine.observe.display import preview

    lines = []
    for number, call in enumerate(calls, 1):
        error = call.get("error")
        result = (
            f"error: {preview(error, 50)}" if error else f"-> {preview(call.get('output'), 50)}"
        )
        started, finished = call.get("started_at"), call.get("finished_at")
        took = (
            f" ({finished - started:.2f}s)"
            if isinstance(started, int | float) and isinstance(finished, int | float)
            else ""
        )
        tool = escape_controls(str(call.get("tool")))
        lines.append(f"{indent}{number}. {tool}({preview(call.get('args'), 50)}) {result}{took}")
    return lines


def cmd_runs(args: argparse.Namespace) -> int:
    rows = journal().runs(args.limit)
    if not rows:
        warn("no runs yet (`planfile run PLAN` records them)")
        return ExitCode.OK
    print(f"{'run':14} {'plan':24} {'status':16} {'started (UTC)':26} cost")
    for row in rows:
        print(
            f"{row.run_id:14} {escape_controls(row.plan[:24]):24} {_status(row.status):16} "
            f"{row.started_at:26} "
            f"${row.cost_usd:.6f}"
        )
    if any(row.status == INTERRUPTED for row in rows):
        warn(
            "interrupted: the process running it is gone (killed) before the run ended; "
            "`planfile resume RUN` continues it"
        )
    return ExitCode.OK


def cmd_show(args: argparse.Namespace) -> int:
    store = journal()
    row = store.run(args.run)
    if args.html is not None:
        from dsl.checker import check
        from dsl.ir import Plan
        from engine.observe.report import render_report

        checked = check(Plan.model_validate_json(row.plan_json), registry(args.tools))
        page = render_report(
            checked,
            store.steps(row.run_id),
            run_id=row.run_id,
            status=row.status,
            cost_usd=row.cost_usd,
            started_at=row.started_at,
            agent_calls=store.agent_calls(row.run_id),
        )
        write_file(args.html, page, "--html")
        warn(f"wrote {args.html}")
        return ExitCode.OK
    result = store.result_json(row.run_id)
    if args.json:
        print(json.dumps(result or {"run_id": row.run_id, "status": _status(row.status)}, indent=2))
        return ExitCode.OK
    print(
        f"run {row.run_id}: plan {escape_controls(row.plan)}, {_status(row.status)}, "
        f"started {row.started_at}, "
        f"${row.cost_usd:.6f}"
    )
    if row.status == INTERRUPTED:
        print(
            "interrupted: the process running it is gone (killed) before the run ended; "
            f"`planfile resume {row.run_id}` continues it"
        )
    if row.inputs:
        print(f"inputs: {escape_controls(json.dumps(row.inputs))}")
    from engine.observe.display import preview

    records = store.steps(row.run_id)
    for name, record in records.items():
        status = _status(record.status)
        detail = (
            escape_controls(record.error or "")
            if status != "succeeded"
            else preview(record.output, 70)
        )
        model = f" {record.model}" if record.model else ""
        cost = f" ${record.cost_usd:.6f}" if record.cost_usd else ""
        print(f"  {name:20} {status:10} {record.attempts}x{model}{cost}  {detail}")
        if record.tool_calls is not None:  # an agent step: its loop
            print(f"    {record.iterations} model call(s), {len(record.tool_calls)} tool call(s)")
            for line in tool_call_lines(record.tool_calls):
                print(line)
    if _status(row.status) != "succeeded":
        # A killed, stopped or waiting run: what `resume` would run; an agent step that
        # was mid-loop shows the calls it replays.
        inner = store.agent_calls(row.run_id)
        for step in json.loads(row.plan_json)["steps"]:
            if step["id"] not in records:
                print(f"  {step['id']:20} {'not run':10} (`planfile resume {row.run_id}` runs it)")
                for item, calls in inner.items():
                    if item.split("[", 1)[0] != step["id"]:
                        continue
                    models = sum(1 for call in calls if call.get("kind") == "model")
                    tools = [call for call in calls if call.get("kind") == "tool"]
                    print(
                        f"    {item}: {models} model call(s), {len(tools)} tool call(s) "
                        "journaled (`resume` replays the latest attempt's)"
                    )
                    for line in tool_call_lines(tools):
                        print(line)
    for change in (result or {}).get("replans", []):
        print(f"  replanned after `{change['after']}`: {escape_controls(str(change['reason']))}")
    return ExitCode.OK


def cmd_decide(args: argparse.Namespace) -> int:
    """`approve`/`reject RUN STEP`: record the decision; `resume` acts on it."""
    store = journal()
    row = store.run(args.run)
    plan_steps = [step["id"] for step in json.loads(row.plan_json)["steps"]]
    if args.step not in plan_steps:
        from dsl.errors import did_you_mean

        raise ApprovalError(
            f"run {row.run_id} has no step `{args.step}`", hint=did_you_mean(args.step, plan_steps)
        )
    store.decide(row.run_id, args.step, "approved" if args.command == "approve" else "rejected")
    print(
        f"{args.command}d `{args.step}` of run {row.run_id}; "
        f"continue with `planfile resume {row.run_id}`"
    )
    return ExitCode.OK

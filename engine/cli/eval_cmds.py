"""`planfile eval-planner GOALS.jsonl`: score the configured planner on a goal set.

The planner is built exactly as `planfile plan` builds it (same tools, tiers, gateway and
repair loop), so the figures are those of the command a user runs. The scoring is in
engine/agent/evaluate.py; this module runs it, prints the table and writes the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsl.errors import ExitCode
from engine.cli.common import engine_from_args
from engine.cli.loop import run_async
from engine.errors import UsageError

COLUMNS = (
    ("goals", "goals", "{:d}"),
    ("checks_first_try", "1st try", "{:d}"),
    ("checks", "checks", "{:d}"),
    ("tool_precision", "tool P", "{:.2f}"),
    ("tool_recall", "tool R", "{:.2f}"),
    ("tool_f1", "tool F1", "{:.2f}"),
    ("node_f1", "node F1", "{:.2f}"),
    ("edge_f1", "edge F1", "{:.2f}"),
    ("steps_mean", "steps", "{:.1f}"),
    ("copied", "copied", "{:d}"),
    ("seconds_median", "s p50", "{:.1f}"),
    ("seconds_p90", "s p90", "{:.1f}"),
    ("cost_usd_total", "cost $", "{:.4f}"),
)


def table(rows: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """The summary table: one row per (split, planner), figures formatted per column."""
    head = ["split", "planner", *(title for _, title, _ in COLUMNS)]
    body = [
        [
            split,
            who,
            *("-" if s.get(key) is None else fmt.format(s[key]) for key, _, fmt in COLUMNS),
        ]
        for split, who, s in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(head), *(line(cells) for cells in body)])


def _progress(total: int) -> Any:
    done = [0]

    def report(result: Any) -> None:
        done[0] += 1
        state = (
            "error: " + result.error
            if result.error
            else f"checks ({result.attempts} attempt(s))"
            if result.checks
            else f"no plan after {result.attempts} attempt(s)"
        )
        print(
            f"[{done[0]}/{total}] {result.split} {result.id}: {state}, tool F1 "
            f"{result.tools.f1:.2f}, {result.seconds:.1f} s",
            file=sys.stderr,
        )

    return report


def cmd_eval_planner(args: argparse.Namespace) -> int:
    from engine.agent.evaluate import by_split, evaluate, llm_only, prompt_examples
    from engine.agent.goal_file import load_goals
    from engine.agent.planner import Planned, Planner, allowed_tools
    from engine.cli.agent_cmds import planner_setup

    config, tools = planner_setup(args)
    goals = [goal for path in args.goals for goal in load_goals(path, tools)[: args.limit]]
    if args.output and not Path(args.output).parent.is_dir():  # before minutes of planning
        raise UsageError(f"-o: no folder `{Path(args.output).parent}` for the report")
    allowed = allowed_tools(tools, args.allow_tool)
    outside = sorted({t for goal in goals for t in goal.tools} - set(allowed))
    if outside:
        print(
            f"planfile: warning: goals expect tools the planner is not offered: "
            f"{', '.join(outside)} (add --allow-tool)",
            file=sys.stderr,
        )
    engine = engine_from_args(args, config, tools, runs_steps=False)
    try:
        planner = Planner(
            engine.model_gateway(), allowed, tiers=engine.tier_map(), max_repairs=args.max_repairs
        )
        model = planner.planner_model()
        print(f"evaluating {model} on {len(goals)} goal(s)", file=sys.stderr)
        results, stopped = run_async(
            evaluate(
                planner.plan,
                goals,
                allowed,
                timeout_s=args.timeout,
                on_result=_progress(len(goals)),
                examples=prompt_examples(),
            )
        )
    finally:
        engine.close()
    baseline: list[Any] = []
    if args.baseline == "llm-only":

        async def trivial(goal: str) -> Planned:
            return llm_only(goal, allowed)

        # The goals the planner was scored on (all of them unless a budget stopped it).
        done = goals[: len(results)]
        baseline, _ = run_async(evaluate(trivial, done, allowed, timeout_s=args.timeout))
    splits = by_split(results)
    base_splits = by_split(baseline) if baseline else {}
    report: dict[str, Any] = {
        "planner": model,
        "goal_files": list(args.goals),
        "max_repairs": args.max_repairs,
        "timeout_s": args.timeout,
        "stopped": stopped,
        "splits": splits,
        "goals": [r.to_json() for r in results],
    }
    if baseline:
        report["baseline"] = {
            "name": args.baseline,
            "splits": base_splits,
            "goals": [r.to_json() for r in baseline],
        }
    text = json.dumps(report, indent=2) + "\n"
    unwritten = False
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        except OSError as err:  # the report goes to stdout: minutes of planning are not lost
            print(f"planfile: error: cannot write {args.output}: {err}", file=sys.stderr)
            unwritten = args.json = True
    if args.json:
        sys.stdout.write(text)
    else:
        rows = []
        for name, summary in splits.items():
            rows.append((name, model, summary))
            if name in base_splits:
                rows.append((name, args.baseline, base_splits[name]))
        print(table(rows))
    if unwritten:
        return ExitCode.INVALID
    if stopped is not None:
        print(f"planfile: evaluation stopped early: {stopped}", file=sys.stderr)
        return ExitCode.BUDGET
    if results and all(r.error is not None for r in results):
        print(f"planfile: every goal failed: {results[0].error}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK

"""Commands where a model writes the plan: `plan` (write it) and `ask` (write and run it)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from dsl.errors import ExitCode
from engine.cli.common import engine_from_args, load_config, registry
from engine.cli.loop import run_async
from engine.cli.run_cmds import execute
from engine.errors import UsageError

if TYPE_CHECKING:
    from engine.config import Config
    from stdlib_tools import ToolRegistry


def _planning_setup(args: argparse.Namespace) -> tuple[Config, ToolRegistry]:
    """What `plan` and `ask` share: a goal, the config, the registry, known --allow-tool names."""
    if not args.goal.strip():
        raise UsageError("the goal is empty")
    return planner_setup(args)


def planner_setup(args: argparse.Namespace) -> tuple[Config, ToolRegistry]:
    """The config and tool registry a planner command uses, every --allow-tool name known
    (`plan`, `ask` and `eval-planner`)."""
    config = load_config(args.config)
    tools = registry(args.tools)
    unknown = [name for name in args.allow_tool if name not in tools]
    if unknown:
        raise UsageError(
            f"--allow-tool: unknown tool `{unknown[0]}`", hint="`planfile tools` lists them"
        )
    return config, tools


def _print_attempts(planned: Any, *, with_repairs: bool) -> None:
    for attempt in planned.attempts:
        state = "ok" if not attempt.errors else f"{len(attempt.errors)} problem(s)"
        print(f"attempt {attempt.number}: {state}", file=sys.stderr)
        if with_repairs:
            for repair in attempt.repairs:
                print(f"  repaired: {repair}", file=sys.stderr)
        for error in attempt.errors[:10]:
            print(f"  {error}", file=sys.stderr)


def _usage_line(usage: Any) -> str:
    return (
        f"{usage.model}, {usage.input_tokens} in / {usage.output_tokens} out tokens, "
        f"${usage.cost_usd:.6f}"
    )


def cmd_plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dsl.printer import format_plan
    from engine.agent.planner import Planner, allowed_tools

    config, tools = _planning_setup(args)
    engine = engine_from_args(args, config, tools, runs_steps=False)
    try:
        allowed = allowed_tools(tools, args.allow_tool)
        planner = Planner(
            engine.model_gateway(), allowed, tiers=engine.tier_map(), max_repairs=args.max_repairs
        )
        planned = run_async(planner.plan(args.goal))
    finally:
        engine.close()
    _print_attempts(planned, with_repairs=True)
    print(f"planning: {_usage_line(planned.usage)}", file=sys.stderr)
    if planned.checked is None:
        print(f"planfile: no valid plan after {len(planned.attempts)} attempt(s)", file=sys.stderr)
        return ExitCode.FAILED
    plan = planned.checked.plan
    text = format_plan(plan) if args.format == "plan" else plan.model_dump_json(indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(plan.steps)} steps)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return ExitCode.OK


def cmd_ask(args: argparse.Namespace) -> int:
    """Plan, show the plan, run it with replanning, print the answer and the cost."""
    from dsl.printer import format_plan
    from engine.agent.planner import Planner, allowed_tools
    from engine.store.plan_cache import PlanCache
    from stdlib_tools import ToolRegistry

    config, tools = _planning_setup(args)
    # A model-written plan may call only the allowed tools, replanned steps included.
    allowed = allowed_tools(tools, args.allow_tool)
    engine = engine_from_args(args, config, ToolRegistry(allowed.values()))
    run = {"replan": args.replan, "max_replans": args.max_replans, "goal": args.goal}
    try:
        planner = Planner(
            engine.model_gateway(), allowed, tiers=engine.tier_map(), max_repairs=args.max_repairs
        )
        cache = None if args.no_cache else PlanCache()
        model = planner.planner_model()
        hit = cache.lookup(args.goal, allowed, model) if cache else None
        if hit is not None:
            checked = engine.check(hit.plan)
            print(
                f"# plan from the cache (hit {hit.hits}; saved a planning call that cost "
                f"${hit.saved_usd:.6f})",
                file=sys.stderr,
            )
            print(format_plan(hit.plan), file=sys.stderr)
            note = f"  planning: cache hit, saved ${hit.saved_usd:.6f}"
            return execute(engine, checked, hit.inputs, args.json, extra_note=note, **run)
        planned = run_async(planner.plan(args.goal))
        usage = planned.usage
        if planned.checked is None:
            _print_attempts(planned, with_repairs=False)
            print(
                f"planfile: no valid plan after {len(planned.attempts)} attempt(s)", file=sys.stderr
            )
            return ExitCode.FAILED
        print(
            f"# plan ({len(planned.attempts)} attempt(s), {usage.model}, ${usage.cost_usd:.6f})",
            file=sys.stderr,
        )
        if cache is not None:
            try:
                cache.store(args.goal, planned.checked.plan, allowed, model, usage.cost_usd)
            except (ValueError, OSError) as err:  # a plan that cannot be parameterised
                print(f"planfile: plan not cached: {err}", file=sys.stderr)
        print(format_plan(planned.checked.plan), file=sys.stderr)
        return execute(
            engine,
            planned.checked,
            {},
            args.json,
            extra_cost=usage.cost_usd,
            extra_note=f"  planning: {_usage_line(usage)}",
            audit_preamble=_planning_audit(planned),
            **run,
        )
    finally:
        engine.close()


def _planning_audit(planned: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """The audit lines of the planning phase: each attempt, then its cost."""
    usage = planned.usage
    lines: list[tuple[str, str, dict[str, Any]]] = [
        (
            "planning",
            "attempt",
            {"attempt": a.number, "model": usage.model, "errors": a.errors, "repairs": a.repairs},
        )
        for a in planned.attempts
    ]
    lines.append(
        (
            "planning",
            "cost",
            {
                "model": usage.model,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
            },
        )
    )
    return lines

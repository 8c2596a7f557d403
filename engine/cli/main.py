"""The `planfile` command line: check, run, graph, fmt, schema, tools.

Exit codes: 0 success, 1 the run failed, 2 the plan or command line is invalid,
3 a budget was exhausted, 130 interrupted. Errors are one readable message on
stderr; a Python traceback only with `--debug`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130
DEFAULT_MAX_PARALLEL = 16


class UsageError(Exception):
    """A command-line problem: exit 2 with the message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"planfile: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)


def _add_from_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source_format",
        choices=["llmcompiler", "rewoo"],
        help="read PLAN as LLMCompiler or ReWOO plan text",
    )


def _add_tools_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="FILE.py",
        help="load user tools (functions decorated with @tool) from a Python file",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="planfile",
        description="A declarative workflow engine for plan-and-execute LLM agents.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser("check", help="validate and type-check plans (exit 0, or 2 with errors)")
    check.add_argument("plans", nargs="+", metavar="PLAN")
    check.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    _add_tools_option(check)
    _add_from_option(check)

    run = sub.add_parser("run", help="run a plan (exit 0 ok, 1 failed, 2 invalid, 130 interrupted)")
    run.add_argument("plan", metavar="PLAN")
    run.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a plan input (JSON for non-text types: --input topics='[\"a\"]')",
    )
    run.add_argument(
        "--json", action="store_true", help="print the run result as one JSON document"
    )
    run.add_argument(
        "--max-parallel",
        type=int,
        default=DEFAULT_MAX_PARALLEL,
        metavar="N",
        help="steps running at once (default 16)",
    )
    run.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="KEY=N",
        help="concurrency limit per tool, tier or model: tool:search=2, tier:frontier=1, model:NAME=4",
    )
    run.add_argument(
        "--workspace", metavar="DIR", help="root folder of the file tools (default: current folder)"
    )
    run.add_argument(
        "--corpus", metavar="DIR", help="folder the search tool indexes (default: examples/corpus)"
    )
    run.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="let http_get fetch from HOST (*.example.com for subdomains); off by default",
    )
    run.add_argument(
        "--tier",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="map a tier to a litellm model string (overrides the plan and the config)",
    )
    run.add_argument(
        "--budget", type=float, metavar="USD", help="stop before a call could take the run over USD"
    )
    run.add_argument(
        "--config", metavar="FILE", help="settings file (default: ./planfile.toml if present)"
    )
    run.add_argument(
        "--replan",
        default="never",
        metavar="POLICY",
        help="never (default), on-failure, after-each-step, every-N (e.g. every-3), on-surprise",
    )
    run.add_argument(
        "--max-replans", type=int, default=5, metavar="N", help="cap on plan revisions (default 5)"
    )
    run.add_argument(
        "--cache",
        action="store_true",
        help="reuse stored results for every step (not only `cache` steps)",
    )
    _add_tools_option(run)
    run.add_argument(
        "--audit", metavar="FILE", help="also write the audit log (JSON lines) to FILE"
    )
    run.add_argument(
        "--approve-all",
        action="store_true",
        help="approve every `approve` step (trusted automation)",
    )
    _add_from_option(run)

    ask = sub.add_parser("ask", help="plan a goal with an LLM, run it, replan as needed, answer")
    ask.add_argument("goal", metavar="GOAL")
    ask.add_argument(
        "--replan",
        default="on-failure",
        metavar="POLICY",
        help="replan policy (default on-failure)",
    )
    ask.add_argument("--max-replans", type=int, default=5, metavar="N")
    ask.add_argument(
        "--max-repairs", type=int, default=2, metavar="N", help="planner repair attempts"
    )
    ask.add_argument(
        "--json", action="store_true", help="print the run result as one JSON document"
    )
    ask.add_argument(
        "--allow-tool",
        action="append",
        default=[],
        metavar="NAME",
        help="let the plan use NAME too",
    )
    ask.add_argument("--tier", action="append", default=[], metavar="NAME=MODEL")
    ask.add_argument("--budget", type=float, metavar="USD")
    ask.add_argument("--config", metavar="FILE")
    ask.add_argument("--workspace", metavar="DIR")
    ask.add_argument("--max-parallel", type=int, default=DEFAULT_MAX_PARALLEL, metavar="N")
    ask.add_argument(
        "--no-cache", action="store_true", help="always call the planner (no plan cache)"
    )
    _add_tools_option(ask)
    ask.add_argument(
        "--audit", metavar="FILE", help="also write the audit log (JSON lines) to FILE"
    )
    ask.add_argument(
        "--approve-all",
        action="store_true",
        help="approve every `approve` step (trusted automation)",
    )

    plan = sub.add_parser(
        "plan", help="an LLM writes a plan for a goal; it is checked and repaired"
    )
    plan.add_argument("goal", metavar="GOAL")
    plan.add_argument(
        "-o", "--output", metavar="FILE", help="write the plan here (default: stdout)"
    )
    plan.add_argument(
        "--format", choices=["plan", "json"], default="plan", help="canonical .plan text or JSON"
    )
    plan.add_argument(
        "--max-repairs", type=int, default=2, metavar="N", help="repair attempts (default 2)"
    )
    plan.add_argument(
        "--allow-tool",
        action="append",
        default=[],
        metavar="NAME",
        help="let the plan use NAME too (by default: the stdlib tools that stay in the workspace)",
    )
    plan.add_argument(
        "--tier",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="e.g. planner=openai/gpt-4o",
    )
    plan.add_argument(
        "--config", metavar="FILE", help="settings file (default: ./planfile.toml if present)"
    )
    plan.add_argument(
        "--budget", type=float, metavar="USD", help="stop before planning could cost more than USD"
    )
    _add_tools_option(plan)

    graph = sub.add_parser("graph", help="print a plan's DAG (mermaid, dot or json)")
    graph.add_argument("plan", metavar="PLAN", nargs="?", help="a plan file (or give --run)")
    graph.add_argument("--format", choices=["mermaid", "dot", "json"], default="mermaid")
    graph.add_argument(
        "--run", metavar="RUN", help="colour the steps by their state in this journaled run"
    )
    _add_tools_option(graph)

    fmt = sub.add_parser("fmt", help="print a plan as canonical .plan text (JSON plans too)")
    fmt.add_argument("plan", metavar="PLAN")
    fmt.add_argument("--write", "-w", action="store_true", help="rewrite a .plan file in place")
    fmt.add_argument(
        "--check",
        dest="check_only",
        action="store_true",
        help="exit 1 if the file is not canonically formatted",
    )
    _add_tools_option(fmt)
    _add_from_option(fmt)

    sub.add_parser("schema", help="print the JSON Schema of a JSON plan")

    runs = sub.add_parser("runs", help="list journaled runs (id, plan, status, started, cost)")
    runs.add_argument("--limit", type=int, default=30, metavar="N")
    show = sub.add_parser("show", help="print one journaled run: steps, results, costs, replans")
    show.add_argument("run", metavar="RUN", help="a run id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true", help="the run's result document")
    show.add_argument(
        "--html", metavar="FILE", help="write a self-contained HTML report: DAG, timeline, costs"
    )
    _add_tools_option(show)
    resume = sub.add_parser("resume", help="continue a killed, cancelled or budget-stopped run")
    resume.add_argument("run", metavar="RUN")
    resume.add_argument("--json", action="store_true")
    resume.add_argument(
        "--budget", type=float, metavar="USD", help="budget for the rest of the run"
    )
    resume.add_argument("--config", metavar="FILE")
    resume.add_argument("--workspace", metavar="DIR")
    _add_tools_option(resume)
    for verb in ("approve", "reject"):
        decide = sub.add_parser(
            verb, help=f"{verb} a step that waits for approval (then `planfile resume RUN`)"
        )
        decide.add_argument("run", metavar="RUN")
        decide.add_argument("step", metavar="STEP")
    resume.add_argument(
        "--audit", metavar="FILE", help="also write the audit log (JSON lines) to FILE"
    )
    resume.add_argument(
        "--approve-all",
        action="store_true",
        help="approve every `approve` step (trusted automation)",
    )

    tools = sub.add_parser("tools", help="print the tool catalogue with typed signatures")
    tools.add_argument("--json", action="store_true", help="machine-readable catalogue")
    _add_tools_option(tools)
    return parser


def _registry(files: Sequence[str]) -> Any:
    from stdlib_tools import ToolRegistry

    registry = ToolRegistry.standard()
    for file in files:
        registry.load_file(file)
    return registry


def _print_diagnostics(err: Any) -> None:
    print(err.render(), file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from dsl import PlanError, read_plan_file
    from dsl.checker import check

    registry = _registry(args.tools)
    status = EXIT_OK
    for file in args.plans:
        try:
            plan, smap, text = read_plan_file(file, registry, args.source_format)
            checked = check(plan, registry, smap, source=text)
        except PlanError as err:
            _print_diagnostics(err)
            errors = len(err.errors)
            print(f"{file}: {errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        for warning in checked.warnings:
            print(warning.render(text), file=sys.stderr)
        if not args.quiet:
            steps = len(checked.plan.steps)
            note = (
                f", {len(checked.warnings)} warning{'s' if len(checked.warnings) != 1 else ''}"
                if checked.warnings
                else ""
            )
            print(f"{file}: ok ({steps} step{'s' if steps != 1 else ''}{note})")
    return status


def _load_checked(
    file: str,
    tool_files: Sequence[str],
    tiers: Sequence[str] = (),
    source_format: str | None = None,
) -> tuple[Any, Any]:
    from dsl import read_plan_file
    from dsl.checker import check

    registry = _registry(tool_files)
    plan, smap, text = read_plan_file(file, registry, source_format)
    return check(plan, registry, smap, source=text, tiers=tiers), registry


def _parse_inputs(pairs: Sequence[str], checked: Any) -> dict[str, Any]:
    """`--input k=v` pairs, typed by the plan: text as is, anything else as JSON."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--input takes NAME=VALUE, not `{pair}`")
        declared = checked.input_types.get(name)
        if declared is not None and declared.kind == "str":
            values[name] = raw
            continue
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw  # the input's type check reports the mismatch
    return values


def _parse_tiers(pairs: Sequence[str]) -> dict[str, str]:
    tiers: dict[str, str] = {}
    for pair in pairs:
        name, sep, model = pair.partition("=")
        if not sep or not name.strip().isidentifier() or not model.strip():
            raise UsageError(
                f"--tier takes NAME=MODEL (e.g. fast=openai/gpt-4o-mini), not `{pair}`"
            )
        tiers[name.strip()] = model.strip()
    return tiers


def _parse_limits(pairs: Sequence[str]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for pair in pairs:
        key, sep, raw = pair.rpartition("=")
        if not sep or ":" not in key or not raw.isdigit() or int(raw) < 1:
            raise UsageError(
                f"--limit takes KIND:NAME=N with N >= 1 (e.g. tool:search=2), not `{pair}`"
            )
        limits[key] = int(raw)
    return limits


def cmd_run(args: argparse.Namespace) -> int:

    from engine.api import Engine

    if args.max_parallel < 1:
        raise UsageError("--max-parallel must be at least 1")
    if args.max_replans < 0:
        raise UsageError("--max-replans must be zero or more")
    if args.budget is not None and args.budget < 0:
        raise UsageError("--budget must be zero or more")
    config = _load_config(args.config)
    tiers = _parse_tiers(args.tier)
    checked, registry = _load_checked(
        args.plan, args.tools, tiers=[*tiers, *config.tiers], source_format=args.source_format
    )
    for warning in checked.warnings:
        print(warning.render(checked.source), file=sys.stderr)
    settings = _tool_settings(config, args)
    limits = {k: v for k, v in config.limits.items() if k != "max_parallel"}
    limits.update(_parse_limits(args.limit))
    max_parallel = args.max_parallel
    if "max_parallel" in config.limits and args.max_parallel == DEFAULT_MAX_PARALLEL:
        max_parallel = config.limits["max_parallel"]
    engine = Engine(
        tools=registry,
        max_parallel=max_parallel,
        limits=limits,
        settings=settings,
        config=config,
        tiers=tiers,
        budget_usd=args.budget,
        on_warning=lambda message: print(message, file=sys.stderr),
        journal=_journal(),
        audit=Path(args.audit) if getattr(args, "audit", None) else True,
        step_cache=_step_cache(),
        approver=_terminal_approver(),
        approve_all=getattr(args, "approve_all", False),
        cache_all=args.cache,
    )
    try:
        inputs = _parse_inputs(args.input, checked)
        return _execute(
            engine, checked, inputs, args.json, replan=args.replan, max_replans=args.max_replans
        )
    finally:
        engine.close()


def _execute(
    engine: Any,
    checked: Any,
    inputs: dict[str, Any],
    as_json: bool,
    *,
    replan: str | None = None,
    max_replans: int = 5,
    goal: str | None = None,
    extra_cost: float = 0.0,
    extra_note: str | None = None,
    audit_preamble: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> int:
    """Run with the live display (or plain log), report, and map the status to an exit code."""
    import asyncio

    from engine.api import InputError
    from engine.observe.display import PlainLog, StepTable, print_summary
    from engine.run.result import RunResult

    holder: list[RunResult] = []
    live = sys.stdout.isatty() and not as_json
    table = StepTable() if live else None
    listener = table if table is not None else (None if as_json else PlainLog())
    options = {
        "replan": replan,
        "max_replans": max_replans,
        "goal": goal,
        "result_holder": holder,
        "audit_preamble": audit_preamble,
    }

    async def go() -> RunResult:
        if table is None:
            return await engine.run(checked, inputs, on_event=listener, **options)
        from rich.live import Live

        with Live(table.render(), refresh_per_second=10, transient=False) as display:

            def on_event(event: Any) -> None:
                table(event)
                display.update(table.render())

            return await engine.run(checked, inputs, on_event=on_event, **options)

    def summary(result: Any) -> None:
        if extra_note:
            print(extra_note, file=sys.stderr)
        print_summary(result, expected_cost=checked.plan.expected_cost_usd)
        for change in result.replans:
            added = ", ".join(change["added"] or []) or "nothing (rejected)"
            print(
                f"  replanned after `{change['after']}`: {change['reason']} (+ {added})",
                file=sys.stderr,
            )

    try:
        result = asyncio.run(go())
    except InputError as err:
        raise UsageError(str(err)) from None
    except ValueError as err:
        if "replan policy" in str(err):
            raise UsageError(str(err)) from None
        raise
    except KeyboardInterrupt:
        if holder:
            holder[0].cost_usd += extra_cost
            _report(holder[0], as_json, summary)
        print("planfile: interrupted; the steps above had finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    result.cost_usd += extra_cost  # e.g. the planning call of `ask`
    _report(result, as_json, summary)
    return {
        "succeeded": EXIT_OK,
        "budget_exceeded": EXIT_BUDGET,
        "cancelled": EXIT_INTERRUPTED,
    }.get(result.status, EXIT_FAILED)


def _report(result: Any, as_json: bool, summary: Any) -> None:
    if as_json:
        print(result.dumps())
    else:
        summary(result)


def _tool_settings(config: Any, args: argparse.Namespace) -> dict[str, Any]:
    """What the tools may do, from planfile.toml and the flags a command has (run, ask, resume)."""
    http = config.tools.http_get
    settings: dict[str, Any] = {
        "http_allowlist": [*http.allow_hosts, *getattr(args, "allow_host", [])],
        "http_timeout_s": http.timeout_s,
        "http_max_bytes": http.max_bytes,
    }
    if config.search.corpus:
        settings["corpus"] = config.search.corpus
    for flag, key in (("workspace", "workspace"), ("corpus", "corpus")):
        value = getattr(args, flag, None)
        if value:
            if not Path(value).is_dir():
                raise UsageError(f"--{flag} {value}: not a folder")
            settings[key] = str(Path(value).resolve())
    return settings


def _load_config(path: str | None) -> Any:
    from engine.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        raise UsageError(str(err)) from None


def _planning_setup(args: argparse.Namespace) -> tuple[Any, Any]:
    """What `plan` and `ask` share: a goal, the config, the registry, known --allow-tool names."""
    if args.max_repairs < 0:
        raise UsageError("--max-repairs must be zero or more")
    if not args.goal.strip():
        raise UsageError("the goal is empty")
    config = _load_config(args.config)
    registry = _registry(args.tools)
    unknown = [name for name in args.allow_tool if name not in registry]
    if unknown:
        raise UsageError(f"--allow-tool: unknown tool `{unknown[0]}` (see `planfile tools`)")
    return config, registry


def cmd_plan(args: argparse.Namespace) -> int:
    import asyncio

    from dsl.printer import format_plan
    from engine.api import Engine
    from engine.agent.planner import Planner, allowed_tools

    config, registry = _planning_setup(args)
    engine = Engine(
        tools=registry,
        config=config,
        tiers=_parse_tiers(args.tier),
        budget_usd=args.budget,
        on_warning=lambda message: print(message, file=sys.stderr),
        journal=_journal(),
        audit=Path(args.audit) if getattr(args, "audit", None) else True,
    )
    tools = allowed_tools(registry, args.allow_tool)
    planner = Planner(
        engine.model_gateway(), tools, tiers=engine.tier_map(), max_repairs=args.max_repairs
    )
    planned = asyncio.run(planner.plan(args.goal))
    for attempt in planned.attempts:
        state = "ok" if not attempt.errors else f"{len(attempt.errors)} problem(s)"
        print(f"attempt {attempt.number}: {state}", file=sys.stderr)
        for repair in attempt.repairs:
            print(f"  repaired: {repair}", file=sys.stderr)
        for error in attempt.errors[:10]:
            print(f"  {error}", file=sys.stderr)
    usage = planned.usage
    print(
        f"planning: {usage.model}, {usage.input_tokens} in / {usage.output_tokens} out tokens, ${usage.cost_usd:.6f}",
        file=sys.stderr,
    )
    if planned.checked is None:
        print(f"planfile: no valid plan after {len(planned.attempts)} attempt(s)", file=sys.stderr)
        return EXIT_FAILED
    plan = planned.checked.plan
    text = format_plan(plan) if args.format == "plan" else plan.model_dump_json(indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(plan.steps)} steps)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_ask(args: argparse.Namespace) -> int:
    """Plan, show the plan, run it with replanning, print the answer and the cost."""
    import asyncio

    from dsl.printer import format_plan
    from engine.api import Engine
    from engine.store.plan_cache import PlanCache
    from engine.agent.planner import Planner, allowed_tools

    config, registry = _planning_setup(args)
    # A model-written plan may call only the allowed tools, replanned steps included.
    tools = allowed_tools(registry, args.allow_tool)
    from stdlib_tools import ToolRegistry

    settings = _tool_settings(config, args)
    engine = Engine(
        tools=ToolRegistry(tools.values()),
        config=config,
        tiers=_parse_tiers(args.tier),
        budget_usd=args.budget,
        max_parallel=args.max_parallel,
        settings=settings,
        on_warning=lambda message: print(message, file=sys.stderr),
        journal=_journal(),
        audit=Path(args.audit) if args.audit else True,
        step_cache=_step_cache(),
        approver=_terminal_approver(),
        approve_all=getattr(args, "approve_all", False),
    )
    try:
        planner = Planner(
            engine.model_gateway(), tools, tiers=engine.tier_map(), max_repairs=args.max_repairs
        )
        cache = None if args.no_cache else PlanCache()
        model = planner.planner_model()
        hit = cache.lookup(args.goal, tools, model) if cache else None
        if hit is not None:
            checked = engine.check(hit.plan)
            print(
                f"# plan from the cache (hit {hit.hits}; saved a planning call that cost ${hit.saved_usd:.6f})",
                file=sys.stderr,
            )
            print(format_plan(hit.plan), file=sys.stderr)
            return _execute(
                engine,
                checked,
                hit.inputs,
                args.json,
                replan=args.replan,
                max_replans=args.max_replans,
                goal=args.goal,
                extra_note=f"  planning: cache hit, saved ${hit.saved_usd:.6f}",
            )
        planned = asyncio.run(planner.plan(args.goal))
        usage = planned.usage
        if planned.checked is None:
            for attempt in planned.attempts:
                print(
                    f"attempt {attempt.number}: {len(attempt.errors)} problem(s)", file=sys.stderr
                )
                for error in attempt.errors[:10]:
                    print(f"  {error}", file=sys.stderr)
            print(
                f"planfile: no valid plan after {len(planned.attempts)} attempt(s)", file=sys.stderr
            )
            return EXIT_FAILED
        print(
            f"# plan ({len(planned.attempts)} attempt(s), {usage.model}, ${usage.cost_usd:.6f})",
            file=sys.stderr,
        )
        if cache is not None:
            try:
                cache.store(args.goal, planned.checked.plan, tools, model, usage.cost_usd)
            except (
                ValueError,
                OSError,
            ) as err:  # a plan that cannot be parameterised is not cached
                print(f"planfile: plan not cached: {err}", file=sys.stderr)
        print(format_plan(planned.checked.plan), file=sys.stderr)

        note = (
            f"  planning: {usage.model}, {usage.input_tokens} in / {usage.output_tokens} out tokens, "
            f"${usage.cost_usd:.6f}"
        )
        return _execute(
            engine,
            planned.checked,
            {},
            args.json,
            replan=args.replan,
            max_replans=args.max_replans,
            goal=args.goal,
            extra_cost=usage.cost_usd,
            extra_note=note,
            audit_preamble=[
                (
                    "planning",
                    "attempt",
                    {
                        "attempt": a.number,
                        "model": usage.model,
                        "errors": a.errors,
                        "repairs": a.repairs,
                    },
                )
                for a in planned.attempts
            ]
            + [
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
            ],
        )
    finally:
        engine.close()


def _terminal_approver() -> Any:
    """Ask at the terminal when there is one; otherwise the run waits (approve/reject later)."""
    if not sys.stdin.isatty():
        return None

    async def ask(run_id: str, step: str, arguments: dict[str, Any]) -> bool:
        import asyncio

        shown = json.dumps(arguments, default=str, ensure_ascii=False)
        prompt = f"\nstep `{step}` of run {run_id} wants to run with {shown[:400]}\napprove? [y/N] "
        answer = await asyncio.to_thread(_ask_line, prompt)
        return answer.strip().lower() in ("y", "yes")

    return ask


def _ask_line(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


def cmd_decide(args: argparse.Namespace) -> int:
    journal = _journal()
    row = journal.run(args.run)
    plan_steps = {step["id"] for step in json.loads(row.plan_json)["steps"]}
    if args.step not in plan_steps:
        raise UsageError(f"run {row.run_id} has no step `{args.step}`")
    journal.decide(row.run_id, args.step, "approved" if args.command == "approve" else "rejected")
    print(
        f"{args.command}d `{args.step}` of run {row.run_id}; continue with `planfile resume {row.run_id}`"
    )
    return EXIT_OK


def _step_cache() -> Any:
    from engine.store.step_cache import StepCache

    return StepCache()


def _journal() -> Any:
    from engine.store.journal import Journal

    return Journal()


def cmd_runs(args: argparse.Namespace) -> int:
    rows = _journal().runs(args.limit)
    if not rows:
        print("no runs yet (`planfile run PLAN` records them)", file=sys.stderr)
        return EXIT_OK
    print(f"{'run':14} {'plan':24} {'status':16} {'started (UTC)':26} cost")
    for row in rows:
        print(
            f"{row.run_id:14} {row.plan[:24]:24} {row.status:16} {row.started_at:26} ${row.cost_usd:.6f}"
        )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    journal = _journal()
    row = journal.run(args.run)
    result = journal.result_json(row.run_id)
    if args.html:
        from dsl.checker import check
        from dsl.ir import Plan
        from engine.observe.report import render_report

        checked = check(Plan.model_validate_json(row.plan_json), _registry(args.tools))
        page = render_report(
            checked,
            journal.steps(row.run_id),
            run_id=row.run_id,
            status=row.status,
            cost_usd=row.cost_usd,
            started_at=row.started_at,
        )
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
        return EXIT_OK
    if args.json:
        print(json.dumps(result or {"run_id": row.run_id, "status": row.status}, indent=2))
        return EXIT_OK
    print(
        f"run {row.run_id}: plan {row.plan}, {row.status}, started {row.started_at}, ${row.cost_usd:.6f}"
    )
    if row.inputs:
        print(f"inputs: {json.dumps(row.inputs)}")
    from engine.observe.display import preview

    records = journal.steps(row.run_id)
    for name, record in records.items():
        detail = record.error if record.status != "succeeded" else preview(record.output, 70)
        model = f" {record.model}" if record.model else ""
        cost = f" ${record.cost_usd:.6f}" if record.cost_usd else ""
        print(f"  {name:20} {record.status:10} {record.attempts}x{model}{cost}  {detail}")
    if row.status != "succeeded":
        # A killed, stopped or waiting run: what `resume` would run.
        for step in json.loads(row.plan_json)["steps"]:
            if step["id"] not in records:
                print(f"  {step['id']:20} {'not run':10} (`planfile resume {row.run_id}` runs it)")
    for change in (result or {}).get("replans", []):
        print(f"  replanned after `{change['after']}`: {change['reason']}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    import asyncio

    from engine.api import Engine
    from engine.observe.display import PlainLog, print_summary
    from engine.run.result import RunResult

    config = _load_config(args.config)
    settings = _tool_settings(config, args)
    engine = Engine(
        tools=_registry(args.tools),
        config=config,
        budget_usd=args.budget,
        settings=settings,
        journal=_journal(),
        audit=Path(args.audit) if getattr(args, "audit", None) else True,
        step_cache=_step_cache(),
        approver=_terminal_approver(),
        approve_all=getattr(args, "approve_all", False),
        on_warning=lambda message: print(message, file=sys.stderr),
    )
    holder: list[RunResult] = []
    try:
        result = asyncio.run(
            engine.resume(
                args.run, on_event=None if args.json else PlainLog(), result_holder=holder
            )
        )
    except KeyboardInterrupt:
        print("planfile: interrupted; resume it again later", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        engine.close()
    _report(result, args.json, print_summary)
    return {"succeeded": EXIT_OK, "budget_exceeded": EXIT_BUDGET}.get(result.status, EXIT_FAILED)


def cmd_graph(args: argparse.Namespace) -> int:
    from dsl.dag import LatencyModel, to_dot, to_json, to_mermaid

    states: dict[str, str] | None = None
    if args.run:
        from dsl.checker import check
        from dsl.ir import Plan

        journal = _journal()
        row = journal.run(args.run)
        records = journal.steps(row.run_id)
        if args.plan:
            checked, registry = _load_checked(args.plan, args.tools)
        else:
            registry = _registry(args.tools)
            checked = check(Plan.model_validate_json(row.plan_json), registry)
        states = {
            s.id: records[s.id].status if s.id in records else "pending" for s in checked.plan.steps
        }
    elif args.plan:
        checked, registry = _load_checked(args.plan, args.tools)
    else:
        raise UsageError("give a PLAN file, or --run RUN")
    if args.format == "mermaid":
        sys.stdout.write(to_mermaid(checked, states))
    elif args.format == "dot":
        sys.stdout.write(to_dot(checked, states))
    else:
        latency = LatencyModel.from_tools(registry)
        durations = {s.id: latency.estimate(s, registry) for s in checked.plan.steps}
        print(json.dumps(to_json(checked, durations, states), indent=2))
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from dsl import read_plan_file
    from dsl.printer import format_plan

    registry = _registry(args.tools)
    plan, _, text = read_plan_file(args.plan, registry, args.source_format)
    formatted = format_plan(plan)
    if args.check_only:
        if formatted != text:
            print(
                f"{args.plan}: not canonically formatted (run `planfile fmt -w`)", file=sys.stderr
            )
            return EXIT_FAILED
        return EXIT_OK
    if args.write:
        if args.plan.lower().endswith(".json"):
            raise UsageError("--write rewrites .plan files; redirect the output to convert JSON")
        if formatted != text:
            Path(args.plan).write_text(formatted, encoding="utf-8")
        return EXIT_OK
    sys.stdout.write(formatted)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from dsl.ir import plan_json_schema

    print(json.dumps(plan_json_schema(), indent=2))
    return EXIT_OK


def cmd_tools(args: argparse.Namespace) -> int:
    registry = _registry(args.tools)
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
            for spec in registry.values()
        ]
        print(json.dumps(catalogue, indent=2, default=str))
        return EXIT_OK
    for spec in registry.values():
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
    return EXIT_OK


COMMANDS = {
    "check": cmd_check,
    "run": cmd_run,
    "plan": cmd_plan,
    "ask": cmd_ask,
    "runs": cmd_runs,
    "show": cmd_show,
    "resume": cmd_resume,
    "approve": cmd_decide,
    "reject": cmd_decide,
    "graph": cmd_graph,
    "fmt": cmd_fmt,
    "schema": cmd_schema,
    "tools": cmd_tools,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INVALID
    from dsl.errors import PlanError
    from engine.store.journal import JournalError
    from stdlib_tools.registry import ToolLoadError

    try:
        return COMMANDS[args.command](args)
    except PlanError as err:
        _print_diagnostics(err)
        return EXIT_INVALID
    except JournalError as err:
        print(f"planfile: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except (UsageError, ToolLoadError) as err:
        print(f"planfile: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("planfile: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped to a command that stopped reading (`| head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as err:
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"planfile: internal error: {type(err).__name__}: {err} (run with --debug for details)",
                file=sys.stderr,
            )
        return EXIT_FAILED


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()

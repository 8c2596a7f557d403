"""`planfile bench PLAN`: how long and how much a plan would take, simulated, nothing run."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from dsl.errors import ExitCode
from engine.cli.common import (
    journal,
    load_config,
    load_run_plan,
    parse_inputs,
    parse_limits,
    parse_tiers,
    registry,
    warn,
    write_file,
)
from engine.cli.options import DEFAULT_MAX_PARALLEL
from engine.cli.run_cmds import collector_set_for_a_run
from engine.errors import UsageError

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan
    from engine.sim.bench import Replay
    from stdlib_tools import ToolRegistry


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.models.pricing import Pricing
    from engine.models.selection import TierSelector
    from engine.sim.bench import Bench, BenchSpec
    from engine.sim.estimates import Estimator, parse_latency, resolve_keys
    from engine.sim.report import bench_document, cost_estimate, render_text, run_all

    config = load_config(args.config)
    tiers = parse_tiers(args.tier)
    latencies = dict(parse_latency(text) for text in args.latency)  # bad flags before I/O
    limits = {k: v for k, v in config.limits.items() if k != "max_parallel"}
    limits.update(parse_limits(args.limit))
    slots = args.max_parallel or [int(config.limits.get("max_parallel", DEFAULT_MAX_PARALLEL))]
    replay, run_label = None, None
    skipped: set[str] = set()
    if args.plan is None and args.from_run is None:
        raise UsageError("bench needs a PLAN file, or --from-run RUN to bench a journaled run")
    if args.plan is not None:
        checked, tools = load_run_plan(args, config, tiers, show_warnings=False)
    if args.from_run is not None:
        journaled, replay, skipped, run_label = _journaled(args.from_run, args.tools)
        if args.plan is None:
            checked, tools = journaled
        else:
            replay = _same_plan(checked, journaled[0], replay, run_label, args.plan)
    for warning in checked.warnings:
        print(warning.render(checked.source), file=sys.stderr)
    tier_map = {**checked.plan.tiers, **config.tiers, **tiers}
    estimator = Estimator(
        tools,
        resolve_keys(latencies, tools, list(tier_map)),
        default_tier=config.default_tier,
    )
    spec = BenchSpec(
        max_parallel=list(dict.fromkeys(slots)),
        limits=limits,
        runs=args.runs,
        seed=args.seed,
        fan_out=_fan_outs(args.fan_out, checked),
        when_false=_steps(args.skip, checked, "--skip") | (skipped & _ids(checked)),
        inputs=parse_inputs(args.input, checked),
        replay=replay,
    )
    with collector_set_for_a_run():  # the collector as a run has it (run_cmds.py)
        bench = Bench(checked, tools, estimator, spec)
        results = run_all(bench)
    selector = TierSelector(tier_map, default_tier=config.default_tier)
    cost = cost_estimate(bench, selector.model_for, Pricing(config).price)
    if run_label is not None:
        durations = f"replayed from run {run_label}"
        estimated = len(_ids(checked) - set(replay or {}) - spec.when_false)
        if estimated:
            durations += f" ({estimated} step(s) not in the run: estimates)"
    elif latencies or any(e.latency.spread() > 0 for e in bench.estimates):
        durations = "estimates with --latency " + ", ".join(args.latency)
    else:
        durations = "per-tool and per-tier estimates"
    doc = bench_document(bench, results, cost, durations)
    if args.html is not None:
        from engine.observe.bench_report import render_bench_report

        first = results[spec.max_parallel[0]][0]
        page = render_bench_report(checked, doc, first.timeline, set(first.critical_steps))
        write_file(args.html, page, "--html")
        warn(f"wrote {args.html}")
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        print(render_text(doc))
    return ExitCode.OK


def _journaled(
    run_id: str, tool_files: list[str]
) -> tuple[tuple[CheckedPlan, ToolRegistry], dict[str, Replay], set[str], str]:
    """A journaled run's plan (checked, with its tools), each finished step's measured
    span (and item count), the steps its `when` skipped, and the run's full id."""
    from dsl.checker import check
    from dsl.ir import Plan
    from engine.sim.bench import Replay

    store = journal()
    row = store.run(run_id)  # JournalError: no such run, or an ambiguous prefix
    tools = registry(tool_files)
    checked = check(Plan.model_validate_json(row.plan_json), tools)
    fan = {step.id for step in checked.plan.steps if step.for_each is not None}
    replay: dict[str, Replay] = {}
    skipped: set[str] = set()
    for name, record in store.steps(row.run_id).items():
        if record.skipped_by_when:
            skipped.add(name)
            continue
        began, ended = record.started_at, record.finished_at
        if began is None or ended is None or not math.isfinite(ended - began):
            continue
        items = len(record.output) if name in fan and isinstance(record.output, list) else None
        replay[name] = Replay(max(0.0, ended - began), items)
    return (checked, tools), replay, skipped, row.run_id


def _same_plan(
    checked: CheckedPlan,
    journaled: CheckedPlan,
    replay: dict[str, Replay],
    run_id: str,
    plan_file: str,
) -> dict[str, Replay]:
    """The replayed spans that apply to PLAN: a run of another plan that shares no step
    with it is refused; one that shares some steps says which are estimated instead."""
    if checked.plan.model_dump_json() == journaled.plan.model_dump_json():
        return replay
    shared = {name: span for name, span in replay.items() if name in _ids(checked)}
    if not shared:
        raise UsageError(
            f"--from-run {run_id}: that run is of plan `{journaled.plan.name}`, which shares "
            f"no measured step with {plan_file}",
            hint=f"leave out {plan_file} to bench the run's own plan, or pick a run of this plan "
            "(`planfile runs`)",
        )
    warn(
        f"note: run {run_id} ran a different version of the plan (`{journaled.plan.name}`): "
        f"{len(shared)} of {len(_ids(checked))} steps are replayed, the rest estimated"
    )
    return shared


def _ids(checked: CheckedPlan) -> set[str]:
    return {step.id for step in checked.plan.steps}


def _steps(names: list[str], checked: CheckedPlan, flag: str) -> set[str]:
    known = _ids(checked)
    for name in names:
        if name not in known:
            raise UsageError(f"{flag} {name}: the plan has no step `{name}`")
    return set(names)


def _fan_outs(pairs: list[str], checked: CheckedPlan) -> dict[str, int]:
    fans = {step.id for step in checked.plan.steps if step.for_each is not None}
    sizes: dict[str, int] = {}
    for pair in pairs:
        name, sep, raw = pair.rpartition("=")
        if not sep or not raw.isdigit() or len(raw) > 7:
            raise UsageError(f"--fan-out takes STEP=N (e.g. fetch=20), not `{pair:.60}`")
        if name not in fans:
            hint: Any = f"fan-out steps: {', '.join(sorted(fans))}" if fans else None
            raise UsageError(f"--fan-out {name}: no fan-out (`for`) step of that name", hint=hint)
        sizes[name] = int(raw)
    return sizes

"""The `planfile bench` document (the `--json` output) and its text rendering.

One document per invocation: the plan's figures that do not depend on the slots
(critical path, work, cost), then one entry per `--max-parallel` value with the
makespan (mean, p50, p90 over `--runs`) and its ratios.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from engine.sim.bench import Bench, RunMetrics, summarize

SCHEMA_VERSION = 1


def run_all(bench: Bench) -> dict[int, list[RunMetrics]]:
    """Every configuration over every run's durations (each run's durations shared)."""
    results: dict[int, list[RunMetrics]] = {slots: [] for slots in bench.spec.max_parallel}
    for run in range(bench.spec.runs):
        draw = bench.draw(run)
        for slots in bench.spec.max_parallel:
            results[slots].append(bench.run(draw, slots))
    return results


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b > 0 else None


def cost_estimate(
    bench: Bench, model_for: Callable[[str], str], price: Callable[[str], Any]
) -> dict[str, Any]:
    """Model calls, tokens and dollars per tier (or explicit model), and in total.

    `model_for(tier)`: the model a tier maps to; `price(model)`: its `Price`.
    """
    tiers: dict[str, dict[str, Any]] = {}
    for node, estimate in enumerate(bench.estimates):
        if estimate.tier is None or node in bench.skip:
            continue
        copies = bench.fan_sizes.get(node, 1)
        label = estimate.tier
        model = label.split(":", 1)[1] if label.startswith("model:") else model_for(label)
        entry = tiers.setdefault(
            label,
            {"tier": label, "model": model, "calls": 0, "input_tokens": 0, "output_tokens": 0},
        )
        entry["calls"] += estimate.model_calls * copies
        entry["input_tokens"] += estimate.input_tokens * copies
        entry["output_tokens"] += estimate.output_tokens * copies
    total = 0.0
    unknown = []
    for entry in tiers.values():
        cost = price(entry["model"])
        entry["usd"] = round(cost.cost(entry["input_tokens"], entry["output_tokens"]), 6)
        entry["price_known"] = bool(cost.known)
        if not cost.known:
            unknown.append(entry["model"])
        total += entry["usd"]
    return {
        "tiers": sorted(tiers.values(), key=lambda e: e["tier"]),
        "total_usd": round(total, 6),
        "expected_cost_usd": bench.checked.plan.expected_cost_usd,
        "unpriced_models": unknown,
    }


def bench_document(
    bench: Bench, results: dict[int, list[RunMetrics]], cost: dict[str, Any], durations: str
) -> dict[str, Any]:
    first = next(iter(results.values()))
    critical = summarize([m.critical_path for m in first])
    work = summarize([m.work for m in first])
    configurations = []
    for slots, runs in results.items():
        makespan = summarize([m.makespan for m in runs])
        superstep = summarize([m.superstep for m in runs])
        mean = makespan["mean"]
        slots_used = max(m.slots_used for m in runs)
        configurations.append(
            {
                "max_parallel": slots,
                "limits": dict(bench.spec.limits),
                "makespan_s": makespan,
                "vs_critical_path": _ratio(mean, critical["mean"]),
                "slots_used": slots_used,
                "parallel_efficiency": _ratio(work["mean"], mean * slots_used),
                "speedup_vs_one_at_a_time": _ratio(work["mean"], mean),
                "superstep_makespan_s": superstep["mean"],
                "speedup_vs_superstep": _ratio(superstep["mean"], mean),
                "starts_last": runs[0].last,
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "plan": bench.checked.plan.name,
        "steps": len(bench.steps),
        "calls": len(first[0].timeline.calls()),
        "runs": bench.spec.runs,
        "seed": bench.spec.seed,
        "durations": durations,
        "critical_path": {"seconds": critical, "steps": first[0].critical_steps},
        "work_s": work,
        "one_at_a_time_s": work["mean"],
        "configurations": configurations,
        "cost": cost,
        "assumptions": bench.assumptions,
    }


def _s(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:,.0f}s"
    return f"{seconds:.3g}s"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def render_text(doc: dict[str, Any]) -> str:
    """The document for a terminal: a summary, the what-if table, the cost."""
    crit = doc["critical_path"]
    runs = doc["runs"]
    lines = [
        f"bench {doc['plan']}: {doc['steps']} steps, {doc['calls']} calls; durations: "
        f"{doc['durations']}; {runs} run{'s' if runs != 1 else ''} (seed {doc['seed']})",
        f"critical path {_s(crit['seconds']['mean'])}: {' → '.join(crit['steps']) or '—'}",
        f"total work {_s(doc['work_s']['mean'])} (= one step at a time)",
        "",
    ]
    header = (
        "max-parallel",
        "makespan",
        "p50",
        "p90",
        "/crit.path",
        "slots used",
        "efficiency",
        "speed-up vs 1 at a time",
        "vs supersteps",
    )
    rows = [header]
    for conf in doc["configurations"]:
        span = conf["makespan_s"]
        efficiency = conf["parallel_efficiency"]
        rows.append(
            (
                str(conf["max_parallel"]),
                _s(span["mean"]),
                _s(span["p50"]),
                _s(span["p90"]),
                _x(conf["vs_critical_path"]),
                str(conf["slots_used"]),
                "—" if efficiency is None else f"{efficiency:.0%}",
                _x(conf["speedup_vs_one_at_a_time"]),
                f"{_x(conf['speedup_vs_superstep'])} ({_s(conf['superstep_makespan_s'])})",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    limits = doc["configurations"][0]["limits"] if doc["configurations"] else {}
    if limits:
        lines.append("limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()))
    lines.append("")
    for conf in doc["configurations"]:
        last = conf["starts_last"]
        if last:
            which = ", first run" if runs > 1 else ""
            lines.append(
                f"starts last (max-parallel {conf['max_parallel']}{which}): `{last['step']}` at "
                f"{_s(last['starts_at_s'])}: {last['reason']}"
            )
    cost = doc["cost"]
    lines.append("")
    if cost["tiers"]:
        lines.append("estimated cost:")
        for entry in cost["tiers"]:
            unknown = "" if entry["price_known"] else " (price unknown: counted as $0)"
            lines.append(
                f"  {entry['tier']} ({entry['model']}): {entry['calls']} call(s), "
                f"{entry['input_tokens']:,} in / {entry['output_tokens']:,} out tokens, "
                f"{_usd(entry['usd'])}{unknown}"
            )
    expected = cost["expected_cost_usd"]
    beside = f" (the plan expects {_usd(expected)})" if expected is not None else ""
    lines.append(f"  total {_usd(cost['total_usd'])}{beside}")
    for note in doc["assumptions"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _usd(amount: float) -> str:
    """Dollars with four decimals, or two significant digits below that (an estimate of
    $0.00002 must not print as $0.0000 beside one of $0.0002)."""
    if amount == 0 or abs(amount) >= 0.0001:
        return f"${amount:,.4f}"
    return f"${amount:.{-math.floor(math.log10(abs(amount))) + 1}f}"

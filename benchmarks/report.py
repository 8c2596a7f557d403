"""Turn a pytest-benchmark JSON file into the README's Markdown tables (ratios in-run).

pytest benchmarks/ --benchmark-json=bench.json && python benchmarks/report.py bench.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def load(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return {
        b["fullname"].split("::")[-1]: {**b["extra_info"], "median": b["stats"]["median"]}
        for b in data["benchmarks"]
    }


def _get(rows: dict[str, dict[str, Any]], name: str, key: str) -> float | None:
    row = rows.get(name)
    return None if row is None or key not in row else float(row[key])


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def compiler(rows: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "Parse + check + compile (µs per step; `check only` is what `planfile check` does):",
        "",
        "| steps | chain | wide fan-out | random DAG | check only (random) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in (100, 1_000, 10_000):
        cells = [
            _fmt(_get(rows, f"test_parse_check_compile[{shape}-{size}]", "us_per_step"), ".0f")
            for shape in ("chain", "wide", "random")
        ]
        check = _get(rows, f"test_check_only[{size}]", "us_per_step")
        seconds = _get(rows, f"test_check_only[{size}]", "median")
        out.append(
            f"| {size:,} | {' | '.join(cells)} | {_fmt(check, '.0f')} ({_fmt(seconds, '.3f')} s) |"
        )
    cells = [
        _fmt(_get(rows, f"test_100k_steps_fit_in_memory[{shape}]", "us_per_step"), ".0f")
        for shape in ("chain", "wide", "random")
    ]
    peak = max(
        (_get(rows, f"test_100k_steps_fit_in_memory[{s}]", "maxrss_mb") or 0)
        for s in ("chain", "wide", "random")
    )
    out.append(f"| 100,000 | {' | '.join(cells)} | peak RSS {peak:.0f} MB (fresh process) |")
    return out


def scheduler(rows: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "Scheduler overhead with no-op steps (µs per step; ratio to the bare asyncio ready-queue in the same run):",
        "",
        "| DAG | bare asyncio | planfile scheduler | ratio | whole engine (tool steps) | LangGraph |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for shape in ("chain", "fanout"):
        for size in (1_000, 10_000, 100_000):
            bare = _get(rows, f"test_overhead_bare_asyncio[{shape}-{size}]", "us_per_step")
            ours = _get(rows, f"test_overhead_planfile_scheduler[{shape}-{size}]", "us_per_step")
            engine = _get(rows, f"test_overhead_planfile_engine[{shape}-{size}]", "us_per_step")
            peer = _get(rows, f"test_overhead_langgraph[{shape}-{size}]", "us_per_step")
            ratio = ours / bare if ours and bare else None
            peer_text = f"{peer:.0f} ({peer / ours:.0f}x planfile)" if peer and ours else "-"
            out.append(
                f"| {shape} {size:,} | {_fmt(bare, '.1f')} | {_fmt(ours, '.1f')} | {_fmt(ratio, '.2f')}x | "
                f"{_fmt(engine, '.1f') if engine else '-'} | {peer_text} |"
            )
    out += [
        "",
        "Makespan on a random layered DAG (200 steps, 10 layers, 10-200 ms each):",
        "",
        "| case | makespan | bound | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    cases = [
        ("planfile, unbounded (bound: critical path)", "test_makespan_unbounded_planfile"),
        ("LangGraph, unbounded (supersteps)", "test_makespan_unbounded_langgraph"),
        (
            "planfile, 4 slots, critical-path first (bound: max(CP, work/4))",
            "test_makespan_four_slots[critical_path]",
        ),
        ("planfile, 4 slots, FIFO", "test_makespan_four_slots[fifo]"),
    ]
    for label, name in cases:
        out.append(
            f"| {label} | {_fmt(_get(rows, name, 'makespan_s'), '.3f')} s | {_fmt(_get(rows, name, 'bound_s'), '.3f')} s | "
            f"{_fmt(_get(rows, name, 'ratio'), '.3f')} |"
        )
    return out


def models(rows: dict[str, dict[str, Any]]) -> list[str]:
    case = rows.get("test_published_cost_case", {})
    ten = rows.get("test_ten_step_plan_saves_by_tiering", {})
    overhead = rows.get("test_gateway_overhead_against_bare_litellm", {})
    local = rows.get("test_local_model_speed", {})
    return [
        "Cost (exact: reported tokens x configured prices; fast $0.80/M, standard $3/M, frontier $15/M):",
        "",
        "| case | tiered | all frontier |",
        "| --- | ---: | ---: |",
        f"| 800 fast + 1,000 and 1,200 standard tokens | ${case.get('tiered', 0):.5f} | ${case.get('all_frontier', 0):.5f} |",
        f"| the same plus a 2,000-token frontier planning call | ${case.get('tiered_with_planning', 0):.5f} | "
        f"${case.get('frontier_with_planning', 0):.5f} |",
        f"| 10 steps (6 search, 3 analyze, 1 reasoning; 1,000 tokens each) | ${ten.get('tiered', 0):.4f} | "
        f"${ten.get('all_frontier', 0):.4f} ({ten.get('saved', 0) * 100:.1f}% saved) |",
        "",
        f"Gateway overhead: {overhead.get('engine_ms_per_call', 0):.2f} ms per call through the engine against "
        f"{overhead.get('bare_ms_per_call', 0):.2f} ms for a bare `litellm.acompletion` loop (mock responses, chain "
        f"of 300 steps): median per-round ratio {1 + overhead.get('overhead', 0):.2f}x.",
        "",
        f"Embedded model (SmolLM2-135M as Q8_0, llama.cpp, {local.get('threads', 2)} threads): reads "
        f"{local.get('prompt_tokens_per_s', 0):.0f} prompt tokens/s on a {local.get('prompt_tokens', 0)}-token "
        f"prompt (the shipped Q4_1: {local.get('prompt_tokens_per_s_q4_1', 0):.0f}), generates "
        f"{local.get('tokens_per_s', 0):.0f} tokens/s, first token after {local.get('first_token_s', 0) * 1000:.0f} ms.",
    ]


def planning(rows: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "Plan-and-execute against a ReAct-style loop (k parallelisable lookups; simulated model latency and tokens):",
        "",
        "| lookups | ReAct wall | planfile wall | latency ratio | model calls | tokens | cost (ReAct / planfile) | cost ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k in (3, 5, 8):
        row = rows.get(f"test_plan_and_execute_against_react[{k}]")
        if not row:
            continue
        out.append(
            f"| {k} | {row['react_wall_s']:.2f} s | {row['planfile_wall_s']:.2f} s | {row['latency_ratio']:.2f}x | "
            f"{row['react_calls']} / {row['planfile_calls']} | {row['react_tokens']:,} / {row['planfile_tokens']:,} | "
            f"${row['react_cost']:.4f} / ${row['planfile_cost']:.4f} | {row['cost_ratio']:.2f}x |"
        )
    offline = rows.get("test_offline_planning_success_rate")
    if offline:
        out += [
            "",
            f"Offline planning with the embedded 135M model, {offline['goals']} varied goals: "
            f"{offline['first_try']} ({offline['first_try_share']:.0%}) check on the first try, "
            f"{offline['after_repair']} ({offline['after_repair_share']:.0%}) after up to two repairs.",
        ]
    return out + planner_eval(rows)


def planner_eval(rows: dict[str, dict[str, Any]]) -> list[str]:
    """benchmarks/test_planner_eval.py: each split, the embedded planner then the baseline."""
    names = {split: f"test_planner_eval[{split}]" for split in ("heldout", "tuned")}
    found = [(split, rows[name]) for split, name in names.items() if name in rows]
    out = [
        "",
        "Planner evaluation (`planfile eval-planner`, embedded model, fresh process):",
        "",
        "| split | planner | checks, 1st try | checks | tool F1 | node F1 | edge F1 | steps | copied | planning s p50 / p90 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for split, row in found:
        for who, p in (("embedded", ""), ("llm-only", "baseline_")):
            n = row[p + "goals"]
            out.append(
                f"| {split} | {who} | {row[p + 'checks_first_try']}/{n} | {row[p + 'checks']}/{n} | "
                f"{_fmt(row[p + 'tool_f1'], '.2f')} | {_fmt(row[p + 'node_f1'], '.2f')} | "
                f"{_fmt(row[p + 'edge_f1'], '.2f')} | {_fmt(row[p + 'steps_mean'], '.1f')} | "
                f"{row[p + 'copied']}/{n} | "
                f"{_fmt(row[p + 'seconds_median'], '.1f')} / {_fmt(row[p + 'seconds_p90'], '.1f')} |"
            )
    return out if found else []


def journal(rows: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "Run journal: the same runs with and without it (µs per step; median of per-round ratios):",
        "",
        "| run | without | with | overhead |",
        "| --- | ---: | ---: | ---: |",
    ]
    cases = [
        (f"test_journal_overhead[{shape}-{kind}]", f"2,000 no-op steps, {shape}, {label}")
        for shape in ("chain", "fanout")
        for kind, label in (("first-run", "first run of the plan"), ("repeat", "plan run again"))
    ]
    cases.append(
        ("test_journal_overhead_on_model_steps", "100 model steps (mock responses), chain")
    )
    for name, label in cases:
        row = rows.get(name)
        if row:
            out.append(
                f"| {label} | {row['plain_us_per_step']:,.1f} | {row['journal_us_per_step']:,.1f} | "
                f"{row['overhead'] * 100:+.1f}% |"
            )
    return out


def main(path: str) -> None:
    rows = load(path)
    sections = [compiler(rows), scheduler(rows), models(rows), planning(rows), journal(rows)]
    print("\n\n".join("\n".join(section) for section in sections))


if __name__ == "__main__":
    main(sys.argv[1])

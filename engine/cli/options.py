"""The `planfile` argument parser: every option block declared once, shared by parents.

Importing this module imports argparse and nothing of planfile's: `planfile --help`
and a mistyped flag cost no more than Python's start-up.

Over 400 lines because every command's options are declared here, once, as data;
splitting it per command would scatter the shared option groups it exists to hold.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, NoReturn

DEFAULT_MAX_PARALLEL = 16
# Upper bounds for counts given on the command line: large enough for any real use,
# small enough for SQLite's 64-bit integers and for loops that count to them.
MAX_COUNT = 1_000_000_000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"planfile: error: {message}", file=sys.stderr)
        raise SystemExit(2)  # ExitCode.INVALID, without importing the plan front end


def _count(low: int) -> type[int]:
    """An argparse type: an integer from `low` to MAX_COUNT (clear error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # not a number, or over Python's 4,300-digit limit
            raise argparse.ArgumentTypeError(f"expected a whole number, not `{text:.40}`") from None
        if not low <= value <= MAX_COUNT:
            raise argparse.ArgumentTypeError(f"must be from {low} to {MAX_COUNT:,}, not {text:.40}")
        return value

    parse.__name__ = "count"
    return parse  # type: ignore[return-value]


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount in USD, not `{text:.40}`") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more (and finite), not {text:.40}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not `{text:.40}`") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 (and finite), not {text:.40}")
    return value


def _parent() -> _Parser:
    return _Parser(add_help=False)


def _shared_options() -> dict[str, _Parser]:
    """One parent parser per option block; a command lists the blocks it takes."""
    p: dict[str, _Parser] = {}

    p["tools"] = _parent()
    p["tools"].add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="FILE.py",
        help="load user tools (functions decorated with @tool) from a Python file",
    )
    p["from"] = _parent()
    p["from"].add_argument(
        "--from",
        dest="source_format",
        choices=["llmcompiler", "rewoo"],
        help="read PLAN as LLMCompiler or ReWOO plan text",
    )
    p["from"].add_argument(
        "--map-tool",
        action="append",
        default=[],
        metavar="NAME=TOOL",
        help="load a JSON plan's tool NAME as TOOL (e.g. web_search=search); also [tools.map]"
        " in planfile.toml",
    )
    p["from"].add_argument(
        "--executor",
        choices=["llm", "agent"],
        help="run JSON/imported steps that name no registered tool as one llm call (default)"
        " or as an agent over search, calculate, read_file, list_files, json_query; also"
        " `executor` in planfile.toml",
    )
    p["config"] = _parent()
    p["config"].add_argument(
        "--config", metavar="FILE", help="settings file (default: ./planfile.toml if present)"
    )
    p["budget"] = _parent()
    p["budget"].add_argument(
        "--budget", type=_usd, metavar="USD", help="stop before a call could take it over USD"
    )
    p["tier"] = _parent()
    p["tier"].add_argument(
        "--tier",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="map a tier to a litellm model string (overrides the plan and the config)",
    )
    p["workspace"] = _parent()
    p["workspace"].add_argument(
        "--workspace", metavar="DIR", help="root folder of the file tools (default: current folder)"
    )
    p["parallel"] = _parent()
    p["parallel"].add_argument(
        "--max-parallel",
        type=_count(1),
        default=DEFAULT_MAX_PARALLEL,
        metavar="N",
        help=f"steps running at once (default {DEFAULT_MAX_PARALLEL})",
    )
    p["json"] = _parent()
    p["json"].add_argument(
        "--json", action="store_true", help="print the run result as one JSON document"
    )
    p["journaled"] = _parent()  # what every command that runs steps takes
    p["journaled"].add_argument(
        "--audit", metavar="FILE", help="also write the audit log (JSON lines) to FILE"
    )
    p["journaled"].add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="execute the steps on this Dask cluster (e.g. tcp://10.0.0.5:8786; also "
        "[cluster] address in planfile.toml; needs the `cluster` extra)",
    )
    p["journaled"].add_argument(
        "--approve-all",
        action="store_true",
        help="approve every `approve` step (trusted automation)",
    )
    # Two blocks, not one with `set_defaults`: parents share their action objects, so
    # changing a default on one command would change it on every command of the parent.
    for block, default in (("replan", "never"), ("replan-ask", "on-failure")):
        p[block] = _parent()
        p[block].add_argument(
            "--replan",
            default=default,
            metavar="POLICY",
            help="never, on-failure, after-each-step, every-N (e.g. every-3), on-surprise "
            f"(default {default})",
        )
        p[block].add_argument(
            "--max-replans",
            type=_count(0),
            default=5,
            metavar="N",
            help="cap on plan revisions (default 5)",
        )
    # The planner's options; `planning` adds the goal (plan, ask), eval-planner takes files.
    p["planner"] = _parent()
    p["planner"].add_argument(
        "--max-repairs",
        type=_count(0),
        default=2,
        metavar="N",
        help="planner repair attempts (default 2)",
    )
    p["planner"].add_argument(
        "--allow-tool",
        action="append",
        default=[],
        metavar="NAME",
        help="let the plan use NAME too (by default: the stdlib tools that stay in the workspace)",
    )
    p["planning"] = _Parser(add_help=False, parents=[p["planner"]])
    p["planning"].add_argument("goal", metavar="GOAL")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="planfile",
        description="A declarative workflow engine for plan-and-execute LLM agents.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = _shared_options()

    def command(name: str, help: str, *blocks: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[p[b] for b in blocks])

    check = command(
        "check", "validate and type-check plans (exit 0, or 2 with errors)", "tools", "from"
    )
    check.add_argument("plans", nargs="+", metavar="PLAN")
    check.add_argument("--quiet", "-q", action="store_true", help="print errors only")

    run = command(
        "run",
        "run a plan (exit 0 ok, 1 failed, 2 invalid, 3 budget, 130 interrupted)",
        *("tools", "from", "config", "budget", "tier", "workspace", "parallel", "json"),
        *("journaled", "replan"),
    )
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
        "--limit",
        action="append",
        default=[],
        metavar="KEY=N",
        help="concurrency limit per tool, tier or model: tool:search=2, tier:frontier=1, model:NAME=4",
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
        "--cache",
        action="store_true",
        help="reuse stored results for every step (not only `cache` steps)",
    )

    ask = command(
        "ask",
        "plan a goal with an LLM, run it, replan as needed, answer",
        *("planning", "tools", "config", "budget", "tier", "workspace", "parallel", "json"),
        *("journaled", "replan-ask"),
    )
    ask.add_argument(
        "--no-cache", action="store_true", help="always call the planner (no plan cache)"
    )

    plan = command(
        "plan",
        "an LLM writes a plan for a goal; it is checked and repaired",
        *("planning", "tools", "config", "budget", "tier"),
    )
    plan.add_argument(
        "-o", "--output", metavar="FILE", help="write the plan here (default: stdout)"
    )
    plan.add_argument(
        "--format", choices=["plan", "json"], default="plan", help="canonical .plan text or JSON"
    )

    graph = command("graph", "print a plan's DAG (mermaid, dot or json)", "tools")
    graph.add_argument("plan", metavar="PLAN", nargs="?", help="a plan file (or give --run)")
    graph.add_argument("--format", choices=["mermaid", "dot", "json"], default="mermaid")
    graph.add_argument(
        "--run", metavar="RUN", help="colour the steps by their state in this journaled run"
    )

    fmt = command("fmt", "print a plan as canonical .plan text (JSON plans too)", "tools", "from")
    fmt.add_argument(
        "plans", nargs="+", metavar="PLAN", help="one plan to print; several with -w or --check"
    )
    fmt.add_argument("--write", "-w", action="store_true", help="rewrite .plan files in place")
    fmt.add_argument(
        "--check",
        dest="check_only",
        action="store_true",
        help="exit 1 if a file is not canonically formatted",
    )

    evaluate = command(
        "eval-planner",
        "score the planner on goals (JSON lines): plans that check, tool and graph F1, cost, latency",
        *("planner", "tools", "config", "budget", "tier"),
    )
    evaluate.add_argument("goals", nargs="+", metavar="GOALS.jsonl")
    evaluate.add_argument(
        "--baseline",
        choices=["llm-only"],
        help="also score the trivial plan (one llm step with the goal) on the same goals",
    )
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("-o", "--output", metavar="FILE", help="write the JSON report here")
    evaluate.add_argument(
        "--limit", type=_count(1), metavar="N", help="only the first N goals of each file"
    )
    evaluate.add_argument(
        "--timeout",
        type=_seconds,
        default=300.0,
        metavar="S",
        help="the most one goal's planning may take, repairs included (default 300)",
    )

    bench = command(
        "bench",
        "simulate a plan's schedule (nothing runs): makespan, critical path, what-ifs, cost",
        *("tools", "from", "config", "tier"),
    )
    bench.add_argument(
        "plan", metavar="PLAN", nargs="?", help="a plan file (or give --from-run RUN)"
    )
    bench.add_argument(
        "--max-parallel",
        type=_count(1),
        action="append",
        default=[],
        metavar="N",
        help=f"slots; give several for a what-if table (default {DEFAULT_MAX_PARALLEL})",
    )
    bench.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="KEY=N",
        help="concurrency limit per tool, tier or model (as for `run`)",
    )
    bench.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="KEY=S[±J]",
        help="seconds a tool or tier takes, optionally ± jitter (s or %%): search=0.4, "
        "tier:frontier=6±1.5, llm=2±25%%",
    )
    bench.add_argument(
        "--runs", type=_count(1), default=1, metavar="N", help="seeded draws (mean, p50, p90)"
    )
    bench.add_argument("--seed", type=_count(0), default=0, metavar="N", help="jitter seed")
    bench.add_argument(
        "--from-run", metavar="RUN", help="replay the step durations a journaled run measured"
    )
    bench.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a plan input (a list input sets the size of the fan-outs over it)",
    )
    bench.add_argument(
        "--fan-out",
        action="append",
        default=[],
        metavar="STEP=N",
        help="items of a fan-out step whose list size nothing else gives (default 4)",
    )
    bench.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="STEP",
        help="treat STEP's `when` as false (otherwise every `when` is taken as true)",
    )
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--html", metavar="FILE", help="write the simulated timeline as HTML")

    _add_batch(command)
    command("schema", "print the JSON Schema of a JSON plan")

    runs = command("runs", "list journaled runs (id, plan, status, started, cost)")
    runs.add_argument("--limit", type=_count(1), default=30, metavar="N")

    show = command("show", "print one journaled run: steps, results, costs, replans", "tools")
    show.add_argument("run", metavar="RUN", help="a run id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true", help="the run's result document")
    show.add_argument(
        "--html", metavar="FILE", help="write a self-contained HTML report: DAG, timeline, costs"
    )

    resume = command(
        "resume",
        "continue a killed, cancelled or budget-stopped run",
        *("tools", "config", "budget", "workspace", "json", "journaled"),
    )
    resume.add_argument("run", metavar="RUN")

    for verb in ("approve", "reject"):
        decide = command(
            verb, f"{verb} a step that waits for approval (then `planfile resume RUN`)"
        )
        decide.add_argument("run", metavar="RUN")
        decide.add_argument("step", metavar="STEP")

    tools = command("tools", "print the tool catalogue with typed signatures", "tools")
    tools.add_argument("--json", action="store_true", help="machine-readable catalogue")
    return parser


def _add_batch(command: Any) -> None:
    """`planfile batch` (engine/cli/batch_cmds.py): a run per row, with budgets."""
    batch = command(
        "batch",
        "run a plan once per row of a JSONL/CSV file, with per-run and daily budgets",
        *("tools", "from", "config", "tier", "workspace", "parallel", "journaled"),
    )
    batch.add_argument("plan", metavar="PLAN", nargs="?", help="the plan (or give --resume)")
    batch.add_argument(
        "--inputs", metavar="ROWS", help="rows of inputs: .jsonl (a JSON object a line) or .csv"
    )
    batch.add_argument("-o", "--output", metavar="FILE", help="results, a JSON line per row")
    batch.add_argument(
        "--max-runs",
        type=_count(1),
        default=16,
        metavar="N",
        help="rows running at once (default 16)",
    )
    batch.add_argument(
        "--budget-per-run", type=_usd, metavar="USD", help="each run stops before exceeding USD"
    )
    batch.add_argument(
        "--budget-per-day",
        type=_usd,
        metavar="USD",
        help="stop starting rows when the day's spending (all processes) reaches USD; the "
        "rest are queued (also [budget] daily_usd)",
    )
    batch.add_argument(
        "--resume", metavar="BATCH", help="continue this batch (by id; files as it started)"
    )
    batch.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="KEY=N",
        help="concurrency limit per tool, tier or model in each run (as for `run`)",
    )
    batch.add_argument(
        "--mock",
        metavar="REPLY",
        help="answer every model call with REPLY (litellm's mock response, priced as the "
        "model): a dry run of the batch",
    )
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    batch.add_argument(
        "--json", action="store_true", help="print the summary as JSON (no progress display)"
    )

"""Commands that run steps: `run`, `resume`, and `execute` (the run loop `ask` shares)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dsl.errors import ExitCode, collector_frozen
from engine.cli.common import (
    engine_from_args,
    exit_for_status,
    load_config,
    load_run_plan,
    parse_inputs,
    parse_tiers,
    registry,
)

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan
    from engine.api import Engine
    from engine.run.result import RunResult


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    tiers = parse_tiers(args.tier)
    checked, tools = load_run_plan(args, config, tiers)
    inputs = parse_inputs(args.input, checked)  # before the engine opens its stores
    engine = engine_from_args(args, config, tools)
    try:
        return execute(
            engine, checked, inputs, args.json, replan=args.replan, max_replans=args.max_replans
        )
    finally:
        engine.close()


def execute(
    engine: Engine,
    checked: CheckedPlan,
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
    """Run with the live display (or plain log), report, and map the status to an exit code.

    Errors (bad inputs, an unknown replan policy, a locked journal) propagate as
    `PlanfileError`s to `main`, which maps them to their exit codes.
    """
    from engine.cli.loop import run_async
    from engine.observe.display import PlainLog, StepTable, output_labels, print_summary

    holder: list[RunResult] = []
    live = sys.stdout.isatty() and not as_json
    table = StepTable() if live else None
    listener = table if table is not None else (None if as_json else PlainLog())
    options: dict[str, Any] = {
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

        # Live renders the table at each refresh (10 a second, on its own thread), not at
        # each event: a render walks every step's row, so one per event was O(steps²).
        with Live(get_renderable=table.render, refresh_per_second=10, transient=False):
            return await engine.run(checked, inputs, on_event=table, **options)

    def summary(result: RunResult) -> None:
        if extra_note:
            print(extra_note, file=sys.stderr)
        print_summary(
            result,
            expected_cost=checked.plan.expected_cost_usd,
            labels=output_labels(checked.plan),
        )
        for change in result.replans:
            added = ", ".join(_field(change, "added") or []) or "nothing (rejected)"
            print(
                f"  replanned after `{_field(change, 'after')}`: {_field(change, 'reason')} (+ {added})",
                file=sys.stderr,
            )

    with collector_set_for_a_run():
        try:
            with tools_print_to_stderr(as_json):
                result = run_async(go())
        except KeyboardInterrupt:
            if isinstance(listener, PlainLog):
                listener.flush()  # the lines of the steps that finished
            if holder:
                holder[0].cost_usd += extra_cost
                report(holder[0], as_json, summary)
            print("planfile: interrupted; the steps above had finished", file=sys.stderr)
            return ExitCode.INTERRUPTED
        result.cost_usd += extra_cost  # e.g. the planning call of `ask`
        report(result, as_json, summary)
    return exit_for_status(result.status)


@contextmanager
def collector_set_for_a_run() -> Iterator[None]:
    """The cyclic garbage collector out of a run's way, then as it was.

    What exists before the run (the imports, the plan, its graph) lives until the end:
    frozen, the collector's full scans skip it. Steps allocate many short-lived objects
    and few cycles: young collections every 50,000 allocations rather than 700. On
    10k-100k no-op steps collection fell from ~15 to ~4 µs a step (measured with
    gc.callbacks); cycles (a failed step's traceback) are still collected.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        with collector_frozen():
            yield
    finally:
        gc.set_threshold(*thresholds)


@contextmanager
def tools_print_to_stderr(as_json: bool) -> Iterator[None]:
    """With `--json`, stdout holds the document alone: what a tool prints while the run
    goes (Python's `print`, from any thread) goes to stderr instead."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _field(change: Any, name: str) -> Any:
    """A replan record's field, whether it is a record type or (journaled) a dict."""
    return change[name] if isinstance(change, dict) else getattr(change, name)


def report(result: RunResult, as_json: bool, summary: Callable[[RunResult], None]) -> None:
    if as_json:
        out = sys.stdout
        # A stdout in another encoding (PYTHONIOENCODING=latin-1) gets the same JSON
        # value with every non-ASCII character escaped, which any such encoding can write.
        utf8 = (getattr(out, "encoding", None) or "utf-8").lower().replace("-", "") == "utf8"
        _print_bytes(result.dumps_bytes(ascii_only=not utf8))
    else:
        summary(result)


def cmd_resume(args: argparse.Namespace) -> int:
    from engine.cli.loop import run_async
    from engine.observe.display import PlainLog, print_summary

    config = load_config(args.config)
    engine = engine_from_args(args, config, registry(args.tools))
    holder: list[RunResult] = []
    log = None if args.json else PlainLog()
    try:
        with collector_set_for_a_run(), tools_print_to_stderr(args.json):
            result = run_async(engine.resume(args.run, on_event=log, result_holder=holder))
    except KeyboardInterrupt:
        if log is not None:
            log.flush()  # the lines of the steps that finished, before this one
        print("planfile: interrupted; resume it again later", file=sys.stderr)
        return ExitCode.INTERRUPTED
    finally:
        if log is not None:
            log.flush()
        engine.close()
    report(result, args.json, print_summary)
    return exit_for_status(result.status)


def _print_bytes(document: bytes) -> None:
    """Print a UTF-8 document and a newline: to stdout's byte stream where it has one
    (megabytes for a big run, not decoded to be encoded again), else as text (the
    document is then ASCII where the stream's encoding is not UTF-8, see `report`)."""
    out = sys.stdout
    raw = getattr(out, "buffer", None)
    if raw is None or (out.encoding or "").lower().replace("-", "") != "utf8":
        print(document.decode(), file=out)
        return
    out.flush()  # what was printed as text before goes first
    raw.write(document)
    raw.write(b"\n")
    raw.flush()

"""`planfile batch`: one run of a plan per row of a JSONL/CSV file, with run and daily budgets.

The command reads and types every row first (bad rows reported with their line and
skipped), then runs the rest through one `Engine` (engine/batch/runner.py), appending one
result line per row. The batch's identity is its plan, inputs file and results file:
running the same command again continues it; `--resume BATCH` names it by id.
Exit codes: 0 every row succeeded, 1 some row failed, was skipped or waits for an
approval, or the cluster was lost (rows queued), 2 invalid command or inputs file, 3 the
daily budget stopped the batch (rows queued), 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsl.errors import ExitCode
from engine.cli.common import (
    engine_from_args,
    load_config,
    load_run_plan,
    parse_tiers,
    warn,
)
from engine.errors import UsageError

if TYPE_CHECKING:
    from engine.batch.progress import Counts
    from engine.batch.rows import Scan
    from engine.config import Config


def cmd_batch(args: argparse.Namespace) -> int:
    from engine.batch import rows
    from engine.batch.state import BatchRow, BatchStore, now_stamp

    config = _with_daily_budget(load_config(args.config), args.budget_per_day)
    store = BatchStore()
    store.open()  # a broken store is an error before anything runs
    try:
        stored = store.batch(args.resume) if args.resume else None
        if args.resume and stored is None:
            raise UsageError(
                f"--resume {args.resume}: no such batch in {store.path}",
                hint="the batch id is printed when a batch stops; or run the same command again",
            )
        plan_path = _pick("PLAN", args.plan, stored.plan_path if stored else None)
        inputs_path = _pick("--inputs", args.inputs, stored.inputs_path if stored else None)
        output = _pick("-o", args.output, stored.output_path if stored else None)
        tiers = parse_tiers(args.tier)
        checked, tools = load_run_plan(args, config, tiers, plan_path)
        found = rows.scan(Path(inputs_path), checked)
        _report_bad_rows(found)
        if found.good == 0:
            raise UsageError(
                f"--inputs {inputs_path}: no row to run ({found.rows} rows, all invalid)"
                if found.rows
                else f"--inputs {inputs_path}: the file holds no rows"
            )
        output_path = str(Path(output).resolve())
        plan_hash = hashlib.sha256(checked.plan_json.encode()).hexdigest()
        batch_id = hashlib.sha256(
            f"{plan_hash}\n{found.digest}\n{output_path}".encode()
        ).hexdigest()[:12]
        if stored is not None and stored.batch_id != batch_id:
            raise UsageError(
                f"--resume {args.resume}: batch {stored.batch_id} ran another plan, inputs "
                f"file or results file than these (the plan or {inputs_path} changed since)",
                hint="continue a batch with the files it started with; a changed file is a "
                "new batch (give it its own -o)",
            )
        from engine.batch.output import ResultsFile

        ResultsFile(Path(output_path), batch_id).check_path()  # before taking its lease
        note = store.acquire(output_path)
        if note is not None:
            warn(f"warning: {note}")
        try:
            batch = BatchRow(
                batch_id,
                str(Path(plan_path).resolve()),
                str(Path(inputs_path).resolve()),
                output_path,
                plan_hash,
                found.digest,
                now_stamp(),
                "running",
            )
            store.save_batch(batch)
            return _run(args, config, tools, checked, found, batch_id, store, output_path)
        finally:
            store.release(output_path)
    finally:
        store.close()


def _run(
    args: argparse.Namespace,
    config: Config,
    tools: Any,
    checked: Any,
    found: Scan,
    batch_id: str,
    store: Any,
    output_path: str,
) -> int:
    from engine.batch import rows
    from engine.batch.output import ResultsFile
    from engine.batch.progress import Counts, Display
    from engine.batch.runner import BatchRunner
    from engine.cli.loop import run_async

    results = ResultsFile(Path(output_path), batch_id)
    done = results.read_done(warn, known=store.has_rows(batch_id))
    if results.cut:
        # The cut line's row finished: its run is continued from the journal (it rebuilds
        # the result at no cost). A line cut before its row number: the one row missing.
        cut = (
            {results.cut_row} if results.cut_row is not None else store.missing_rows(batch_id, done)
        )
        if len(cut) == 1:
            store.requeue(batch_id, cut)
    lost = store.missing(batch_id, done)
    if lost:
        from engine.batch.output import ResultsFileError

        raise ResultsFileError(
            f"{output_path} lacks the results of {lost:,} rows this batch finished (the "
            "file was deleted, cut or replaced); planfile does not run them again",
            hint="put the results file back, or write to a new file with -o to run the "
            "whole batch again (paid again)",
        )
    results.open()  # an unwritable -o is an error before any engine or row starts
    resume = {row: run for row, run in store.unfinished(batch_id).items() if row not in done}
    args.budget = args.budget_per_run  # engine_from_args reads the run budget from here
    engine = engine_from_args(args, config, tools)
    if not args.approve_all:
        engine.approver = None  # no prompts from 16 runs at once: such rows wait (queued)
    if args.mock is not None:
        engine.settings["mock_response"] = args.mock
    counts = Counts(total=found.good, skipped=len(found.bad), done_before=len(done))
    display = Display.choose(counts, args.quiet or args.json)
    runner = BatchRunner(
        engine,
        checked,
        batch_id,
        store,
        results,
        max_runs=args.max_runs,
        daily_usd=config.budget.daily_usd,
        counts=counts,
    )
    interrupted = False
    display.start()
    try:
        run_async(runner.run(rows.rows(found, checked), done, resume))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        display.stop()
        results.close()
        engine.close()
    status = "interrupted" if interrupted else ("done" if counts.remaining == 0 else "queued")
    store.set_status(batch_id, status)
    _summary(args, batch_id, counts, status, runner, output_path, config)
    if interrupted:
        return ExitCode.INTERRUPTED
    if counts.remaining and runner.daily_stop:
        return ExitCode.BUDGET
    if counts.remaining or counts.failed or counts.skipped or _failed_before(results, done):
        return ExitCode.FAILED
    return ExitCode.OK


def _failed_before(results: Any, done: set[int]) -> bool:
    """Whether a row finished by an earlier run of the batch did not succeed."""
    if not done:
        return False
    with open(results.path, "rb") as file:
        return any(b'"status":"succeeded"' not in line for line in file if line.strip())


def _pick(flag: str, given: str | None, stored: str | None) -> str:
    if given is not None:
        return given
    if stored is not None:
        return stored
    raise UsageError(
        f"batch needs {flag}", hint="planfile batch PLAN --inputs ROWS.jsonl -o RESULTS.jsonl"
    )


def _with_daily_budget(config: Config, daily: float | None) -> Config:
    if daily is None:
        return config
    budget = config.budget.model_copy(update={"daily_usd": daily})
    return config.model_copy(update={"budget": budget})


def _report_bad_rows(found: Scan) -> None:
    for problem in found.problems:
        print(problem.render(), file=sys.stderr)
    more = len(found.bad) - len({p.location.line for p in found.problems})
    if more > 0:
        print(f"{found.path}: ... and {more:,} more bad rows", file=sys.stderr)
    if found.bad:
        print(
            f"{found.path}: {len(found.bad):,} of {found.rows:,} rows are invalid and "
            "will be skipped",
            file=sys.stderr,
        )


def _summary(
    args: argparse.Namespace,
    batch_id: str,
    counts: Counts,
    status: str,
    runner: Any,
    output_path: str,
    config: Config,
) -> None:
    done = counts.done_before + counts.done
    queued = counts.remaining
    if args.json:
        doc = {
            "batch": batch_id,
            "status": status,
            "rows": counts.total + counts.skipped,
            "done": done,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "done_before": counts.done_before,
            "skipped": counts.skipped,
            "queued": queued,
            "spent_usd": round(counts.spent_usd, 8),
            "results": output_path,
        }
        print(json.dumps(doc, indent=2))
        return
    line = (
        f"batch {batch_id}: {done:,} of {counts.total:,} rows done ({counts.succeeded:,} "
        f"succeeded, {counts.failed:,} failed this time"
        + (f", {counts.done_before:,} before" if counts.done_before else "")
        + f"), {counts.skipped:,} skipped (invalid), {queued:,} queued; "
        f"${counts.spent_usd:.6f} spent; results in {output_path}"
    )
    print(line, file=sys.stderr)
    if status == "interrupted":
        print(
            f"planfile: interrupted; {queued:,} rows queued: run the same command again "
            f"(or `planfile batch --resume {batch_id}`) to continue",
            file=sys.stderr,
        )
    elif queued and runner.cluster_lost is not None:
        print(
            f"batch {batch_id}: the cluster was lost ({runner.cluster_lost}); {queued:,} rows "
            "queued (none written as failed). Restart the cluster, then run the same command "
            f"again (or `planfile batch --resume {batch_id}`): stopped rows resume from "
            "their journal",
            file=sys.stderr,
        )
    elif queued and runner.daily_stop:
        print(
            f"batch {batch_id}: daily budget exceeded (${config.budget.daily_usd:g} a day); "
            f"queuing the {queued:,} rows not done. Run the same command again (the next "
            f"day, or with a larger --budget-per-day), or `planfile batch --resume "
            f"{batch_id}`, to continue",
            file=sys.stderr,
        )
    elif queued:
        print(
            f"batch {batch_id}: {queued:,} rows wait for an approval (or their run "
            "stopped). Run the same command again with --approve-all, or approve each "
            "run's step (`planfile runs` lists them awaiting approval; `planfile approve "
            f"RUN STEP`) and run the same command (or `planfile batch --resume {batch_id}`)",
            file=sys.stderr,
        )

"""`planfile batch`: typed rows, streamed results, run and daily budgets, queue and continue,
SIGKILL and Ctrl-C, one batch per results file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main

TESTS = Path(__file__).parent
KILL_TOOLS = TESTS / "kill_tools.py"

# Two model steps pinned to a priced model (mock replies: 10 tokens in, 20 out at
# $1,000 per million each way = $0.03 a call, $0.06 a row).
MODEL_PLAN = """plan priced "two model calls a row" expected_cost 0.05
input topic: str
step a: str = llm(model: "openai/gpt-4o-mini", prompt: "one {{ topic }}", max_tokens: 20)
step b: str = llm(model: "openai/gpt-4o-mini", prompt: "two {{ a }}", max_tokens: 20)
output b
"""
CONFIG = """[models."openai/gpt-4o-mini"]
api_key = "sk-test"
input_cost_per_million = 1000
output_cost_per_million = 1000
"""
CALL_USD = 0.03

TICK_PLAN = """plan ticks "slow rows"
input key: str
input seconds: float = 0.3
step a: str = tick(key: "{{ key }}-a", seconds: seconds)
step b: str = tick(key: "{{ key }}-b", seconds: seconds)
    after a
output b
"""

CALC_PLAN = """plan calc "typed inputs"
input salary: float
input city: str = "Austin"
input n: int = 2
step a: float = calculate(expression: "{{ salary }} * {{ n }}")
output a
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ledger_calls(home: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(home / "ledger.sqlite") as db:
        return db.execute("SELECT run_id, step, cost_usd FROM calls").fetchall()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["batch", *args])
    out, err = capsys.readouterr()
    return code, out, err


def planfile(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def priced(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "priced.plan", MODEL_PLAN), write(tmp_path / "planfile.toml", CONFIG)


# --- rows ------------------------------------------------------------------------------


def test_bad_jsonl_rows_are_located_and_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every bad row is reported with its line (and the field's column) and skipped;
    the good rows run; the summary counts the skipped ones; the exit code is 1."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = write(
        tmp_path / "rows.jsonl",
        '{"salary": 100}\n'
        '{"salary": "lots"}\n'
        "\n"
        "[1, 2]\n"
        '{"salary": 1, "bogus": 2}\n'
        "{not json\n"
        '{"salary": NaN}\n'
        '{"salary": 7, "n": 3}\n',
    )
    out = tmp_path / "out.jsonl"
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
    assert code == 1
    assert f"{rows}:2:2: error: input `salary` must be `float`" in err
    assert f"{rows}:4:1: error: a row must be a JSON object" in err
    assert f"{rows}:5:15: error: unknown input `bogus`" in err
    assert f"{rows}:6:2: error: invalid JSON" in err
    assert f"{rows}:7:1: error: invalid number: `NaN`" in err
    assert "5 of 7 rows are invalid and will be skipped" in err
    assert "2 of 2 rows done" in err and "5 skipped (invalid)" in err
    lines = results(out)
    assert sorted((line["row"], line["outputs"]) for line in lines) == [
        (1, {"a": 200.0}),
        (8, {"a": 21.0}),
    ]


def test_csv_rows_are_typed_by_the_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """CSV cells are text for `str` inputs and JSON otherwise; an empty cell takes the
    default; a quoted cell may span lines; errors give line and column."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = write(
        tmp_path / "rows.csv",
        'salary,city,n\n100,Paris,3\nabc,Rome,\n5,"two\nlines",\n,Oslo,1\n1,2,3,4\n',
    )
    out = tmp_path / "out.jsonl"
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
    assert code == 1
    assert f"{rows}:3:1: error: input `salary` must be `float`" in err
    assert f"{rows}:6:1: error: input `salary` (float) is required" in err
    assert f"{rows}:7:4: error: the row has 4 cells" in err
    lines = {line["row"]: line for line in results(out)}
    assert {row: line["outputs"] for row, line in lines.items()} == {
        2: {"a": 300.0},
        4: {"a": 10.0},
    }


def test_csv_summary_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--json prints one summary document: rows, done, skipped, queued, spent."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = write(tmp_path / "rows.csv", "salary\n1\nx\n3\n")
    out = tmp_path / "out.jsonl"
    code, stdout, _ = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "--json")
    doc = json.loads(stdout)
    assert code == 1
    assert (doc["rows"], doc["done"], doc["skipped"], doc["queued"]) == (3, 2, 1, 0)


def test_an_inputs_file_with_no_good_row_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = write(tmp_path / "rows.jsonl", '{"salary": "x"}\n')
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(tmp_path / "o.jsonl"))
    assert code == 2 and "no row to run" in err
    code, _, err = cli(capsys, str(plan), "--inputs", str(tmp_path / "rows.txt"), "-o", "o")
    assert code == 2 and "unknown format" in err


# --- results ---------------------------------------------------------------------------


def test_result_lines_carry_the_metrics(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, priced: tuple[Path, Path]
) -> None:
    """Each line: batch, row, run id, status, outputs, cost, expected cost, planning and
    execution time, per-step costs. A second run of the command does nothing new."""
    plan, config = priced
    rows = jsonl(tmp_path / "rows.jsonl", [{"topic": f"t{i}"} for i in range(5)])
    out = tmp_path / "out.jsonl"
    args = [str(plan), "--inputs", str(rows), "-o", str(out), "--config", str(config)]
    code, _, err = cli(capsys, *args, "--mock", "hi", "-q")
    assert code == 0, err
    lines = results(out)
    assert sorted(line["row"] for line in lines) == [1, 2, 3, 4, 5]
    line = lines[0]
    assert line["status"] == "succeeded" and line["outputs"] == {"b": "hi"}
    assert line["cost_usd"] == pytest.approx(2 * CALL_USD)
    assert line["expected_cost_usd"] == 0.05
    assert line["cost_over_expected"] == pytest.approx(1.2)
    assert line["step_costs"] == {"a": pytest.approx(CALL_USD), "b": pytest.approx(CALL_USD)}
    assert line["execution_s"] >= 0 and line["planning_s"] >= 0 and line["run_id"]
    assert "5 of 5 rows done" in err and "$0.300000 spent" in err
    # The same command again: nothing runs, nothing is paid.
    code, _, err = cli(capsys, *args, "--mock", "hi", "-q")
    assert code == 0 and len(results(out)) == 5
    assert "0 succeeded" in err and "5 before" in err


def test_results_stream_while_the_batch_runs(tmp_path: Path) -> None:
    """A row's line is in the file as soon as it ends, not at the end of the batch."""
    plan = write(tmp_path / "ticks.plan", TICK_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"key": f"k{i}", "seconds": 0.4} for i in range(4)])
    out = tmp_path / "out.jsonl"
    proc = planfile(
        [
            *("batch", str(plan), "--inputs", str(rows), "-o", str(out), "--max-runs", "1"),
            *("--tools", str(KILL_TOOLS), "--workspace", str(tmp_path)),
        ],
        tmp_path,
    )
    seen_early = False
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and results(out):
            seen_early = proc.poll() is None
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert seen_early
    assert len(results(out)) == 4


def test_another_batchs_results_file_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A results file of another batch, or one that is not a results file, is a clear
    error; it is never overwritten."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}])
    other = jsonl(tmp_path / "other.jsonl", [{"salary": 2}])
    out = tmp_path / "out.jsonl"
    assert cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")[0] == 0
    before = out.read_bytes()
    code, _, err = cli(capsys, str(plan), "--inputs", str(other), "-o", str(out), "-q")
    assert code == 2 and "holds results of batch" in err and "--resume" in err
    assert out.read_bytes() == before
    junk = write(tmp_path / "junk.jsonl", "hello\n")
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(junk), "-q")
    assert code == 2 and "not a batch result line" in err and junk.read_text() == "hello\n"


# --- budgets ---------------------------------------------------------------------------


def test_budget_per_run_stops_each_run_not_the_batch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, priced: tuple[Path, Path]
) -> None:
    """A run that would pass --budget-per-run stops (its row's status budget_exceeded);
    the other rows still run; no run spends more than its budget."""
    plan, config = priced
    rows = jsonl(tmp_path / "rows.jsonl", [{"topic": f"t{i}"} for i in range(4)])
    out = tmp_path / "out.jsonl"
    code, _, err = cli(
        capsys,
        *(str(plan), "--inputs", str(rows), "-o", str(out), "--config", str(config)),
        *("--mock", "hi", "--budget-per-run", "0.05", "-q"),
    )
    assert code == 1, err
    lines = results(out)
    assert len(lines) == 4
    for line in lines:
        assert line["status"] == "budget_exceeded"
        assert line["cost_usd"] <= 0.05
        assert "run budget" in str(line["error"])


def test_daily_budget_queues_rows_and_the_same_command_continues(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    priced: tuple[Path, Path],
    planfile_home: Path,
) -> None:
    """The daily budget stops the batch with exit 3 and the rows queued; the same
    command with a raised budget finishes them: no row twice, no step paid twice."""
    plan, config = priced
    rows = jsonl(tmp_path / "rows.jsonl", [{"topic": f"t{i}"} for i in range(10)])
    out = tmp_path / "out.jsonl"
    args = [str(plan), "--inputs", str(rows), "-o", str(out), "--config", str(config)]
    code, _, err = cli(capsys, *args, "--mock", "hi", "--budget-per-day", "0.25", "--max-runs", "2")
    assert code == 3, err
    first = results(out)
    assert 0 < len(first) < 10
    assert f"{10 - len(first)} queued" in err and "daily budget exceeded" in err
    spent = sum(cost for _, _, cost in ledger_calls(planfile_home))
    # At most one call in flight per running row past the budget.
    assert spent <= 0.25 + 2 * CALL_USD + 1e-9

    code, _, err = cli(capsys, *args, "--mock", "hi", "--budget-per-day", "10", "-q")
    assert code == 0, err
    lines = results(out)
    assert sorted(line["row"] for line in lines) == list(range(1, 11))
    calls = ledger_calls(planfile_home)
    # Each row's two steps were paid once: a row stopped mid-way was resumed, not rerun.
    assert len(calls) == 20
    assert len({(run, step) for run, step, _ in calls}) == 20
    assert {line["run_id"] for line in lines} == {run for run, _, _ in calls}


def test_daily_budget_is_shared_by_two_processes(tmp_path: Path, priced: tuple[Path, Path]) -> None:
    """Two batches at once, one PLANFILE_HOME: together they stop at the daily budget."""
    plan, config = priced
    procs = []
    for name in ("one", "two"):
        rows = jsonl(tmp_path / f"{name}.jsonl", [{"topic": f"{name}{i}"} for i in range(20)])
        procs.append(
            planfile(
                [
                    *(
                        "batch",
                        str(plan),
                        "--inputs",
                        str(rows),
                        "-o",
                        str(tmp_path / f"{name}.out"),
                    ),
                    *("--config", str(config), "--mock", "hi", "--budget-per-day", "0.5"),
                    *("--max-runs", "2", "-q"),
                ],
                tmp_path,
            )
        )
    codes = []
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        codes.append(proc.returncode)
        assert proc.returncode in (0, 3), err
    done = sum(len(results(tmp_path / f"{n}.out")) for n in ("one", "two"))
    home = Path(os.environ["PLANFILE_HOME"])
    spent = sum(cost for _, _, cost in ledger_calls(home))
    assert 3 in codes and done < 40
    # Each process may overshoot by one call per running row (2 rows each).
    assert spent <= 0.5 + 4 * CALL_USD + 1e-9


# --- stops: a second batch, SIGKILL, Ctrl-C ---------------------------------------------


def tick_batch(tmp_path: Path, rows: int, seconds: float, *extra: str) -> tuple[list[str], Path]:
    plan = write(tmp_path / "ticks.plan", TICK_PLAN)
    inputs = jsonl(
        tmp_path / "rows.jsonl", [{"key": f"k{i}", "seconds": seconds} for i in range(rows)]
    )
    out = tmp_path / "out.jsonl"
    args = ["batch", str(plan), "--inputs", str(inputs), "-o", str(out)]
    return [*args, "--tools", str(KILL_TOOLS), "--workspace", str(tmp_path), *extra], out


def ticks(tmp_path: Path) -> list[str]:
    log = tmp_path / "ticks.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def wait_for_lines(out: Path, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and len(results(out)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} result lines: {proc.poll()}")


def test_a_second_batch_on_the_same_results_file_is_refused(tmp_path: Path) -> None:
    args, out = tick_batch(tmp_path, 6, 0.5, "--max-runs", "1")
    first = planfile(args, tmp_path)
    try:
        wait_for_lines(out, 1, first)
        second = planfile(args, tmp_path)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert f"another batch is writing {out}" in err and "process" in err
    finally:
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err


@pytest.mark.slow
def test_sigkill_then_rerun_finishes_without_rerunning_finished_rows(tmp_path: Path) -> None:
    """A batch killed with SIGKILL: the same command finishes it; rows finished before
    the kill are not run again, and every row has exactly one result line."""
    args, out = tick_batch(tmp_path, 12, 0.3, "--max-runs", "3")
    proc = planfile(args, tmp_path)
    wait_for_lines(out, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished_before = {line["row"] for line in results(out)}
    before = ticks(tmp_path)
    again = planfile(args, tmp_path)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    lines = results(out)
    assert sorted(line["row"] for line in lines) == list(range(1, 13))
    after = ticks(tmp_path)[len(before) :]
    for row in finished_before:
        key = f"k{row - 1}"
        assert f"{key}-a" not in after and f"{key}-b" not in after
    # Steps that were running at the kill may run again (at-least-once); no other.
    assert len(after) <= 2 * (12 - len(finished_before))


@pytest.mark.slow
def test_ctrl_c_queues_the_running_rows_and_the_rerun_finishes(tmp_path: Path) -> None:
    """SIGINT: exit 130, the summary says how many rows are queued; running the command
    again finishes them, each row once, and no finished step runs again."""
    args, out = tick_batch(tmp_path, 8, 0.4, "--max-runs", "2")
    proc = planfile(args, tmp_path)
    wait_for_lines(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "queued" in err
    done = {line["row"] for line in results(out)}
    ran = ticks(tmp_path)
    again = planfile(args, tmp_path)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert sorted(line["row"] for line in results(out)) == list(range(1, 9))
    rerun = ticks(tmp_path)[len(ran) :]
    # A step that finished before Ctrl-C is never run again (only interrupted ones).
    finished_steps = {key for key in ran if ran.count(key) == 1}
    for row in done:
        assert f"k{row - 1}-a" not in rerun and f"k{row - 1}-b" not in rerun
    assert len(rerun) <= 2 * (8 - len(done))
    assert finished_steps  # something had run


def test_resume_names_a_batch_by_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, priced: tuple[Path, Path]
) -> None:
    """`--resume BATCH` continues a batch from its id alone; an unknown id is an error."""
    plan, config = priced
    rows = jsonl(tmp_path / "rows.jsonl", [{"topic": f"t{i}"} for i in range(6)])
    out = tmp_path / "out.jsonl"
    args = [str(plan), "--inputs", str(rows), "-o", str(out), "--config", str(config)]
    code, _, err = cli(capsys, *args, "--mock", "hi", "--budget-per-day", "0.15", "--max-runs", "1")
    assert code == 3, err
    batch = results(out)[0]["batch"]
    assert f"--resume {batch}" in err
    code, _, err = cli(
        capsys, "--resume", str(batch), "--config", str(config), "--mock", "hi", "-q"
    )
    assert code == 0, err
    assert sorted(line["row"] for line in results(out)) == list(range(1, 7))
    code, _, err = cli(capsys, "--resume", "nosuchbatch")
    assert code == 2 and "no such batch" in err


# --- stores and files ------------------------------------------------------------------


def test_a_broken_batch_store_is_refused_not_replaced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, planfile_home: Path
) -> None:
    """A damaged batches.sqlite is exit 2 naming the file; it is left as it was."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}])
    store = planfile_home / "batches.sqlite"
    store.write_bytes(b"not a database at all" * 100)
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(tmp_path / "o.jsonl"))
    assert code == 2 and f"batch store {store} is unusable" in err and "move it aside" in err
    assert store.read_bytes() == b"not a database at all" * 100


def test_a_results_line_cut_short_by_a_kill_is_removed_and_its_row_rerun(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, planfile_home: Path
) -> None:
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}, {"salary": 2}])
    out = tmp_path / "out.jsonl"
    assert cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")[0] == 0
    whole = out.read_text().splitlines(keepends=True)
    # The kill came mid-write: the line is cut, and the store never heard the row end.
    out.write_text(whole[0] + whole[1][:25])
    cut_row = json.loads(whole[1])["row"]
    with sqlite3.connect(planfile_home / "batches.sqlite") as db:
        db.execute("UPDATE batch_rows SET state = 'running' WHERE row = ?", (cut_row,))
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
    assert code == 0 and "the last line was cut short" in err
    assert sorted(line["row"] for line in results(out)) == [1, 2]


def test_progress_shows_done_failed_running_spent_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live bar (rich) and the plain line show the same counters; quiet shows none."""
    import io

    from engine.batch import progress

    counts = progress.Counts(total=10, skipped=1, done_before=2)
    counts.succeeded, counts.failed, counts.running, counts.spent_usd = 3, 1, 2, 0.0123
    live = io.StringIO()
    display = progress.Display(counts, "live", live)
    display.start()
    display.stop()
    shown = " ".join(live.getvalue().split())  # rich wraps at the console's width
    assert "━" in shown and "6/10 rows done (3 ok, 1 failed), 2 running, $0.012300 spent" in shown
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    plain = io.StringIO()
    display = progress.Display(counts, "plain", plain)
    display.start()
    display.tick()
    assert plain.getvalue().startswith("batch: 6/10 rows done") and "runs/s" in plain.getvalue()
    quiet = progress.Display.choose(counts, quiet=True)
    assert quiet.mode == "none"


def test_a_deleted_results_file_is_an_error_not_a_rerun(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Rows the batch finished are never run (and paid) again because their results
    file went missing: that is an error saying what to do."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}, {"salary": 2}])
    out = tmp_path / "out.jsonl"
    assert cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")[0] == 0
    out.unlink()
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
    assert code == 2 and "lacks the results of 2 rows" in err and not out.exists()


def test_runs_on_one_ledger_share_the_days_reservations(planfile_home: Path) -> None:
    """Two runs of one engine (one ledger) cannot both reserve the day's last dollar:
    the second is refused before its call, so no call is paid past the daily budget."""
    from engine.errors import BudgetExceeded
    from engine.models.ledger import BudgetGuard, Ledger

    ledger = Ledger()
    first, second = BudgetGuard(ledger, None, 1.0), BudgetGuard(ledger, None, 1.0)
    held = first.reserve(0.6, "m")
    with pytest.raises(BudgetExceeded, match="daily budget"):
        second.reserve(0.6, "m")
    assert second.remaining() == pytest.approx(0.4)
    first.settle(held, 0.5)
    ledger.record("r", "s", "m", 1, 1, 0.5)
    assert second.reserve(0.5, "m").amount == 0.5 and ledger.in_flight == pytest.approx(0.5)


@pytest.mark.parametrize("where", ["folder", "no-such-dir-under-proc"])
def test_an_unusable_results_path_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
) -> None:
    """`-o` naming a folder, or a file planfile cannot create, is the user's mistake:
    exit 2 naming the path and the reason, never "internal error"."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}])
    out = tmp_path if where == "folder" else Path("/proc/nope/out.jsonl")
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
    assert code == 2, err
    assert f"-o {out}:" in err and "internal error" not in err and "Traceback" not in err


def test_a_full_disk_while_writing_results_is_a_clear_error(tmp_path: Path) -> None:
    """A write the disk refuses stops the batch with the path and the reason."""
    from engine.batch.output import ResultsFile, ResultsFileError

    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    results_file = ResultsFile(Path("/dev/full"), "b1")
    with pytest.raises(ResultsFileError, match=r"-o /dev/full: No space left on device"):
        results_file.write({"batch": "b1", "row": 1})
    results_file.close()


def test_plain_progress_lines_come_from_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that take minutes still show the batch is alive: plain lines go out on a
    timer, with no row starting or ending in between."""
    import io

    from engine.batch import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.05)
    stream = io.StringIO()
    display = progress.Display(progress.Counts(total=3, running=1), progress.Mode.PLAIN, stream)
    display.start()
    try:
        deadline = time.monotonic() + 10
        while stream.getvalue().count("batch: ") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        display.stop()
    assert stream.getvalue().count("batch: 0/3 rows done") >= 2


def test_a_leased_results_file_names_its_owner(planfile_home: Path, tmp_path: Path) -> None:
    """The refusal names the owning process from the lease's fields."""
    from engine.batch.state import BatchBusy, BatchStore

    first, second = BatchStore(), BatchStore()
    first.open()
    second.open()
    try:
        first.acquire(str(tmp_path / "out.jsonl"))
        with pytest.raises(BatchBusy, match=rf"process {os.getpid()} on \S+ \(since "):
            second.acquire(str(tmp_path / "out.jsonl"))
    finally:
        first.release(str(tmp_path / "out.jsonl"))
        first.close()
        second.close()


def test_resuming_a_row_whose_run_never_reached_the_journal_starts_it_afresh(
    planfile_home: Path,
) -> None:
    """A row killed before its run was journaled is run from the start (NoSuchRun)."""
    from engine.store.journal import Journal, JournalError, NoSuchRun

    journal = Journal()
    with pytest.raises(NoSuchRun, match="no run `nope`"):
        journal.run("nope")
    assert issubclass(NoSuchRun, JournalError)


def test_a_row_missing_a_required_input_says_to_add_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The problem is moved to the row: its field, and a hint about the row (not the
    `--input` flag of `planfile run`)."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}, {"city": "Paris"}])
    out = tmp_path / "out.jsonl"
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
    assert code == 1, err
    assert (
        f"{rows}:2:1: error: input `salary` (float) is required (field `salary` of the row)" in err
    )
    assert "add `salary` to the row" in err and "pass --input" not in err


def test_a_line_not_of_this_batch_is_refused_and_the_file_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A user's file with one line and no final newline is not a cut-short result: exit 2,
    not a byte changed (QA: the line was removed and the results written in)."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}])
    for text in ('{"x": 5}', '{"batch":"', "{"):
        other = write(tmp_path / "other.jsonl", text)
        code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(other), "-q")
        assert code == 2, err
        assert f"{other}:1: not a batch result line" in err and "it was not changed" in err
        assert other.read_text() == text


def test_a_hand_cut_last_line_of_a_finished_row_is_rebuilt_from_its_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The row's run finished: the rerun continues it from the journal (same run id) and
    writes its line again; no contradictory "does not run them again" error."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}, {"salary": 2}])
    out = tmp_path / "out.jsonl"
    assert cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")[0] == 0
    whole = out.read_text().splitlines(keepends=True)
    before = json.loads(whole[1])
    for cut in (60, 12):  # after the row number, then before it
        out.write_text(whole[0] + whole[1][:cut])
        code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
        assert code == 0, err
        assert "the last line was cut short" in err and "lacks the results" not in err
        again = {line["row"]: line for line in results(out)}
        assert sorted(again) == [1, 2]
        assert again[before["row"]]["run_id"] == before["run_id"]
        assert again[before["row"]]["outputs"] == before["outputs"]
        whole = out.read_text().splitlines(keepends=True)


def test_results_files_are_read_with_a_line_limit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A huge line (or /dev/full, an endless device) is an error, not gigabytes of memory."""
    from engine.batch import output

    monkeypatch.setattr(output, "MAX_LINE_BYTES", 1000)
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}])
    big = write(tmp_path / "big.jsonl", "x" * 5000)
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(big), "-q")
    assert code == 2 and f"{big}:1: the line is longer than 1,000 bytes" in err
    assert big.read_text() == "x" * 5000
    for path in ("/dev/full", "/dev/null"):
        if Path(path).exists():
            code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", path, "-q")
            assert code == 2 and f"-o {path}: not a regular file" in err, err


def test_an_oversized_result_line_is_written_without_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line the batch could not read back is never written: its outputs stay in the journal."""
    from engine.batch import output

    monkeypatch.setattr(output, "MAX_LINE_BYTES", 500)
    file = output.ResultsFile(tmp_path / "out.jsonl", "b1")
    file.write({"batch": "b1", "row": 1, "run_id": "r1", "outputs": {"a": "x" * 1000}})
    file.close()
    (line,) = results(tmp_path / "out.jsonl")
    assert line["outputs"] == {} and "planfile show r1 --json" in line["outputs_omitted"]
    assert file.read_done(print, known=True) == {1}


def test_an_empty_results_path_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": 1}])
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", "", "-q")
    assert code == 2 and "is a folder, not a file" in err and "internal error" not in err


def test_an_overlong_csv_row_is_skipped_and_big_cells_are_accepted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Like JSONL: a row over 1 MiB is reported and skipped, the others run; a cell over
    Python's default 128 KiB (under the documented 1 MiB) is read."""
    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = write(
        tmp_path / "rows.csv",
        f"salary,city\n1,{'c' * 200_000}\n2,{'x' * (1 << 20)}\n3,Paris\n",
    )
    out = tmp_path / "out.jsonl"
    code, _, err = cli(capsys, str(plan), "--inputs", str(rows), "-o", str(out), "-q")
    assert code == 1, err  # a row was skipped
    assert f"{rows}:3:1: error: the row is longer than 1,048,576 bytes" in err
    assert sorted(line["row"] for line in results(out)) == [2, 4]


def test_a_lost_cluster_queues_the_rows_and_the_rerun_resumes_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row whose run stopped because the cluster was lost is queued, not written as
    failed; no new row starts; exit 1; the same command continues the batch."""
    from engine.backends.dask import ClusterUnavailable
    from engine.batch.runner import BatchRunner
    from engine.run.result import RunResult, RunStatus, StopReason

    plan = write(tmp_path / "calc.plan", CALC_PLAN)
    rows = jsonl(tmp_path / "rows.jsonl", [{"salary": n} for n in range(1, 7)])
    out = tmp_path / "out.jsonl"
    real = BatchRunner._start
    started: list[dict[str, Any]] = []

    async def losing(self: BatchRunner, values: dict[str, Any], run_id: Any, hooks: Any) -> Any:
        started.append(values)
        if len(started) == 2:  # the scheduler dies during the second row's run
            hooks[0].on_open("lost-run")
            return RunResult(
                "lost-run",
                "calc",
                RunStatus.FAILED,
                error="lost the Dask scheduler",
                stop_reason=StopReason.CLUSTER,
            )
        if len(started) > 2:
            raise ClusterUnavailable("cannot reach the Dask scheduler")
        return await real(self, values, run_id, hooks)

    monkeypatch.setattr(BatchRunner, "_start", losing)
    args = (str(plan), "--inputs", str(rows), "-o", str(out), "--max-runs", "1")
    code, _, err = cli(capsys, *args)
    assert code == 1, err
    assert len(started) == 2  # no row started after the loss
    assert [line["row"] for line in results(out)] == [1]
    assert "the cluster was lost (lost the Dask scheduler); 5 rows queued" in err
    monkeypatch.setattr(BatchRunner, "_start", real)
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    lines = results(out)
    assert sorted(line["row"] for line in lines) == list(range(1, 7))
    assert all(line["status"] == "succeeded" for line in lines)


def test_rows_waiting_for_an_approval_say_how_to_approve(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not "the next day, or a larger --budget-per-day": that is the daily budget's advice."""
    import argparse
    from types import SimpleNamespace

    from engine.batch.progress import Counts
    from engine.cli.batch_cmds import _summary
    from engine.config import Config

    counts = Counts(total=3)
    runner = SimpleNamespace(cluster_lost=None, daily_stop=False)
    args = argparse.Namespace(json=False)
    _summary(args, "b1", counts, "queued", runner, "out.jsonl", Config())
    err = capsys.readouterr().err
    assert "--approve-all" in err and "planfile approve RUN STEP" in err
    assert "next day" not in err and "--budget-per-day" not in err

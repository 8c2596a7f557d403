"""Stores: a broken file is a clear error before any spending; one owner per run (issue 11,
items 7 and 8).

Every store (journal, ledger, step cache, plan cache, search index) is tried with a
garbage file and a 0-byte file. The journal and the ledger refuse (they hold runs and
spending); the caches are moved aside and rebuilt with a warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine import Engine, load_plan
from engine.config import Config, ModelSettings
from engine.errors import StoreError
from engine.models.ledger import Ledger, LedgerError
from engine.store import lease
from engine.store.journal import Journal, JournalError, RunLeased
from engine.store.plan_cache import PlanCache
from engine.store.step_cache import MISS, StepCache
from stdlib_tools.search import CorpusIndex

from .scripted_provider import registered

PROVIDER = registered()
BROKEN = {"garbage": b"this is not sqlite, just bytes\n" * 200, "empty": b""}
PRICED = {"pftest/standard": ModelSettings(input_cost_per_million=3.0, output_cost_per_million=3.0)}
LLM_PLAN = 'step a = llm(tier: standard, prompt: "x", max_tokens: 10)'


@pytest.fixture(autouse=True)
def fresh_provider() -> None:
    PROVIDER.reset()


# --- item 8: broken files ---------------------------------------------------------------


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_ledger_refuses_before_the_first_model_call(
    kind: str, planfile_home: Path
) -> None:
    """A 0-byte ledger once read as a new one (the day's spending reset to 0); a garbage
    one failed after the paid call. Both now fail before any call, naming the file."""
    path = planfile_home / "ledger.sqlite"
    path.write_bytes(BROKEN[kind])
    journal = Journal()
    engine = Engine(
        config=Config(tiers={"standard": "pftest/standard"}, models=PRICED), journal=journal
    )
    checked = load_plan(LLM_PLAN, tiers=["standard"])
    with pytest.raises(LedgerError, match=r"cost ledger .*ledger\.sqlite is unusable") as err:
        engine.run_sync(checked)
    assert "mv " in (err.value.hint or "")
    assert PROVIDER.calls == []
    assert journal.runs() == []  # refused before the run was journaled: nothing `running`
    assert path.read_bytes() == BROKEN[kind]  # never replaced


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_ledger_is_exit_2_with_no_traceback(
    kind: str, planfile_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli.main import main

    (planfile_home / "ledger.sqlite").write_bytes(BROKEN[kind])
    (tmp_path / "planfile.toml").write_text(
        '[tiers]\nstandard = "pftest/standard"\n[models."pftest/standard"]\n'
        "input_cost_per_million = 3.0\noutput_cost_per_million = 3.0\n"
    )
    plan = tmp_path / "p.plan"
    plan.write_text(LLM_PLAN)
    code = main(["run", str(plan), "--config", str(tmp_path / "planfile.toml")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "ledger.sqlite" in err and "Traceback" not in err and "internal error" not in err
    assert PROVIDER.calls == []


def test_a_ledger_that_breaks_mid_run_ends_the_run(planfile_home: Path, tmp_path: Path) -> None:
    """The call's record cannot be written: the step fails with the ledger's message, the
    run ends (journaled `failed`, not left `running`)."""

    class BreaksOnWrite(Ledger):
        COMMIT_EVERY_S = 0.0  # write at each call (not in a later group)

        def _write(self) -> None:
            if self._pending:
                raise LedgerError(f"cost ledger {self.path} is unusable: disk I/O error")

    journal = Journal()
    engine = Engine(
        config=Config(tiers={"standard": "pftest/standard"}, models=PRICED),
        journal=journal,
        ledger=BreaksOnWrite(tmp_path / "ledger.sqlite"),
    )
    result = engine.run_sync(load_plan(LLM_PLAN, tiers=["standard"]))
    assert result.status == "failed" and "disk I/O error" in (result.steps["a"].error or "")
    assert [r.status for r in journal.runs()] == ["failed"]
    engine.ledger._pending.clear()  # type: ignore[union-attr]  # (else reported at exit)


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_journal_refuses(kind: str, planfile_home: Path) -> None:
    path = planfile_home / "journal.sqlite"
    path.write_bytes(BROKEN[kind])
    engine = Engine(journal=Journal())
    with pytest.raises(JournalError, match=r"run journal .*journal\.sqlite is unusable"):
        engine.run_sync(load_plan('step a: float = calculate(expression: "1 + 1")'))
    assert path.read_bytes() == BROKEN[kind]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_journal_is_exit_2_with_no_traceback(
    kind: str, planfile_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli.main import main

    (planfile_home / "journal.sqlite").write_bytes(BROKEN[kind])
    plan = tmp_path / "p.plan"
    plan.write_text('step a: float = calculate(expression: "1 + 1")')
    code = main(["run", str(plan)])
    err = capsys.readouterr().err
    assert code == 2 and "journal.sqlite" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_step_cache_is_rebuilt_with_a_warning(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "step_cache.sqlite"
    path.write_bytes(BROKEN[kind])
    warnings: list[str] = []
    cache = StepCache(path, on_warning=warnings.append)
    assert cache.get("k") is MISS
    cache.put("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert len(warnings) == 1 and "step cache" in warnings[0] and "moved it" in warnings[0]
    assert [p.read_bytes() for p in tmp_path.glob("step_cache.sqlite.broken-*")] == [BROKEN[kind]]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_step_cache_does_not_stop_a_run(kind: str, planfile_home: Path) -> None:
    (planfile_home / "step_cache.sqlite").write_bytes(BROKEN[kind])
    warnings: list[str] = []
    engine = Engine(step_cache=StepCache(), cache_all=True, on_warning=warnings.append)
    result = engine.run_sync(load_plan('step a: float = calculate(expression: "1 + 1")'))
    assert result.status == "succeeded" and any("step cache" in w for w in warnings)


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_plan_cache_is_rebuilt_with_a_warning(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "plan_cache.sqlite"
    path.write_bytes(BROKEN[kind])
    warnings: list[str] = []
    cache = PlanCache(path, on_warning=warnings.append)
    assert cache.lookup("a goal", {}, "m") is None
    assert len(warnings) == 1 and "plan cache" in warnings[0]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_search_index_is_rebuilt(kind: str, tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.md").write_text("# Austin\n\nAustin has tacos and music.\n")
    index = CorpusIndex(corpus, tmp_path / "cache")
    index.path.parent.mkdir(parents=True)
    index.path.write_bytes(BROKEN[kind])
    hits = index.search("tacos")
    assert hits and "tacos" in hits[0].text


def test_a_damaged_page_is_found_at_open(tmp_path: Path) -> None:
    """A valid header over damaged pages fails the quick check, before any spending."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    for i in range(2000):
        ledger.record("r", "s", "m", 1, 1, 0.001 * i)
    ledger.close()
    data = bytearray(path.read_bytes())
    data[4096 * 2 : 4096 * 2 + 512] = b"\xff" * 512  # the table's pages, not the header
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerError, match="unusable"):
        Ledger(path).open()


def test_new_store_files_appear_complete(tmp_path: Path) -> None:
    """A new store is never a 0-byte file another process could take for a broken one."""
    Ledger(tmp_path / "l.sqlite").open()
    assert (tmp_path / "l.sqlite").read_bytes()[:16] == b"SQLite format 3\x00"
    assert not list(tmp_path.glob(".*new"))


def test_store_errors_are_planfile_errors() -> None:
    assert issubclass(LedgerError, StoreError) and issubclass(RunLeased, JournalError)


# --- item 7: one owner per run --------------------------------------------------------------


def test_a_second_owner_is_refused_and_a_dead_one_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    first, second = Journal(path), Journal(path)
    assert first.acquire("r1") is None
    assert first.acquire("r1") is None  # holding it already is fine
    with pytest.raises(RunLeased, match=rf"process {os.getpid()}") as err:
        second.acquire("r1")
    assert "expires" in (err.value.hint or "")
    first.release("r1")
    assert second.acquire("r1") is None
    # An owner whose process is gone: its lease is taken over at once.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    ghost = lease.Owner("ghost", int(dead.stdout), first._owner.host, "1")
    with first._db() as db:
        lease.acquire(db, "r2", ghost, path)
    note = second.acquire("r2")
    assert note is not None and "no longer running" in note
    # An owner on another host: trusted until its lease expires.
    remote = lease.Owner("remote", 1, "elsewhere.example", None)
    with first._db() as db:
        lease.acquire(db, "r3", remote, path)
    with pytest.raises(RunLeased, match=r"elsewhere\.example"):
        second.acquire("r3")
    with first._db() as db:
        db.execute("UPDATE leases SET expires_at = 0 WHERE run_id = 'r3'")
    assert "expired" in (second.acquire("r3") or "")
    for journal in (first, second):
        journal.close()


RACE_TOOLS = textwrap.dedent(
    """
    import os, time
    from stdlib_tools import tool

    @tool
    def mark(i: int, after: int = 0) -> int:
        \"\"\"Append this process's pid and the step to a file; slow enough to race.\"\"\"
        if os.environ.get("PF_FAIL"):
            raise RuntimeError("first run fails")
        time.sleep(0.15)
        with open(os.environ["PF_MARKS"], "a") as f:
            f.write(f"{os.getpid()} {i}\\n")
        return i
    """
)


def test_two_resumes_race_and_exactly_one_runs_the_steps(tmp_path: Path) -> None:
    """Two real processes `planfile resume` one run at once: one executes every unfinished
    step exactly once; the other is refused (exit 2) naming the owner."""
    tools = tmp_path / "race_tools.py"
    tools.write_text(RACE_TOOLS)
    steps = 12
    plan = tmp_path / "race.plan"
    # A chain (each step waits for the one before), so the resumed run takes ~2 s.
    plan.write_text(
        "step s0: int = mark(i: 0)\n"
        + "".join(f"step s{i}: int = mark(i: {i}, after: s{i - 1})\n" for i in range(1, steps))
    )
    marks = tmp_path / "marks.txt"
    env = {**os.environ, "PF_MARKS": str(marks), "PLANFILE_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "engine.cli"]
    first = subprocess.run(
        [*cli, "run", str(plan), "--tools", str(tools), "--json", "--max-parallel", "1"],
        env={**env, "PF_FAIL": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    racers = [
        subprocess.Popen(
            [*cli, "resume", run_id, "--tools", str(tools), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in racers]  # type: ignore[union-attr]
    codes = sorted(code for code, _, _ in outcomes)
    lines = marks.read_text().splitlines()
    steps_run = sorted(int(line.split()[1]) for line in lines)
    assert steps_run == list(range(steps)), outcomes  # each unfinished step exactly once
    assert len({line.split()[0] for line in lines}) == 1  # by one process
    print("race outcome:", codes)
    if codes == [0, 2]:  # they overlapped: the loser names the owner
        loser = next(err for code, _, err in outcomes if code == 2)
        assert "already being run by process" in loser and "Traceback" not in loser
    else:  # the second started after the first had finished: nothing left to run
        assert codes == [0, 0], outcomes


def test_resume_takes_over_a_killed_owner(tmp_path: Path) -> None:
    """A run whose owner was killed (SIGKILL: no chance to give the lease back) resumes."""
    tools = tmp_path / "race_tools.py"
    tools.write_text(RACE_TOOLS)
    plan = tmp_path / "p.plan"
    plan.write_text("\n".join(f"step s{i}: int = mark(i: {i})" for i in range(40)) + "\n")
    marks = tmp_path / "marks.txt"
    env = {**os.environ, "PF_MARKS": str(marks), "PLANFILE_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "engine.cli"]
    log = tmp_path / "victim.log"
    with open(log, "w") as err:
        victim = subprocess.Popen(
            [*cli, "run", str(plan), "--tools", str(tools), "--max-parallel", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 60
    while not (marks.exists() and len(marks.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and victim.poll() is None, log.read_text()
        time.sleep(0.05)
    victim.kill()
    victim.wait()
    run_id = Journal(tmp_path / "home" / "journal.sqlite").runs()[0].run_id
    resumed = subprocess.run(
        [*cli, "resume", run_id, "--tools", str(tools), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "took over run" in resumed.stderr
    assert sorted({int(line.split()[1]) for line in marks.read_text().splitlines()}) == list(
        range(40)
    )

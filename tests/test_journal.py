"""The journal: runs, show, resume; killed runs resume without re-running finished steps."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import Engine, load_plan
from engine.cli import main
from engine.journal import Journal, JournalError

from .conftest import ROOT
from .engine_tools import TEST_TOOLS

KILL_TOOLS = Path(__file__).parent / "kill_tools.py"


def test_runs_are_journaled_and_shown(
    planfile_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`run` records the run; `runs` lists it; `show` prints its steps and result."""
    plan = tmp_path / "p.plan"
    plan.write_text(
        'step a: float = calculate(expression: "6 * 7")\nstep b: float = calculate(expression: "1 / 0")'
    )
    assert main(["run", str(plan), "--json"]) == 1
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "failed" in listing
    assert main(["show", run_id[:6]]) == 0
    shown = capsys.readouterr().out
    assert "a " in shown and "42.0" in shown and "division by zero" in shown
    assert main(["show", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"]["a"]["output"] == 42.0
    assert main(["show", "nosuchrun"]) == 2


def test_resume_runs_only_what_did_not_finish(tmp_path: Path) -> None:
    """A budget-stopped or failed run resumes: finished steps are kept, not re-run, not re-paid."""
    journal = Journal(tmp_path / "journal.sqlite")
    engine = Engine(tools=TEST_TOOLS, journal=journal)
    plan = load_plan(
        'step a = echo(value: 1)\nstep b = flaky(key: "resume-1", failures: 1)\nstep c = echo(value: b)',
        tools=TEST_TOOLS,
    )
    first = engine.run_sync(plan)
    assert first.status == "failed" and first.steps["a"].status == "succeeded"
    second = asyncio.run(engine.resume(first.run_id))
    assert second.run_id == first.run_id and second.status == "succeeded"
    assert second.steps["a"].attempts == 1  # carried, not run again
    assert second.outputs == {"a": 1, "c": "ok after 2"}
    assert [r.status for r in journal.runs()] == ["succeeded"]


def test_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not a journal gives a clear error, never a silent loss."""
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="unusable"):
        Journal(path).runs()


def test_two_runs_at_once_share_one_journal(tmp_path: Path) -> None:
    """Concurrent runs on one journal do not interfere."""
    journal = Journal(tmp_path / "journal.sqlite")
    engine = Engine(tools=TEST_TOOLS, journal=journal)
    plan = load_plan(
        "input v: int\nstep a = sleep(seconds: 0.02, value: v)\noutput a", tools=TEST_TOOLS
    )

    async def both() -> list[object]:
        return await asyncio.gather(*(engine.run(plan, {"v": i}) for i in range(8)))

    asyncio.run(both())
    rows = journal.runs()
    assert len(rows) == 8 and all(r.status == "succeeded" for r in rows)
    assert sorted(journal.steps(r.run_id)["a"].output for r in rows) == list(range(8))


@pytest.mark.slow
def test_killed_runs_resume_without_rerunning_finished_steps(tmp_path: Path) -> None:
    """SIGKILL runs at random points (20 times), resume each until it completes: no
    finished step runs again, no result is lost, cost is never counted twice."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    steps = [
        f'step s{i} = tick(key: "s{i}", seconds: 0.08)' + (f" after s{i - 1}" if i % 4 else "")
        for i in range(40)
    ]
    plan = tmp_path / "long.plan"
    plan.write_text("\n".join(steps))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLANFILE_HOME": str(tmp_path / "home")}
    common = ["--tools", str(KILL_TOOLS), "--workspace", str(workspace), "--json"]
    log = workspace / "ticks.log"
    journal = Journal(tmp_path / "home" / "journal.sqlite")
    rng = random.Random(7)
    kills = 0
    completed = 0

    def executions(run_id: str) -> list[str]:
        if not log.exists():
            return []
        return [
            line.split()[0]
            for line in log.read_text().splitlines()
            if line.split()[1].startswith(run_id + ":")
        ]

    while kills < 20:
        known = {row.run_id for row in journal.runs(1000)} if journal.path.exists() else set()
        command = [
            sys.executable,
            "-m",
            "engine.cli",
            "run",
            str(plan),
            *common,
            "--max-parallel",
            "2",
        ]
        run_id: str | None = None
        checkpoints: list[tuple[set[str], int]] = []
        while True:
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=env,
            )
            deadline = time.monotonic() + rng.uniform(0.8, 1.5)
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            if proc.poll() is not None:
                out, err = proc.communicate()
                assert proc.returncode == 0, err
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            if run_id is None:
                new = (
                    [row.run_id for row in journal.runs(1000) if row.run_id not in known]
                    if journal.path.exists()
                    else []
                )
                if not new:
                    continue  # killed before the run was recorded: start it again
                run_id = new[0]
            finished = {
                name for name, r in journal.steps(run_id).items() if r.status == "succeeded"
            }
            checkpoints.append((finished, len(executions(run_id))))
            command = [sys.executable, "-m", "engine.cli", "resume", run_id, *common]
        result = json.loads(out)
        completed += 1
        assert result["status"] == "succeeded" and len(result["steps"]) == 40
        assert all(step["status"] == "succeeded" for step in result["steps"].values())
        assert result["cost_usd"] == 0
        if run_id is None:
            continue  # it finished before any kill landed mid-run
        assert result["run_id"] == run_id
        ran = executions(run_id)
        for finished, count in checkpoints:
            again = set(ran[count:]) & finished
            assert not again, f"finished steps ran again after a kill: {sorted(again)}"
        assert set(ran) == {f"s{i}" for i in range(40)}  # nothing lost
    assert kills >= 20 and completed >= 1


def test_graph_colours_a_runs_states(
    planfile_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`graph --run RUN` colours each step by its state in that run."""
    plan = tmp_path / "p.plan"
    plan.write_text(
        'step a: float = calculate(expression: "1")\n'
        'step b: float = calculate(expression: "1 / 0")\n'
        'step c: float = calculate(expression: "{{ b }} + 1")'
    )
    main(["run", str(plan), "--json"])
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["graph", "--run", run_id]) == 0
    mermaid = capsys.readouterr().out
    assert (
        "style a fill:#2e7d32" in mermaid
        and "style b fill:#c62828" in mermaid
        and "style c fill:#9e9e9e" in mermaid
    )
    assert main(["graph", "--run", run_id, "--format", "json"]) == 0
    nodes = {n["id"]: n["state"] for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert nodes == {"a": "succeeded", "b": "failed", "c": "skipped"}
    assert main(["graph"]) == 2

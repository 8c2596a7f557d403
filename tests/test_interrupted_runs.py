"""A run whose process was killed shows as `interrupted` (not `running` forever), with
`planfile resume` as the way on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.store.journal import Journal

from .conftest import ROOT

KILL_TOOLS = Path(__file__).parent / "kill_tools.py"


def _planfile(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_a_killed_run_lists_as_interrupted(tmp_path: Path) -> None:
    """SIGKILL a `planfile run` mid-run: `runs` and `show` say `interrupted` and name
    `planfile resume`; the resumed run then lists as `succeeded`."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    plan = tmp_path / "slow.plan"
    plan.write_text(
        'step a = tick(key: "a", seconds: 0.01)\nstep b = tick(key: "b", seconds: 4) after a'
    )
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLANFILE_HOME": str(home)}
    common = ["--tools", str(KILL_TOOLS), "--workspace", str(workspace)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(plan), *common, "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    try:
        # Kill it once step b is running (a's tick is logged, then b's).
        deadline = time.monotonic() + 60
        log = workspace / "ticks.log"
        while not (log.exists() and "b " in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start b"
            time.sleep(0.05)
        journal = Journal(home / "journal.sqlite")
        (run_id,) = [row.run_id for row in journal.runs()]
        listed = _planfile(["runs"], env)
        assert f"{run_id}" in listed.stdout and "running" in listed.stdout  # alive: running
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    listed = _planfile(["runs"], env)
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
    assert line.split()[2] == "interrupted"
    assert "planfile resume RUN" in listed.stderr

    shown = _planfile(["show", run_id], env)
    assert f"run {run_id}: plan" in shown.stdout and "interrupted" in shown.stdout
    assert f"planfile resume {run_id}" in shown.stdout

    resumed = _planfile(["resume", run_id, *common], env)
    assert resumed.returncode == 0, resumed.stderr
    (line,) = [
        line for line in _planfile(["runs"], env).stdout.splitlines() if line.startswith(run_id)
    ]
    assert line.split()[2] == "succeeded"

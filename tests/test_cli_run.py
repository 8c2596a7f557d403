"""`planfile run`: the JSON document, exit codes, typed inputs, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli.main import main

from .conftest import EXAMPLES, ROOT

TOOLS = Path(__file__).parent / "engine_tools.py"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_example_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The offline example runs; --json prints one document with the contract's keys."""
    code, out, _ = run_cli(
        capsys,
        "run",
        str(EXAMPLES / "unit_economics.plan"),
        "--json",
        "--workspace",
        str(tmp_path),
        "--input",
        "monthly_churn=0.05",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == "succeeded" and doc["plan"] == "unit_economics"
    assert doc["outputs"]["ltv"] == pytest.approx(764.4)
    assert (tmp_path / "unit_economics.md").read_text().startswith("# Unit economics")
    assert doc["steps"]["ltv"]["status"] == "succeeded" and doc["replans"] == []


def test_run_human_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without --json: outputs on stdout, a status line on stderr."""
    code, out, err = run_cli(
        capsys,
        "run",
        str(EXAMPLES / "etl_validation.plan"),
        "--workspace",
        str(EXAMPLES / "workspace"),
    )
    assert code == 0
    assert "total: 472.75" in out and "succeeded" in err


def test_run_failed_step_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A failed step: exit 1, the error named, finished results kept."""
    plan = tmp_path / "p.plan"
    plan.write_text(
        'step ok: float = calculate(expression: "1 + 1")\nstep bad: float = calculate(expression: "1 / 0")\noutput ok, bad'
    )
    code, out, _ = run_cli(capsys, "run", str(plan), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["status"] == "failed"
    assert doc["steps"]["bad"]["error"] == "CalculationError: division by zero (/)"
    assert doc["outputs"] == {"ok": 2.0}


def test_run_typed_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--input values are typed by the plan: JSON for lists, raw text for str."""
    plan = tmp_path / "p.plan"
    plan.write_text(
        "input xs: list[float]\ninput label: str\n"
        'step total: float = calculate(expression: "{{ xs | sum }}")\n'
        'step out = json_query(data: {"label": label, "total": total}, expression: "@")\noutput out'
    )
    code, out, _ = run_cli(
        capsys, "run", str(plan), "--json", "--input", "xs=[1, 2.5]", "--input", "label=[not json]"
    )
    assert code == 0 and json.loads(out)["outputs"]["out"] == {"label": "[not json]", "total": 3.5}
    code, _, err = run_cli(capsys, "run", str(plan), "--input", "xs=oops", "--input", "label=x")
    assert code == 2 and "input `xs` must be `list[float]`" in err
    code, _, err = run_cli(capsys, "run", str(plan), "--input", "label")
    assert code == 2 and "NAME=VALUE" in err


def test_run_invalid_plan_and_flags_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A plan with errors or bad flags exits 2 before anything runs."""
    plan = tmp_path / "p.plan"
    plan.write_text('step a = serch(query: "x")')
    assert run_cli(capsys, "run", str(plan))[0] == 2
    good = EXAMPLES / "unit_economics.plan"
    assert run_cli(capsys, "run", str(good), "--max-parallel", "0")[0] == 2
    assert run_cli(capsys, "run", str(good), "--limit", "search=2")[0] == 2
    assert run_cli(capsys, "run", str(good), "--workspace", str(tmp_path / "nope"))[0] == 2


@pytest.mark.slow
def test_ctrl_c_cancels_cleanly_and_reports(tmp_path: Path) -> None:
    """SIGINT: exit 130, and --json still reports the steps that finished."""
    plan = tmp_path / "p.plan"
    plan.write_text(
        "step quick = echo(value: 7)\nstep slow = sleep(seconds: 30)\noutput quick, slow"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(plan), "--json", "--tools", str(TOOLS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["status"] == "cancelled"
    assert doc["steps"]["quick"]["status"] == "succeeded" and doc["steps"]["quick"]["output"] == 7
    assert doc["steps"]["slow"]["status"] == "cancelled"
    assert "Traceback" not in err


def test_what_tools_print_stays_out_of_the_json_document(tmp_path: Path) -> None:
    """`run --json`: stdout is the document alone; a tool's `print` (on the loop or in a
    thread) goes to stderr."""
    (tmp_path / "tools.py").write_text(
        '"""Tools that print."""\n\nfrom stdlib_tools import tool\n\n\n'
        "@tool\ndef noisy() -> int:\n"
        '    """Print from the thread pool."""\n'
        '    print("hello from a sync tool")\n    return 1\n\n\n'
        "@tool\nasync def anoisy() -> int:\n"
        '    """Print on the event loop."""\n'
        '    print("hello from an async tool")\n    return 2\n'
    )
    plan = tmp_path / "p.json"
    plan.write_text(
        json.dumps(
            {
                "name": "p",
                "steps": [{"id": "a", "tool": "noisy"}, {"id": "b", "tool": "anoisy"}],
                "outputs": ["a", "b"],
            }
        )
    )
    env = {**os.environ, "PLANFILE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(plan), "--json", "--tools", "tools.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"a": 1, "b": 2}
    assert "hello from a sync tool" in done.stderr
    assert "hello from an async tool" in done.stderr

"""Human approval: steps marked `approve` (or tools flagged) wait for a person."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Engine, load_plan
from engine.cli.main import main
from engine.store.journal import Journal
from stdlib_tools import tool

PLAN = (
    'step draft: float = calculate(expression: "6 * 7")\n'
    'step send: str = write_file(path: "sent.txt", content: "{{ draft }}") approve\n'
    "output send\n"
)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(list(args))
    return code, json.loads(capsys.readouterr().out)


def test_wait_approve_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Non-interactive: the run waits; `approve` then `resume` runs the step once."""
    plan = tmp_path / "p.plan"
    plan.write_text(PLAN)
    code, doc = run_json(capsys, "run", str(plan), "--workspace", str(tmp_path), "--json")
    assert code == 1 and doc["status"] == "awaiting_approval"
    assert (
        "awaiting approval" in str(doc["steps"]["send"]["error"])
        and not (tmp_path / "sent.txt").exists()
    )
    run_id = str(doc["run_id"])
    assert main(["approve", run_id, "send"]) == 0
    assert "planfile resume" in capsys.readouterr().out
    code, doc = run_json(capsys, "resume", run_id, "--workspace", str(tmp_path), "--json")
    assert code == 0 and doc["status"] == "succeeded"
    assert (tmp_path / "sent.txt").read_text() == "42.0"
    assert doc["steps"]["draft"]["attempts"] == 1


def test_reject_fails_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`reject` then `resume`: the step fails with the reason; nothing is written."""
    plan = tmp_path / "p.plan"
    plan.write_text(PLAN)
    _, doc = run_json(capsys, "run", str(plan), "--workspace", str(tmp_path), "--json")
    assert main(["reject", str(doc["run_id"]), "send"]) == 0
    capsys.readouterr()
    code, doc = run_json(
        capsys, "resume", str(doc["run_id"]), "--workspace", str(tmp_path), "--json"
    )
    assert code == 1 and "rejected by a person" in str(doc["steps"]["send"]["error"])
    assert not (tmp_path / "sent.txt").exists()
    assert main(["approve", str(doc["run_id"]), "nosuchstep"]) == 2


def test_approve_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--approve-all runs approval steps at once."""
    plan = tmp_path / "p.plan"
    plan.write_text(PLAN)
    code, doc = run_json(
        capsys, "run", str(plan), "--workspace", str(tmp_path), "--json", "--approve-all"
    )
    assert code == 0 and doc["status"] == "succeeded" and (tmp_path / "sent.txt").exists()


def test_embedded_approver_and_flagged_tools(tmp_path: Path) -> None:
    """An approver callable decides; a tool flagged needs_approval is gated too."""

    @tool(needs_approval=True)
    def transfer(amount: float) -> str:
        """Move money."""
        return f"moved {amount}"

    asked: list[tuple[str, dict[str, object]]] = []

    def approver(run_id: str, step: str, arguments: dict[str, object]) -> bool:
        asked.append((step, arguments))
        return arguments["amount"] < 100

    engine = Engine(tools=[transfer], approver=approver, journal=Journal(tmp_path / "j.sqlite"))
    plan = load_plan(
        "step small = transfer(amount: 5)\nstep big = transfer(amount: 500)", tools=[transfer]
    )
    result = engine.run_sync(plan)
    assert result.steps["small"].output == "moved 5.0"
    assert "rejected" in str(result.steps["big"].error)
    assert sorted(step for step, _ in asked) == ["big", "small"]

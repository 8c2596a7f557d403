"""Run hooks: one interface for journal, audit, tracing, display and approvals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, load_plan
from engine.observe.audit import AuditLog
from engine.run.events import Event
from engine.run.executor import RetryPolicy
from engine.run.hooks import Hooks, RunHook, RunView
from engine.run.result import RunResult, StepRecord
from engine.store.journal import Journal
from engine.store.journal_hook import JournalHook

from .engine_tools import TEST_TOOLS

FAST_RETRY = RetryPolicy(base_s=0.001, cap_s=0.002)


class Recorder(RunHook):
    """Records every call it gets, per run (a fresh listener for each run)."""

    def __init__(self) -> None:
        self.runs: list[Recorder] = []
        self.calls: list[str] = []
        self.finals: list[str] = []

    def open(self, run: RunView) -> Recorder:
        listener = Recorder()
        self.runs.append(listener)
        return listener

    def run_started(self, run: RunView) -> None:
        self.calls.append("run_started")

    def round_started(self, run: RunView, carried: Mapping[str, StepRecord]) -> None:
        self.calls.append("round_started")

    def step_final(self, step_id: str) -> None:
        self.finals.append(step_id)

    def event(self, event: Event) -> None:
        if event.kind in ("run_started", "run_finished"):
            self.calls.append(event.kind)

    def round_ended(self, run: RunView) -> None:
        self.calls.append("round_ended")

    def run_finished(self, run: RunView, result: RunResult) -> None:
        self.calls.append(f"run_finished:{result.status}")

    def close(self) -> None:
        self.calls.append("close")


def engine(**kwargs: Any) -> Engine:
    return Engine(tools=TEST_TOOLS, retry=FAST_RETRY, **kwargs)


def test_hooks_hear_a_run_in_order() -> None:
    """open, run_started, a round, each final step once, run_finished, RunFinished, close."""
    hook = Recorder()
    eng = engine(hooks=[hook])
    plan = load_plan(
        "step a = echo(value: 1)\nstep b = bad_input() after a\nstep c = echo(value: 2) after b",
        tools=TEST_TOOLS,
    )
    eng.run_sync(plan)
    eng.run_sync(plan)
    eng.close()
    assert len(hook.runs) == 2  # one listener per run: per-run state never crosses
    first = hook.runs[0]
    assert first.calls == [
        "run_started",
        "round_started",
        "run_started",  # the event, after the round is set up
        "round_ended",
        "run_finished:failed",
        "run_finished",  # the event, after the hooks recorded the end
        "close",
    ]
    assert sorted(first.finals) == ["a", "b", "c"]


def test_a_cancelled_run_still_closes_its_hooks(planfile_home: Path) -> None:
    """Cancellation is a crash path: hooks hear the end and close (the audit log is
    flushed with its last line)."""
    hook = Recorder()
    eng = engine(hooks=[hook], audit=True)
    plan = load_plan(
        "step quick = echo(value: 1)\nstep slow = sleep(seconds: 10)", tools=TEST_TOOLS
    )
    holder: list[RunResult] = []

    async def main() -> None:
        task = asyncio.create_task(eng.run(plan, result_holder=holder))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    eng.close()
    assert hook.runs[0].calls[-3:] == ["run_finished:cancelled", "run_finished", "close"]
    lines = (planfile_home / "audit" / f"{holder[0].run_id}.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "run_finished"


def test_nobody_listening_costs_no_call_per_step() -> None:
    """Only listeners that implement a method are called: with none, the per-step
    callback is absent, not a function that does nothing."""

    class EventsOnly(RunHook):
        def event(self, event: Event) -> None:
            pass

    assert Hooks([]).step_final() is None
    assert Hooks([EventsOnly(), object()]).step_final() is None
    assert len(Hooks([EventsOnly()]).event_listeners()) == 1
    recorder = Recorder()
    assert Hooks([recorder]).step_final() == recorder.step_final  # bound, no wrapper


def test_journal_hook_is_the_journal_keyword(tmp_path: Path) -> None:
    """`hooks=[JournalHook(journal)]` journals a run exactly as `journal=` does, and
    resume finds the journal among the hooks."""
    journal = Journal(tmp_path / "journal.sqlite")
    eng = engine(hooks=[JournalHook(journal)])
    result = eng.run_sync(load_plan("step a = echo(value: 7)", tools=TEST_TOOLS))
    assert journal.run(result.run_id).status == "succeeded"
    assert journal.steps(result.run_id)["a"].output == 7
    resumed = asyncio.run(eng.resume(result.run_id))
    assert resumed.status == "succeeded" and resumed.steps["a"].attempts == 1
    eng.close()


def test_an_approval_hook_decides_and_the_journal_records_it(tmp_path: Path) -> None:
    """The first listener with an answer decides a gated step; the journal records it,
    so a resumed run does not ask again."""
    from stdlib_tools import tool

    @tool(needs_approval=True)
    def send(to: str) -> str:
        """Send."""
        return f"sent to {to}"

    asked: list[str] = []

    class Policy(RunHook):
        def approval(self, run: RunView, step_id: str, arguments: dict[str, Any]) -> bool:
            asked.append(step_id)
            return arguments["to"] == "ops"

    journal = Journal(tmp_path / "journal.sqlite")
    eng = Engine(tools=[send], journal=journal, hooks=[Policy()])
    plan = load_plan('step ok = send(to: "ops")\nstep no = send(to: "all")', tools=[send])
    result = eng.run_sync(plan)
    assert result.steps["ok"].output == "sent to ops"
    assert "rejected" in str(result.steps["no"].error)
    assert journal.decision(result.run_id, "ok") == "approved"
    assert journal.decision(result.run_id, "no") == "rejected"
    asyncio.run(eng.resume(result.run_id))
    assert sorted(asked) == ["no", "ok"]  # the journal's record answered the resume
    eng.close()


def test_audit_log_is_buffered_and_flushed(tmp_path: Path) -> None:
    """One open file per log; lines reach it on flush (the timer's), close, or exit."""
    path = tmp_path / "a.jsonl"
    log = AuditLog([path])
    log.write("execution", "x", n=1)
    assert path.read_text() == ""  # buffered: no write per line
    log.flush()
    assert json.loads(path.read_text())["n"] == 1

    async def timed() -> None:
        log.write("execution", "y", n=2)
        await asyncio.sleep(AuditLog.FLUSH_EVERY_S + 0.3)

    asyncio.run(timed())
    assert len(path.read_text().splitlines()) == 2  # the timer flushed it
    log.write("execution", "z", n=3)
    log.close()
    log.close()  # idempotent
    assert len(path.read_text().splitlines()) == 3


def test_a_replanned_run_is_one_run_to_its_hooks(planfile_home: Path, tmp_path: Path) -> None:
    """Rounds of a replanned run: one run_started and one end, a round per revision,
    and the decision reaches the hooks (the audit log's `replanning` line)."""
    from engine.config import Config
    from engine.models.ledger import Ledger

    from .scripted_provider import Reply, registered

    provider = registered()
    provider.reset()
    provider.add(
        "planner",
        Reply(
            {
                "action": "revise",
                "reason": "double a instead",
                "steps": [{"id": "b2", "tool": "calculate", "args": {"expression": "{{ a }} * 2"}}],
                "outputs": ["b2"],
            }
        ),
    )

    class Decisions(Recorder):
        def open(self, run: RunView) -> Decisions:
            listener = Decisions()
            self.runs.append(listener)
            return listener

        def replanned(self, run: RunView, decision: Mapping[str, Any]) -> None:
            self.calls.append(f"replanned:{decision['action']}:{','.join(decision['added'])}")

    hook = Decisions()
    eng = engine(
        hooks=[hook],
        audit=True,
        config=Config(tiers={"planner": "pftest/planner"}),
        ledger=Ledger(tmp_path / "ledger.sqlite"),
    )
    plan = 'step a: float = calculate(expression: "6 * 7")\nstep b: str = bad_input() after a'
    result = asyncio.run(eng.run(plan, replan="on-failure"))
    eng.close()
    assert result.status == "succeeded" and result.outputs == {"b2": 84.0}
    calls = hook.runs[0].calls
    assert calls.count("run_started") == 2  # the hook call and the event: once each
    assert calls.count("round_started") == 2 and "replanned:revise:b2" in calls
    assert calls[-3:] == ["run_finished:succeeded", "run_finished", "close"]
    lines = (planfile_home / "audit" / f"{result.run_id}.jsonl").read_text().splitlines()
    decisions = [json.loads(x) for x in lines if json.loads(x)["phase"] == "replanning"]
    assert [(d["action"], d["added"], d["step"]) for d in decisions] == [("revise", ["b2"], "b")]

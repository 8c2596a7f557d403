"""Replanning: each policy, continue / revise / finish, the cap, and the diffs recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.agent.replan import Decision, ReplanRequest, truncate_results
from engine.api import Engine
from engine.config import Config
from engine.models.ledger import Ledger
from engine.run.executor import RetryPolicy

from .engine_tools import TEST_TOOLS
from .scripted_provider import Reply, registered

PROVIDER = registered()
TIERS = {"planner": "pftest/planner", "fast": "pftest/fast", "standard": "pftest/standard"}


@pytest.fixture(autouse=True)
def fresh() -> None:
    PROVIDER.reset()


def engine(tmp_path: Path) -> Engine:
    return Engine(
        tools=TEST_TOOLS,
        config=Config(tiers=TIERS),
        retry=RetryPolicy(base_s=0.001, cap_s=0.002),
        ledger=Ledger(tmp_path / "ledger.sqlite"),
    )


def decisions(*items: dict[str, Any]) -> None:
    PROVIDER.add("planner", *(Reply(item) for item in items))


FLAKY_PLAN = (
    'step a: float = calculate(expression: "6 * 7")\n'
    "step b: str = bad_input()\n"
    'step c = echo(value: "{{ b }}")\n'
    "output c"
)


def test_never_keeps_the_static_plan(tmp_path: Path) -> None:
    """`never`: a failure follows on_error; the policy is not asked."""
    eng = engine(tmp_path)
    import asyncio

    result = asyncio.run(eng.run(FLAKY_PLAN, replan="never"))
    assert result.status == "failed" and result.replans == [] and PROVIDER.calls == []


def test_on_failure_revises_the_remaining_steps(tmp_path: Path) -> None:
    """A failure goes to the replanner; new steps use a finished step's result by name."""
    import asyncio

    decisions(
        {
            "action": "revise",
            "reason": "b cannot work; double a instead",
            "steps": [
                {
                    "id": "b2",
                    "tool": "calculate",
                    "args": {"expression": "{{ a }} * 2"},
                    "depends_on": [],
                }
            ],
            "outputs": ["b2"],
        }
    )
    result = asyncio.run(engine(tmp_path).run(FLAKY_PLAN, replan="on-failure", goal="double 42"))
    assert result.status == "succeeded" and result.outputs == {"b2": 84.0}
    assert [replan.to_json() for replan in result.replans] == [
        {
            "after": "b",
            "reason": "b cannot work; double a instead",
            "added": ["b2"],
            "removed": ["b", "c"],
        }
    ]
    assert result.steps["a"].attempts == 1  # finished steps never run again
    prompt = PROVIDER.calls[0]["messages"][0]["content"]
    assert "double 42" in prompt and "a: 42.0" in prompt and "bad" in prompt


def test_finish_ends_the_run_with_the_answer(tmp_path: Path) -> None:
    """`finish` stops with the replanner's answer; unfinished steps are skipped."""
    import asyncio

    decisions({"action": "finish", "reason": "enough", "answer": "42"})
    result = asyncio.run(engine(tmp_path).run(FLAKY_PLAN, replan="on-failure"))
    assert result.status == "succeeded" and result.outputs == {"answer": "42"}
    assert result.steps["c"].status == "skipped"


def test_continue_keeps_the_failure(tmp_path: Path) -> None:
    """`continue` after a failure: the plan goes on and the failure stands."""
    import asyncio

    decisions({"action": "continue", "reason": "nothing better"})
    result = asyncio.run(engine(tmp_path).run(FLAKY_PLAN, replan="on-failure"))
    assert result.status == "failed" and result.steps["c"].status == "skipped"


def test_after_each_step_is_asked_every_step(tmp_path: Path) -> None:
    """after-each-step: one decision per finished step (the LangGraph loop)."""
    import asyncio

    PROVIDER.default["planner"] = Reply({"action": "continue", "reason": "ok"})
    plan = "step a = echo(value: 1)\nstep b = echo(value: a)\nstep c = echo(value: b)\noutput c"
    result = asyncio.run(engine(tmp_path).run(plan, replan="after-each-step"))
    assert result.status == "succeeded" and result.outputs == {"c": 1}
    assert len(PROVIDER.calls) == 3
    assert all(r.attempts == 1 for r in result.steps.values())


def test_every_n_asks_every_nth_step(tmp_path: Path) -> None:
    """every-2: asked after the 2nd and 4th finished steps."""
    import asyncio

    PROVIDER.default["planner"] = Reply({"action": "continue", "reason": "ok"})
    plan = "\n".join(
        f"step s{i} = echo(value: {i})" + (f" after s{i - 1}" if i else "") for i in range(5)
    )
    result = asyncio.run(engine(tmp_path).run(plan, replan="every-2"))
    assert result.status == "succeeded" and len(PROVIDER.calls) == 2


def test_on_surprise_reacts_to_a_failed_check(tmp_path: Path) -> None:
    """on-surprise: a result that fails its check goes to the replanner."""
    import asyncio

    decisions(
        {
            "action": "revise",
            "reason": "empty result; use a default",
            "steps": [
                {"id": "fixed", "tool": "echo", "args": {"value": "default"}, "depends_on": []}
            ],
        }
    )
    plan = 'step a = echo(value: "") check "result | length > 0"\nstep b = echo(value: "{{ a }}!")\noutput b'
    result = asyncio.run(engine(tmp_path).run(plan, replan="on-surprise"))
    assert result.replans[0].after == "a" and result.outputs == {"fixed": "default"}
    assert "failed its check" in PROVIDER.calls[0]["messages"][0]["content"]


def test_replans_are_capped(tmp_path: Path) -> None:
    """After max_replans revisions the policy is not asked again."""
    import asyncio

    bad_again = {
        "action": "revise",
        "reason": "try again",
        "steps": [{"id": "x{n}", "tool": "bad_input", "args": {}, "depends_on": []}],
    }
    for n in range(5):
        decisions(json.loads(json.dumps(bad_again).replace("{n}", str(n))))
    result = asyncio.run(engine(tmp_path).run(FLAKY_PLAN, replan="on-failure", max_replans=2))
    assert len(result.replans) == 2 and len(PROVIDER.calls) == 2
    assert result.status == "failed"


def test_invalid_revision_is_rejected_and_recorded(tmp_path: Path) -> None:
    """A revision that does not check (unknown tool) is refused; the plan goes on."""
    import asyncio

    decisions(
        {
            "action": "revise",
            "reason": "r",
            "steps": [{"id": "z", "tool": "rm_rf", "args": {}, "depends_on": []}],
        },
    )
    result = asyncio.run(engine(tmp_path).run(FLAKY_PLAN, replan="on-failure", max_replans=1))
    assert result.replans[0].added is None and "unknown tool `rm_rf`" in result.replans[0].reason


def test_user_policy_object(tmp_path: Path) -> None:
    """Any object with wants() and decide() is a policy."""
    import asyncio

    class FinishOnFailure:
        def wants(self, trigger: str, finished_steps: int) -> bool:
            return trigger == "failure"

        async def decide(self, request: ReplanRequest) -> Decision:
            return Decision("finish", "custom", answer=f"gave up at {request.step}")

    result = asyncio.run(engine(tmp_path).run(FLAKY_PLAN, replan=FinishOnFailure()))
    assert result.outputs == {"answer": "gave up at b"}


def test_results_are_truncated_for_the_replanner() -> None:
    """The replanner sees finished results within a budget, not the whole history."""
    shown = truncate_results({"big": "x" * 5000, "small": "ok"}, per_result=100, total=150)
    assert len(shown["big"]) <= 100 and shown["big"].endswith("(shortened)")
    assert shown["small"] == "ok"


def test_replanned_runs_are_journaled_with_their_replans(tmp_path: Path) -> None:
    """The journal (and `show`) records a replanned run's end: its replans, the
    replanner's cost, and a run the replanner finished early; listeners hear the end."""
    import asyncio

    from engine.run.events import RunFinished
    from engine.store.journal import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    eng = engine(tmp_path)
    eng.journal = journal
    decisions(
        {
            "action": "revise",
            "reason": "double a instead",
            "steps": [{"id": "b2", "tool": "calculate", "args": {"expression": "{{ a }} * 2"}}],
            "outputs": ["b2"],
        }
    )
    revised = asyncio.run(eng.run(FLAKY_PLAN, replan="on-failure"))
    stored = journal.result_json(revised.run_id)
    assert stored is not None and stored == json.loads(revised.dumps())
    assert stored["replans"][0]["added"] == ["b2"] and stored["outputs"] == {"b2": 84.0}
    assert journal.run(revised.run_id).cost_usd == pytest.approx(revised.cost_usd)

    decisions({"action": "finish", "reason": "enough", "answer": "42"})
    heard: list[object] = []
    finished = asyncio.run(eng.run(FLAKY_PLAN, replan="on-failure", on_event=heard.append))
    assert journal.run(finished.run_id).status == "succeeded"
    assert journal.result_json(finished.run_id) == json.loads(finished.dumps())
    ends = [e for e in heard if isinstance(e, RunFinished)]
    assert len(ends) == 1 and ends[0].outputs == {"answer": "42"}

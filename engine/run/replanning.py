"""Replanning rounds: run, stop where the replan policy wants to decide, go on, revise or finish.

The policy itself (a model asked for a decision, the revised plan checked) lives in
engine/agent/replan.py and reaches the run through the `Replanning` Protocol; this
module only keeps the run's side: what finished, what is carried into the next round,
and the record of each revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dsl.checker import CheckedPlan
from engine.run.result import Replan, RunResult, RunStatus, StepRecord, StepStatus

if TYPE_CHECKING:
    from engine.run.session import RunSession


@dataclass
class RoundEnd:
    """Where a replanning round stopped, for the policy to decide on."""

    checked: CheckedPlan
    trigger: str  # failure, step, surprise
    step: str
    error: str | None
    finished: dict[str, StepRecord]  # succeeded, skipped or failed
    values: dict[str, Any]  # results of the succeeded steps
    done: set[str]  # what truly finished: successes and `when` skips
    revisions: int


@dataclass
class RoundDecision:
    """The policy's answer; for `revise`, the revised plan already checked."""

    action: str  # continue, revise, finish
    reason: str = ""
    added: list[str] = field(default_factory=list)
    answer: Any = None
    checked: CheckedPlan | None = None
    rejected: str | None = None  # a revision the checker refused: why


class Replanning(Protocol):
    """A replan policy wired for a run (engine.agent.replan.PolicyRounds)."""

    @property
    def cost_usd(self) -> float:
        """What asking it cost so far."""

    def wants(self, trigger: str, finished_steps: int) -> bool: ...

    async def decide(self, end: RoundEnd) -> RoundDecision: ...


async def run_rounds(run: RunSession, replanning: Replanning, max_replans: int) -> RunResult:
    """Run, stop where the policy wants to decide, go on / revise / finish; repeat."""
    replans: list[Replan] = []
    first = True
    while True:
        revisions = sum(1 for r in replans if r.accepted)
        wants = replanning.wants if revisions < max_replans else None
        result = await run.round(wants, first)
        first = False
        if run.cancelled or run.trigger is None:
            break
        kind, step_id, error = run.trigger
        finished = {
            n: r
            for n, r in result.steps.items()
            if r.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED)
        }
        done = {n for n, r in finished.items() if r.is_done}
        end = RoundEnd(
            checked=run.checked,
            trigger=kind,
            step=step_id,
            error=error,
            finished=finished,
            values={
                n: run.values.get(n)
                for n, r in finished.items()
                if r.status == StepStatus.SUCCEEDED
            },
            done=done,
            revisions=revisions,
        )
        decision = await replanning.decide(end)
        run.hooks.call(
            "replanned",
            run,
            {
                "trigger": kind,
                "step": step_id,
                "error": error,
                "action": decision.action,
                "reason": decision.reason,
                "added": decision.added,
            },
        )
        run.carried = finished
        if decision.action == "finish":
            result = _finished_early(result, finished, decision.answer)
            break
        if decision.action != "revise":
            continue
        if decision.checked is None:
            replans.append(Replan(step_id, f"revision rejected: {decision.rejected}"))
            continue
        # Kept: what truly finished (successes, `when` skips). A failed step and the
        # steps skipped because of it are replaced by the revision.
        removed = tuple(s.id for s in run.checked.plan.steps if s.id not in done)
        run.carried = {n: r for n, r in finished.items() if n in done}
        replans.append(Replan(step_id, decision.reason, tuple(decision.added), removed))
        run.checked = decision.checked
    result.replans = replans
    result.cost_usd += replanning.cost_usd
    return result


def _finished_early(
    result: RunResult, finished: Mapping[str, StepRecord], answer: Any
) -> RunResult:
    for name, record in result.steps.items():
        if name not in finished:
            record.status = StepStatus.SKIPPED
            record.error = "not needed: the replan policy finished the run"
    result.status = RunStatus.SUCCEEDED
    result.outputs = {"answer": answer}
    return result

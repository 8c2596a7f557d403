"""Replanning: pluggable policies that decide, at defined points, how a run goes on.

A policy names the points it wants to be asked at (a step failed, a step finished, a
step's `check` failed) and answers `continue`, `revise` (new remaining steps, which may
use finished steps' results by name) or `finish` (with the answer). Finished steps are
never run again. Built-ins by name: never, on-failure, after-each-step, every-n,
on-surprise; any object with `wants()` and `decide()` works.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol

import jinja2

from dsl.checker import CheckedPlan
from dsl.errors import PlanError
from dsl.ir import Plan, Step
from dsl.json_loader import load_json
from dsl.printer import format_plan
from engine.errors import RunSetupError
from engine.models.gateway import Gateway
from engine.models.structured import parse_reply
from engine.run.replanning import RoundDecision, RoundEnd

Trigger = Literal["failure", "step", "surprise"]
POLICIES = ("never", "on-failure", "after-each-step", "every-n", "on-surprise")
RESULT_CHARS = 600
CONTEXT_CHARS = 6000


@dataclass
class ReplanRequest:
    """What a policy sees: the goal, the plan, finished results (truncated), the event."""

    goal: str
    plan: Plan
    trigger: Trigger
    step: str
    error: str | None
    completed: dict[str, Any]
    failed: dict[str, str]
    replans: int


@dataclass
class Decision:
    action: Literal["continue", "revise", "finish"]
    reason: str = ""
    steps: tuple[Step, ...] = ()
    outputs: tuple[str, ...] = ()
    answer: Any = None


class ReplanPolicy(Protocol):
    """Decides, at the points it wants, whether the plan goes on, changes, or ends."""

    def wants(self, trigger: str, finished_steps: int) -> bool: ...

    async def decide(self, request: ReplanRequest) -> Decision: ...


class Never:
    """A static plan: failures follow `on_error`."""

    def wants(self, trigger: str, finished_steps: int) -> bool:
        return False

    async def decide(self, request: ReplanRequest) -> Decision:
        return Decision("continue")


@dataclass
class Replanner:
    """Asks a model (the planner tier) for a decision, as JSON."""

    gateway: Gateway
    model: str
    tools: Mapping[str, Any]
    usage: Any
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    calls: int = 0

    async def ask(self, request: ReplanRequest) -> Decision:
        self.calls += 1
        text = (
            resources.files("engine.agent")
            .joinpath("prompts", "replanner.md.j2")
            .read_text(encoding="utf-8")
        )
        event = f"step `{request.step}` " + (
            f"failed: {request.error}"
            if request.trigger == "failure"
            else f"failed its check: {request.error}"
            if request.trigger == "surprise"
            else "finished"
        )
        prompt = (
            jinja2.Environment(autoescape=False)
            .from_string(text)
            .render(
                goal=request.goal,
                plan_text=format_plan(request.plan),
                completed=request.completed,
                failed=request.failed,
                event=event,
                tools=[spec.signature() for spec in self.tools.values()],
            )
        )
        reply = await self.gateway.call(
            self.model,
            [{"role": "user", "content": prompt}],
            usage=self.usage,
            run_id=self.run_id,
            step_id=f"replanning#{self.calls}",
            max_tokens=1200,
            temperature=0,
            schema=DECISION_SCHEMA,
        )
        return parse_decision(reply, request, self.tools)


DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"enum": ["continue", "revise", "finish"]},
        "reason": {"type": "string", "maxLength": 300},
        "answer": {"type": "string", "maxLength": 4000},
        "steps": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,30}$"},
                    "tool": {"type": "string"},
                    "args": {"type": "object"},
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                    "tier": {"enum": ["fast", "standard", "frontier"]},
                    "description": {"type": "string", "maxLength": 120},
                },
                "required": ["id", "tool", "args", "depends_on"],
            },
        },
        "outputs": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["action", "reason"],
}


def parse_decision(reply: str, request: ReplanRequest, tools: Mapping[str, Any]) -> Decision:
    """A model's reply as a Decision; anything unusable is `continue` with the reason."""
    try:
        data = parse_reply(reply)  # dsl/repair.py's repair, as for plans
    except ValueError as err:
        return Decision(
            "continue", f"the replanner's reply was not usable JSON ({err}); the plan goes on"
        )
    if not isinstance(data, dict) or data.get("action") not in ("continue", "revise", "finish"):
        return Decision("continue", "the replanner's reply had no valid action; the plan goes on")
    reason = str(data.get("reason") or "")
    if data["action"] == "finish":
        return Decision("finish", reason, answer=data.get("answer"))
    if data["action"] == "continue":
        return Decision("continue", reason)
    steps = data.get("steps") or []
    finished = {name for name in request.completed} | set(request.failed)
    try:
        # Finished steps are known names for the loader; new steps must not reuse them.
        doc = {"goal": request.goal, "steps": steps}
        plan, _ = load_json(doc, "replan.json", tools)
    except PlanError as err:
        return Decision(
            "continue", f"revision rejected ({err.diagnostics[0].message}); the plan goes on"
        )
    reused = [s.id for s in plan.steps if s.id in finished]
    if reused:
        return Decision(
            "continue", f"revision rejected (reuses finished step `{reused[0]}`); the plan goes on"
        )
    outputs = tuple(str(o) for o in data.get("outputs") or ())
    return Decision("revise", reason, steps=plan.steps, outputs=outputs)


class LLMPolicy:
    """A built-in policy: asks the replanner at the points its name says."""

    def __init__(self, name: str, replanner: Replanner, every: int = 3):
        if name not in POLICIES or name == "never":
            raise RunSetupError(f"unknown replan policy `{name}` (policies: {', '.join(POLICIES)})")
        self.name = name
        self.replanner = replanner
        self.every = max(1, every)

    def wants(self, trigger: str, finished_steps: int) -> bool:
        if self.name == "on-failure":
            return trigger == "failure"
        if self.name == "on-surprise":
            return trigger in ("surprise", "failure")
        if self.name == "after-each-step":
            return True
        return trigger == "failure" or (trigger == "step" and finished_steps % self.every == 0)

    async def decide(self, request: ReplanRequest) -> Decision:
        return await self.replanner.ask(request)


def truncate_results(
    values: Mapping[str, Any], per_result: int = RESULT_CHARS, total: int = CONTEXT_CHARS
) -> dict[str, str]:
    """Finished results as short text: the replanner sees a budget, not the history."""
    out: dict[str, str] = {}
    used = 0
    for name, value in values.items():
        text = (
            value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        )
        text = " ".join(text.split())
        marker = " …(shortened)"
        if len(text) > per_result:
            text = text[: per_result - len(marker)] + marker
        if used + len(text) > total:
            out[name] = "(omitted: context budget)"
            continue
        used += len(text)
        out[name] = text
    return out


def revised_plan(plan: Plan, finished: set[str], decision: Decision) -> Plan:
    """The finished steps as they were, then the decision's new steps."""
    kept = tuple(step for step in plan.steps if step.id in finished)
    steps = (*kept, *decision.steps)
    outputs = decision.outputs or ((decision.steps[-1].id,) if decision.steps else plan.outputs)
    return plan.model_copy(
        update={
            "steps": steps,
            "outputs": tuple(o for o in outputs if any(s.id == o for s in steps)),
        }
    )


class PolicyRounds:
    """A replan policy wired for one run (engine.run.replanning.Replanning): builds the
    request the policy sees, and checks a revision before the run takes it."""

    def __init__(
        self,
        policy: ReplanPolicy,
        goal: str,
        check: Callable[[Plan], CheckedPlan],
    ):
        self.policy = policy
        self.goal = goal
        self.check = check

    def wants(self, trigger: str, finished_steps: int) -> bool:
        return self.policy.wants(trigger, finished_steps)

    @property
    def cost_usd(self) -> float:
        """What the policy's model calls cost (a built-in policy's replanner's usage)."""
        usage = getattr(getattr(self.policy, "replanner", None), "usage", None)
        return float(getattr(usage, "cost_usd", 0.0) or 0.0)

    async def decide(self, end: RoundEnd) -> RoundDecision:
        request = ReplanRequest(
            goal=self.goal,
            plan=end.checked.plan,
            trigger=end.trigger,  # type: ignore[arg-type]
            step=end.step,
            error=end.error,
            completed=truncate_results(end.values),
            failed={
                n: r.error or "failed" for n, r in end.finished.items() if r.status == "failed"
            },
            replans=end.revisions,
        )
        decision = await self.policy.decide(request)
        added = [s.id for s in decision.steps]
        if decision.action == "finish":
            return RoundDecision("finish", decision.reason, added, answer=decision.answer)
        if decision.action != "revise":
            return RoundDecision(decision.action, decision.reason, added)
        try:
            checked = self.check(revised_plan(end.checked.plan, end.done, decision))
        except PlanError as err:
            return RoundDecision(
                "revise", decision.reason, added, rejected=err.diagnostics[0].message
            )
        return RoundDecision("revise", decision.reason, added, checked=checked)

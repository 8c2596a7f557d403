"""Which model a step's call uses: a replaceable policy (`ModelSelector`) and the tier one.

Explicit model or tier > the step's task type > the default tier; a retry escalates one
tier up; when the remaining budget cannot pay a call's worst case, a cheaper tier is used
if the step allows it (the gateway then stops the run with `budget_exceeded` if none fits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dsl.ir import Step
from engine.models.local_model import LOCAL_MODEL

TIER_ORDER = ("fast", "standard", "frontier")
TASK_TIERS = {
    "search": "fast",
    "analyze": "standard",
    "code": "frontier",
    "reasoning": "frontier",
    "writing": "standard",
}


@dataclass(frozen=True)
class Choice:
    model: str
    tier: str | None
    reason: str


class ModelSelector(Protocol):
    """Chooses the model for a step's call (user-replaceable)."""

    def choose(self, step: Step, attempt: int, afford: Callable[[str], bool]) -> Choice: ...


def base_tier(step: Step, default_tier: str) -> str:
    """The tier a model step starts on, before escalation or downgrade: its own tier, else
    its task type's, else the default."""
    if step.tier:
        return step.tier
    if step.task and step.task in TASK_TIERS:
        return TASK_TIERS[step.task]
    return default_tier


class TierSelector:
    """Explicit model/tier > task type > default tier; escalate on retry; downgrade for budget."""

    def __init__(
        self,
        tiers: Mapping[str, str],
        *,
        default_tier: str = "standard",
        escalate: bool = True,
        downgrade: bool = True,
    ):
        self.tiers = dict(tiers)
        self.default_tier = default_tier
        self.escalate = escalate
        self.downgrade = downgrade

    def base_tier(self, step: Step) -> str:
        return base_tier(step, self.default_tier)

    def model_for(self, tier: str) -> str:
        return self.tiers.get(tier) or LOCAL_MODEL

    def choose(self, step: Step, attempt: int, afford: Callable[[str], bool]) -> Choice:
        if step.model:
            return Choice(step.model, None, "the step's model")
        tier = self.base_tier(step)
        reason = (
            "the step's tier"
            if step.tier
            else (f"task `{step.task}`" if step.task else "the default tier")
        )
        if self.escalate and attempt > 1 and tier in TIER_ORDER:
            higher = TIER_ORDER[min(len(TIER_ORDER) - 1, TIER_ORDER.index(tier) + attempt - 1)]
            if higher != tier:
                tier, reason = higher, f"escalated after {attempt - 1} failed attempt(s)"
        model = self.model_for(tier)
        if self.downgrade and not step.tier and tier in TIER_ORDER and not afford(model):
            for cheaper in reversed(TIER_ORDER[: TIER_ORDER.index(tier)]):
                candidate = self.model_for(cheaper)
                if afford(candidate):
                    return Choice(candidate, cheaper, f"downgraded from `{tier}` to fit the budget")
        return Choice(model, tier, reason)

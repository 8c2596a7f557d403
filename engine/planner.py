"""The planner: an LLM writes a plan for a goal; it is checked, repaired, and joined.

The prompt (`engine/prompts/planner.md.j2`) gets the goal, the tool catalogue (only the
tools the run allows), the tiers, and worked examples. The reply is requested as
structured output against a plan schema whose `tool` is an enum of the allowed tools,
then goes through the same loader and checker as a hand-written plan. When it fails, the
errors (with their JSON paths) go back to the model for a repair, at most
`max_repairs` times; every attempt and its errors are kept. Planning calls are priced
and ledgered like any other call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2

from dsl.checker import CheckedPlan, check
from dsl.errors import PlanError
from dsl.json_loader import load_json
from engine.ir import Plan, Step

from .local_model import LOCAL_MODEL
from .models import Gateway, parse_reply

# Tools a model-written plan may call unless the user allows more: they touch nothing
# outside the run's workspace. `http_get` and user tools need an explicit allow.
SAFE_TOOLS = (
    "calculate",
    "search",
    "read_file",
    "write_file",
    "list_files",
    "json_query",
    "parse_json",
    "llm",
    "summarize",
    "extract",
)
PLANNER_TIER = "planner"
PLANNER_MAX_TOKENS = 1200


@dataclass
class Usage:
    """Token and cost counters for calls that belong to no step (planning, joining)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model: str | None = None


@dataclass
class Attempt:
    number: int
    reply: str
    errors: list[str] = field(default_factory=list)


@dataclass
class Planned:
    """What planning produced: the checked plan (or None), every attempt, the cost."""

    goal: str
    checked: CheckedPlan | None
    attempts: list[Attempt]
    usage: Usage

    @property
    def ok(self) -> bool:
        return self.checked is not None


def allowed_tools(registry: Mapping[str, Any], allow: Iterable[str] = ()) -> dict[str, Any]:
    """The safe stdlib tools plus the ones the user allows by name."""
    wanted = set(SAFE_TOOLS) | set(allow)
    return {name: spec for name, spec in registry.items() if name in wanted}


def planner_schema(tools: Iterable[str]) -> dict[str, Any]:
    """The JSON schema the planner's reply must follow (the tool is an enum)."""
    # Length caps keep a weak model from looping inside one string until max_tokens.
    scalar = {
        "anyOf": [{"type": "string", "maxLength": 400}, {"type": "number"}, {"type": "boolean"}]
    }
    return {
        "type": "object",
        "properties": {
            "goal": {"type": "string", "maxLength": 300},
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": 12,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,30}$"},
                        "tool": {"enum": sorted(tools)},
                        "args": {"type": "object", "additionalProperties": scalar},
                        "depends_on": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,30}$"},
                            "maxItems": 6,
                        },
                        "tier": {"enum": ["fast", "standard", "frontier"]},
                        "description": {"type": "string", "maxLength": 120},
                    },
                    "required": ["id", "tool", "args", "depends_on", "description"],
                },
            },
            "outputs": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,30}$"},
                "minItems": 1,
                "maxItems": 4,
            },
        },
        "required": ["goal", "steps", "outputs"],
    }


def _template(name: str) -> jinja2.Template:
    text = resources.files("engine").joinpath("prompts", name).read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=False, keep_trailing_newline=True).from_string(text)


def _examples() -> list[dict[str, str]]:
    raw = json.loads(
        resources.files("engine").joinpath("prompts", "examples.json").read_text(encoding="utf-8")
    )
    return [{"goal": e["goal"], "plan": json.dumps(e["plan"], indent=1)} for e in raw]


def planner_prompt(goal: str, tools: Mapping[str, Any], tiers: Mapping[str, str]) -> str:
    catalogue = [
        {"signature": spec.signature(), "description": spec.description} for spec in tools.values()
    ]
    shown_tiers = {name: tiers.get(name, "") for name in ("fast", "standard", "frontier")}
    return _template("planner.md.j2").render(
        goal=goal, tools=catalogue, tiers=shown_tiers, examples=_examples()
    )


def add_joiner(plan: Plan, tools: Mapping[str, Any]) -> Plan:
    """A plan whose outputs are not one model step gets a synthesis step on `standard`."""
    ids = {s.id for s in plan.steps}
    if any(name not in ids for name in plan.outputs) or not plan.steps:
        return plan  # the checker reports the unknown output; joining it would hide that
    if len(plan.outputs) == 1:
        output = next(s for s in plan.steps if s.id == plan.outputs[0])
        if getattr(tools.get(output.tool), "uses_model", False):
            return plan
    used = {dep for s in plan.steps for dep in s.after}
    sources = list(plan.outputs) or [s.id for s in plan.steps if s.id not in used]
    lines = "\n".join(f"- {name}: {{{{ {name} }}}}" for name in sources)
    goal = (plan.goal or "the question").replace("{{", "{ {").replace("{%", "{ %")
    answer_id = "answer" if all(s.id != "answer" for s in plan.steps) else "final_answer"
    joiner = Step(
        id=answer_id,
        tool="llm",
        tier="standard",
        task="writing",
        args={
            "prompt": f"Goal: {goal}\nResults:\n{lines}\nAnswer the goal from these results, briefly and exactly."
        },
        description="the answer, joined from the plan's results",
    )
    return plan.model_copy(update={"steps": (*plan.steps, joiner), "outputs": (answer_id,)})


class Planner:
    """Asks the planner tier for a plan and repairs it until it checks (or gives up)."""

    def __init__(
        self,
        gateway: Gateway,
        tools: Mapping[str, Any],
        *,
        tiers: Mapping[str, str] | None = None,
        max_repairs: int = 2,
        model: str | None = None,
        mock_response: str | None = None,
    ):
        self.gateway = gateway
        self.tools = dict(tools)
        self.tiers = dict(tiers or {})
        self.max_repairs = max_repairs
        self.model = model
        self.mock_response = mock_response

    def planner_model(self) -> str:
        if self.model:
            return self.gateway.usable(self.model)
        tier = PLANNER_TIER if PLANNER_TIER in self.tiers else "frontier"
        return self.gateway.usable(self.tiers.get(tier) or LOCAL_MODEL)

    async def plan(self, goal: str, *, run_id: str | None = None) -> Planned:
        run_id = run_id or uuid.uuid4().hex[:12]
        model = self.planner_model()
        usage = Usage(model=model)
        schema = planner_schema(self.tools)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You write plans as JSON for a plan-and-execute agent."},
            {"role": "user", "content": planner_prompt(goal, self.tools, self.tiers)},
        ]
        attempts: list[Attempt] = []
        for number in range(1, self.max_repairs + 2):
            reply = await self.gateway.call(
                model,
                messages,
                usage=usage,
                run_id=run_id,
                step_id=f"planning#{number}",
                max_tokens=PLANNER_MAX_TOKENS,
                # A repair at temperature 0 tends to repeat the failed reply word for word.
                temperature=0 if number == 1 else 0.4,
                schema=schema,
                mock=self.mock_response,
            )
            attempt = Attempt(number, reply)
            attempts.append(attempt)
            checked, errors = self._check(reply, goal)
            if checked is not None:
                return Planned(goal, checked, attempts, usage)
            attempt.errors = errors
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": "The plan has these problems:\n"
                    + "\n".join(f"- {e}" for e in errors[:20])
                    + "\nReturn the whole corrected plan as JSON.",
                },
            ]
        return Planned(goal, None, attempts, usage)

    def _check(self, reply: str, goal: str) -> tuple[CheckedPlan | None, list[str]]:
        try:
            doc = parse_reply(reply)
        except ValueError as err:
            return None, [f"the reply is not JSON: {err}"]
        if isinstance(doc, dict):
            doc.setdefault("goal", goal)
        try:
            plan, smap = load_json(doc, "plan.json", self.tools)
            plan = add_joiner(plan, self.tools)
            if not plan.goal:
                plan = plan.model_copy(update={"goal": goal})
            return check(plan, self.tools, smap, tiers=self.tiers), []
        except PlanError as err:
            return None, [
                f"{d.location}: {d.message}" + (f" ({d.hint})" if d.hint else "")
                for d in err.errors
            ]


__all__ = ["SAFE_TOOLS", "Attempt", "Planned", "Planner", "Usage", "add_joiner", "allowed_tools"]

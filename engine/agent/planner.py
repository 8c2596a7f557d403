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
from dsl.ir import Plan, Step
from dsl.json_loader import load_json
from dsl.repair import parse_model_json
from engine.models.gateway import Gateway
from engine.models.local_model import LOCAL_MODEL

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
PLANNER_MAX_TOKENS = 2000


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
    repairs: list[str] = field(default_factory=list)  # mechanical fixes applied before checking


def mechanical_repairs(doc: Any) -> list[str]:
    """Fix what carries no information, in place; say what was fixed.

    A `depends_on` entry naming no step of the plan (or the step itself) orders nothing
    (data dependencies come from the templates), and an output naming no step selects
    nothing (the joiner then answers from the plan's results). Weak models copy such names
    from the worked examples; dropping them is not worth a model call.
    """
    notes: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        return notes
    ids = {s.get("id") for s in doc["steps"] if isinstance(s, dict)}
    for index, step in enumerate(doc["steps"]):
        if not isinstance(step, dict) or not isinstance(step.get("depends_on"), list):
            continue
        kept = [d for d in step["depends_on"] if d in ids and d != step.get("id")]
        dropped = [d for d in step["depends_on"] if d not in kept]
        if dropped:
            notes.append(
                f"steps[{index}].depends_on: dropped {', '.join(map(str, dropped))} (no such earlier step)"
            )
            step["depends_on"] = kept
    if isinstance(doc.get("outputs"), list):
        kept_outputs = [o for o in doc["outputs"] if o in ids]
        if len(kept_outputs) != len(doc["outputs"]):
            notes.append("outputs: dropped names of no step (the joiner answers from the results)")
            doc["outputs"] = kept_outputs
    return notes


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


def _param_schema(plan_type: Any) -> dict[str, Any]:
    """A JSON schema for a tool parameter's plan type (strings may be templates)."""
    kind = getattr(plan_type, "kind", "json")
    if kind == "str":
        return {"type": "string", "maxLength": 400}
    if kind == "int":
        return {"type": "integer"}
    if kind == "float":
        return {"type": "number"}
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "list":
        return {"type": "array", "maxItems": 10, "items": {"type": ["string", "number"]}}
    return {"type": ["string", "number", "boolean"]}


def _step_schema(name: str, spec: Any) -> dict[str, Any]:
    """One step shape per tool, so the grammar enforces its parameter names and types."""
    params = [p for p in spec.params if p.name not in ("temperature", "max_tokens")]
    step: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,30}$"},
            "tool": {"const": name},
            "args": {
                "type": "object",
                "properties": {p.name: _param_schema(p.type) for p in params},
                "required": [p.name for p in params if p.required],
                "additionalProperties": False,
            },
            "depends_on": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,30}$"},
                "maxItems": 6,
            },
            "description": {"type": "string", "maxLength": 120},
        },
        "required": ["id", "tool", "args", "depends_on", "description"],
        "additionalProperties": False,
    }
    if getattr(spec, "uses_model", False):
        step["properties"]["tier"] = {"enum": ["fast", "standard", "frontier"]}
    return step


def planner_schema(tools: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema the planner's reply must follow: each step is one of the allowed
    tools with that tool's own arguments (length caps keep a weak model from looping)."""
    return {
        "type": "object",
        "properties": {
            "goal": {"type": "string", "maxLength": 300},
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": 12,
                "items": {
                    "anyOf": [_step_schema(name, spec) for name, spec in sorted(tools.items())]
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
        "additionalProperties": False,
    }


def _template(name: str) -> jinja2.Template:
    text = resources.files("engine.agent").joinpath("prompts", name).read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=False, keep_trailing_newline=True).from_string(text)


def _examples() -> list[dict[str, str]]:
    raw = json.loads(
        resources.files("engine.agent")
        .joinpath("prompts", "examples.json")
        .read_text(encoding="utf-8")
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
            checked, errors = self._check(reply, goal, attempt)
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

    def _check(
        self, reply: str, goal: str, attempt: Attempt
    ) -> tuple[CheckedPlan | None, list[str]]:
        try:
            # The loader's repair (dsl/repair.py): fences, trailing commas, cut-off replies.
            doc, notes = parse_model_json(reply, "plan.json")
        except PlanError as err:
            return None, [f"the reply is not JSON: {d.location}: {d.message}" for d in err.errors]
        attempt.repairs = [d.message for d in notes] + mechanical_repairs(doc)
        if isinstance(doc, dict):
            doc.setdefault("goal", goal)
        try:
            plan, smap = load_json(doc, "plan.json", self.tools, notes=notes)
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

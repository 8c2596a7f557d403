"""The planner: an LLM writes a plan for a goal; it is checked, repaired, and joined.

The prompt (`prompts/planner.md.j2`) gets the goal, a compact catalogue of the tools the
run allows, and at most two worked examples chosen for the goal (engine/agent/examples.py).
On the embedded model the reply is constrained by a grammar built for the request
(engine/agent/plan_grammar.py): positional step ids, only earlier steps referenced, only
offered tools with their own typed arguments, arithmetic for `calculate`, a bounded number
of steps; every such reply loads and checks. Other models get the plan schema as
structured output. Either way the reply goes through the same loader and checker as a
hand-written plan; when it fails, the errors (with their JSON paths), the valid ids and
tools go back for a repair, at most `max_repairs` times, with sampling that changes; every
attempt and its errors are kept. Planning calls are priced and ledgered like any other.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dsl.checker import CheckedPlan, check
from dsl.errors import PlanError
from dsl.ir import Plan, Step
from dsl.json_loader import load_json
from dsl.repair import parse_model_json
from engine.agent.plan_grammar import DEFAULT_MAX_STEPS, plan_grammar
from engine.agent.planner_prompt import feedback, planner_prompt
from engine.models.gateway import Gateway
from engine.models.local_model import LOCAL_MODEL
from engine.models.local_model import PROVIDER as LOCAL_PROVIDER

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
_TAG_OPEN = re.compile(r"\{(?=[{%#])")
# Sampling temperature of attempt 1, 2, 3, ... (the last repeats).
RETRY_TEMPERATURES = (0.0, 0.5, 0.8, 1.0)


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
            "id": {"type": "string", "pattern": "^s[1-9][0-9]?$"},
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
        "required": ["id", "tool", "args"],
        "additionalProperties": False,
    }
    if getattr(spec, "uses_model", False):
        step["properties"]["tier"] = {"enum": ["fast", "standard", "frontier"]}
    return step


def planner_schema(tools: Mapping[str, Any], max_steps: int = DEFAULT_MAX_STEPS) -> dict[str, Any]:
    """The JSON schema the planner's reply must follow where no grammar can be given: each
    step is one of the allowed tools with that tool's own arguments (length caps keep a
    weak model from looping)."""
    return {
        "type": "object",
        "properties": {
            "goal": {"type": "string", "maxLength": 300},
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {
                    "anyOf": [_step_schema(name, spec) for name, spec in sorted(tools.items())]
                },
            },
            "outputs": {
                "type": "array",
                "items": {"type": "string", "pattern": "^s[1-9][0-9]?$"},
                "minItems": 1,
                "maxItems": 4,
            },
        },
        "required": ["steps", "outputs"],
        "additionalProperties": False,
    }


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
    # The goal is user text inside a template: no `{{`, `{%` or `{#` may open a tag.
    goal = _TAG_OPEN.sub("{ ", plan.goal or "the question")
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
    """Asks the planner tier for a plan and repairs it until it checks (or gives up).

    On a model that takes a GBNF grammar (the embedded one) the reply is constrained to
    plans that load and check (engine/agent/plan_grammar.py); any other model gets the
    plan schema as structured output and the repair loop, whose retries differ: the
    errors, the valid ids and tools, a note when a reply repeats an earlier one, and a
    higher temperature each time (and a new seed where the provider takes one).
    """

    def __init__(
        self,
        gateway: Gateway,
        tools: Mapping[str, Any],
        *,
        tiers: Mapping[str, str] | None = None,
        max_repairs: int = 2,
        model: str | None = None,
        mock_response: str | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
    ):
        self.gateway = gateway
        self.tools = dict(tools)
        self.tiers = dict(tiers or {})
        self.max_repairs = max_repairs
        self.model = model
        self.mock_response = mock_response
        self.max_steps = max_steps

    def planner_model(self) -> str:
        if self.model:
            return self.gateway.usable(self.model)
        tier = PLANNER_TIER if PLANNER_TIER in self.tiers else "frontier"
        return self.gateway.usable(self.tiers.get(tier) or LOCAL_MODEL)

    def request(self, model: str, number: int, goal: str | None = None) -> dict[str, Any]:
        """The call's sampling and constraint for attempt `number` (1-based); with `goal`,
        the grammar keeps calculations to its numbers and queries to its words."""
        # A retry at the same temperature tends to repeat the failed reply word for word.
        temperature = RETRY_TEMPERATURES[min(number, len(RETRY_TEMPERATURES)) - 1]
        grammar = None
        if takes_grammar(model):
            # No offered tool with a value grammar: the schema and the repair loop instead.
            with contextlib.suppress(ValueError):
                grammar = plan_grammar(self.tools, max_steps=self.max_steps, goal=goal)
        if grammar is not None:
            return {
                "temperature": temperature,
                "max_tokens": grammar.max_tokens,
                "schema": None,
                "extra": {"grammar": grammar.gbnf, "seed": number},
            }
        return {
            "temperature": temperature,
            "max_tokens": PLANNER_MAX_TOKENS,
            "schema": planner_schema(self.tools, self.max_steps),
            "extra": None,
        }

    async def plan(self, goal: str, *, run_id: str | None = None) -> Planned:
        run_id = run_id or uuid.uuid4().hex[:12]
        model = self.planner_model()
        usage = Usage(model=model)
        # A tiny grammar-bound model copies every example it is shown, the second best
        # too; one fitting example shows the form (the grammar enforces it).
        shown = 1 if takes_grammar(model) else 2
        prompt = planner_prompt(
            goal, self.tools, self.tiers, max_steps=self.max_steps, examples=shown
        )
        base: list[dict[str, Any]] = [
            {"role": "system", "content": "You write plans as JSON for a plan-and-execute agent."},
            {"role": "user", "content": prompt},
        ]
        messages = base
        attempts: list[Attempt] = []
        for number in range(1, self.max_repairs + 2):
            reply = await self.gateway.call(
                model,
                messages,
                usage=usage,
                run_id=run_id,
                step_id=f"planning#{number}",
                mock=self.mock_response,
                **self.request(model, number, goal),
            )
            attempt = Attempt(number, reply)
            attempts.append(attempt)
            checked, errors = self._check(reply, goal, attempt)
            if checked is not None:
                return Planned(goal, checked, attempts, usage)
            attempt.errors = errors
            # Only the latest reply and its feedback go back: a history of identical
            # failures teaches the model to repeat them.
            messages = [
                *base,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": feedback(attempts, self.tools, 1 + self.max_repairs)},
            ]
        return Planned(goal, None, attempts, usage)

    def _check(
        self, reply: str, goal: str, attempt: Attempt
    ) -> tuple[CheckedPlan | None, list[str]]:
        try:
            # The loader's repair (dsl/repair.py): fences, trailing commas, cut-off replies,
            # raw control characters inside strings.
            doc, notes = parse_model_json(reply, "plan.json")
        except PlanError as err:
            return None, [f"the reply is not JSON: {d.location}: {d.message}" for d in err.errors]
        attempt.repairs = [d.message for d in notes] + mechanical_repairs(doc)
        if isinstance(doc, dict):
            # The goal is the user's text, never the model's copy of it (a grammar-made
            # plan has none): it is not a template, so its braces are plain text.
            doc["goal"] = goal
        try:
            plan, smap = load_json(doc, "plan.json", self.tools, notes=notes)
            plan = add_joiner(plan, self.tools)
            return check(plan, self.tools, smap, tiers=self.tiers), []
        except PlanError as err:
            return None, [
                f"{d.location}: {d.message}" + (f" ({d.hint})" if d.hint else "")
                for d in err.errors
            ]


def takes_grammar(model: str) -> bool:
    """Whether the model's provider constrains replies with a GBNF `grammar` (the embedded one)."""
    return model.startswith(f"{LOCAL_PROVIDER}/")


__all__ = [
    "SAFE_TOOLS",
    "Attempt",
    "Planned",
    "Planner",
    "Usage",
    "add_joiner",
    "allowed_tools",
    "feedback",
    "planner_prompt",
    "takes_grammar",
]

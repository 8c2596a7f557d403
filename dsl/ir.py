"""The Plan IR: the one typed contract between the front ends (text, JSON) and the engine.

A `Plan` is data as the author wrote it (pydantic, frozen). Checking a plan does not
change it; the checker returns a `CheckedPlan` (see `dsl.checker`) that pairs the plan
with what was inferred from it (dependencies, types). The JSON schema of a plan
(`planfile schema`) is exported from these models.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)
from typing_extensions import TypeAliasType

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NAME_RE = re.compile(NAME_PATTERN)

TaskType = Literal["search", "analyze", "code", "reasoning", "writing"]
TASK_TYPES: tuple[str, ...] = ("search", "analyze", "code", "reasoning", "writing")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ref(_Frozen):
    """A bare reference to an input or a step's result, optionally into its fields.

    `{"ref": "verdict.city"}` reads field `city` of step `verdict`'s record result.
    """

    ref: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

    @property
    def root(self) -> str:
        return self.ref.split(".", 1)[0]

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.ref.split(".")[1:])


# An argument is a reference, or a JSON value whose strings may be jinja2 templates
# (a string containing `{{` or `{%`), and whose lists and objects may hold references.
MAX_TIMEOUT_S = 7 * 24 * 3600.0

FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]

if TYPE_CHECKING:
    ArgValue: TypeAlias = Any
else:
    ArgValue = TypeAliasType(
        "ArgValue",
        Annotated[
            Ref
            | StrictBool
            | StrictInt
            | StrictStr
            | FiniteFloat
            | list["ArgValue"]
            | dict[str, "ArgValue"]
            | None,
            Field(union_mode="left_to_right"),
        ],
    )


class InputDecl(_Frozen):
    """A typed plan input; `default` null means required unless the type is optional."""

    name: str = Field(pattern=NAME_PATTERN)
    type: str = Field(description="A plan type, e.g. `str`, `float`, `list[str]`, `City?`.")
    default: Any = Field(default=None, description="JSON default value; null = required.")
    description: str | None = None


class RecordType(_Frozen):
    """A named record type (`type Verdict { city: str, ... }`): becomes a pydantic model."""

    name: str = Field(pattern=NAME_PATTERN)
    fields: dict[str, str] = Field(description="Field name -> plan type, in order.")


class FanOut(_Frozen):
    """`for <var> in <over>: tool(...)`: one call per item of a list, results in order."""

    var: str = Field(pattern=NAME_PATTERN)
    over: Ref


class Step(_Frozen):
    """One node of the plan: a tool call with typed result and execution settings."""

    id: str = Field(pattern=NAME_PATTERN)
    tool: str = Field(pattern=NAME_PATTERN)
    args: dict[str, ArgValue] = Field(default_factory=dict)
    type: str | None = Field(
        default=None, description="Declared result type; null = the tool's return type."
    )
    for_each: FanOut | None = None
    after: tuple[str, ...] = Field(
        default=(), description="Explicit dependencies, beside those inferred from references."
    )
    tier: str | None = None
    model: str | None = None
    task: TaskType | None = Field(default=None, description="Task type, used to choose a tier.")
    retry: int = Field(default=0, ge=0, le=100)
    # Bounded: a timeout is a promise that the step ends; "a week" is the longest a run
    # is expected to hold a step, and larger values overflow thread and timer waits.
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    when: str | None = Field(default=None, description="jinja2 expression; false skips the step.")
    on_error: str = Field(
        default="fail", description="`fail`, `skip`, or the id of a fallback step."
    )
    check: str | None = Field(
        default=None, description="jinja2 expression over `result` that the output must satisfy."
    )
    description: str | None = None
    cache: bool = Field(
        default=False,
        description="Reuse a stored result of an identical call (same tool, arguments, model).",
    )
    approve: bool = Field(default=False, description="A person approves the call before it runs.")
    # Provenance, not behaviour: set by the loaders only on a step they made from a
    # description or from a tool nobody registered, so the run's record can say which
    # executor ran it (`--executor llm|agent`); `fmt` writes it as `executor agent`.
    executor: Literal["llm", "agent"] | None = Field(
        default=None,
        description="Set by the loader on a step made from a description or an unknown"
        " tool: the executor chosen for it (`llm`, or `agent` with `--executor agent`).",
    )

    @field_validator("after")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a step name")
        return value


class Plan(_Frozen):
    """A whole plan as authored: header, inputs, tiers, record types, steps, outputs."""

    name: str = Field(pattern=NAME_PATTERN)
    goal: str | None = None
    inputs: tuple[InputDecl, ...] = ()
    tiers: dict[str, str] = Field(
        default_factory=dict, description="Tier name -> litellm model string."
    )
    types: tuple[RecordType, ...] = ()
    steps: tuple[Step, ...] = ()
    outputs: tuple[str, ...] = Field(
        default=(), description="Step or input names whose values are the plan's result."
    )
    expected_cost_usd: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="The author's (or planner's) cost estimate.",
    )


def plan_json_schema() -> dict[str, Any]:
    """The canonical JSON Schema of a JSON plan, as `planfile schema` prints it."""
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://planfile.dev/schema/plan.schema.json"
    schema["title"] = "planfile plan"
    from .agent_steps import agent_step_schema  # it reads this module's names

    step = schema["$defs"]["Step"]
    step["if"], step["then"] = agent_step_schema()
    return schema


def is_template(text: str) -> bool:
    """Whether a string argument is a jinja2 template rather than a plain literal."""
    return "{{" in text or "{%" in text

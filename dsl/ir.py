"""The Plan IR: the one typed contract between the front ends (text, JSON) and the engine.

A `Plan` is data as the author wrote it (pydantic, frozen). Checking a plan does not
change it; the checker returns a `CheckedPlan` (see `dsl.checker`) that pairs the plan
with what was inferred from it (dependencies, types). The JSON schema of a plan
(`planfile schema`) is exported from these models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


# --- building IR objects without per-object validation ------------------------------
# A 10k-step plan pays pydantic's validation (~4.5 µs a step) or `model_construct` (~10 µs:
# it resolves aliases and defaults field by field) for every step. The front ends check
# what they build, so a step whose values are already of their exact types is made the
# way `model_construct` makes it, in one dict copy. Anything unusual goes through
# `model_validate`, which reports it (tests/test_ir_fast.py holds the two paths equal).

_REF_FULL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_set_attr = object.__setattr__
_new = object.__new__  # BaseModel defines no __new__
# Every Step field in declaration order (so `__dict__` matches a validated step's), at
# its default; `args` is a fresh dict per step (see `construct_step`).
_STEP_TEMPLATE: dict[str, Any] = {
    name: None if field.is_required() else field.get_default(call_default_factory=True)
    for name, field in Step.model_fields.items()
}
_STEP_FIELDS = frozenset(_STEP_TEMPLATE)
_SCALARS = (str, int, bool, type(None))
_MAX_ARG_DEPTH = 64


def _construct(cls: type[_Frozen], values: dict[str, Any], fields_set: set[str]) -> Any:
    """What `cls.model_construct` does once it has resolved the values (the models here
    have no aliases, private attributes, post-init or extra fields)."""
    model = _new(cls)
    _set_attr(model, "__dict__", values)
    _set_attr(model, "__pydantic_fields_set__", fields_set)
    _set_attr(model, "__pydantic_extra__", None)
    _set_attr(model, "__pydantic_private__", None)
    return model


def construct_step(fields: Mapping[str, Any], fields_set: set[str] | None = None) -> Step:
    """A Step from values known to satisfy its constraints (a front end checked them),
    without validating them again; `fields_set` defaults to the names given, as
    `model_validate` would have it. Unknown names are a programming error."""
    values = dict(_STEP_TEMPLATE)
    values["args"] = {}
    values.update(fields)
    if len(values) != len(_STEP_TEMPLATE):
        raise TypeError(f"not Step fields: {sorted(set(values) - _STEP_FIELDS)}")
    return _construct(Step, values, set(fields) if fields_set is None else fields_set)


def construct_ref(ref: str) -> Ref:
    """A Ref from text known to match its pattern (`a`, `a.b.c`), unvalidated."""
    ref_model: Ref = _construct(Ref, {"ref": ref}, {"ref"})
    return ref_model


def fast_step(fields: Mapping[str, Any]) -> Step | None:
    """`Step.model_validate(fields)` for a step whose values are already of their exact
    types (plain JSON as a loader made it), or None when any value needs pydantic to
    convert or reject it: the caller then validates, and reports what is wrong."""
    if "id" not in fields or "tool" not in fields or not fields.keys() <= _STEP_FIELDS:
        return None
    values = dict(_STEP_TEMPLATE)
    values["args"] = {}
    # The common fields first; `==` on these interned names is an identity test.
    for name, value in fields.items():
        kind = type(value)
        # (`isidentifier() and isascii()` is NAME_PATTERN, see `is_name`, inlined here)
        if name == "id" or name == "tool":
            if kind is not str or not (value.isidentifier() and value.isascii()):
                return None
        elif name == "args":
            if kind is not dict:
                return None
            if not value:
                continue  # `values` holds a fresh empty dict
            value = _fast_args(value)
            if value is None:
                return None
        elif name == "after":
            if kind is not list and kind is not tuple:
                return None
            for dep in value:
                if type(dep) is not str or not (dep.isidentifier() and dep.isascii()):
                    return None
            value = tuple(value)
        elif value is None:
            if name in _NOT_NULL:
                return None
        elif name in _TEXTS:
            if kind is not str:
                return None
        elif name in _FLAGS:  # cache, approve
            if kind is not bool:
                return None
        elif name == "retry":
            if kind is not int or not 0 <= value <= 100:
                return None
        elif name == "timeout_s":
            if (kind is not float and kind is not int) or not 0 < value <= MAX_TIMEOUT_S:
                return None  # NaN fails the comparison too
            value = float(value)
        elif name == "for_each":
            value = _fast_fan_out(value)
            if value is None:
                return None
        elif name in _CHOICES and (kind is not str or value not in _CHOICES[name]):
            return None  # task, executor
        values[name] = value
    step: Step = _construct(Step, values, set(fields))
    return step


_PLAIN_SET = ("id", "tool", "args")
_PLAIN_SET_AFTER = ("id", "tool", "args", "after")


def plain_step(
    step_id: str, tool: str, after: tuple[str, ...] | None, args: dict[Any, Any] | None
) -> Step | None:
    """`fast_step({"id": step_id, "tool": tool, "after": after, "args": args})` for the
    plain canonical step (the JSON loader's common case), without a dict to walk: the
    caller has already found `step_id`, `tool` and every name in `after` to be names
    (`after` None: the step gave none); `args` None means none given. None when an
    argument needs pydantic (the caller then takes the general path)."""
    values = dict(_STEP_TEMPLATE)
    if args:
        copied = _fast_args(args)
        if copied is None:
            return None
        values["args"] = copied
    else:
        values["args"] = {}
    values["id"] = step_id
    values["tool"] = tool
    if after is None:
        fields_set = set(_PLAIN_SET)
    else:
        values["after"] = after
        fields_set = set(_PLAIN_SET_AFTER)
    step: Step = _construct(Step, values, fields_set)
    return step


def is_name(text: str) -> bool:
    """NAME_PATTERN without a regex: an ASCII identifier is exactly `[A-Za-z_][A-Za-z0-9_]*`."""
    return text.isidentifier() and text.isascii()


_TEXTS = frozenset({"type", "tier", "model", "when", "on_error", "check", "description"})
_FLAGS = frozenset({"cache", "approve"})
_CHOICES: dict[str, tuple[str, ...]] = {"task": TASK_TYPES, "executor": ("llm", "agent")}
# Fields whose null pydantic refuses (or, for `after` and `args`, would not keep).
_NOT_NULL = frozenset({"id", "tool", "args", "after", "retry", "on_error", "cache", "approve"})
_SLOW = object()


def _fast_fan_out(value: Any) -> FanOut | None:
    if type(value) is not dict or value.keys() != {"var", "over"}:
        return None
    var, over = value["var"], value["over"]
    if type(var) is not str or not is_name(var):
        return None
    if type(over) is not dict or over.keys() != {"ref"}:
        return None
    ref = over["ref"]
    if type(ref) is not str or not _REF_FULL.fullmatch(ref):
        return None
    fan_out: FanOut = _construct(FanOut, {"var": var, "over": construct_ref(ref)}, {"var", "over"})
    return fan_out


def _fast_args(args: dict[Any, Any]) -> dict[str, Any] | None:
    """`args` as validation makes it (a new dict; the names may be anything, `ref` too)."""
    copied = {}
    for key, item in args.items():
        if type(key) is not str:
            return None
        if type(item) in _SCALARS:  # the common case, without a call
            copied[key] = item
            continue
        item = _fast_value(item, 1)
        if item is _SLOW:
            return None
        copied[key] = item
    return copied


def _fast_value(value: Any, depth: int) -> Any:
    """An argument value as `ArgValue` validation makes it (a copy; `{"ref": "a.b"}` a
    Ref), or _SLOW when pydantic must decide (a float that is not finite, an odd ref...)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        return value if value - value == 0 else _SLOW  # inf - inf and nan are nan
    if depth > _MAX_ARG_DEPTH:
        return _SLOW
    if kind is list:
        items = []
        for item in value:
            item = _fast_value(item, depth + 1)
            if item is _SLOW:
                return _SLOW
            items.append(item)
        return items
    if kind is dict:
        if "ref" in value:
            ref = value["ref"]
            if len(value) == 1 and type(ref) is str and _REF_FULL.fullmatch(ref):
                return construct_ref(ref)
            return _SLOW  # Ref or a dict holding `ref`: pydantic's left-to-right union decides
        copied = {}
        for key, item in value.items():
            if type(key) is not str:
                return _SLOW
            item = _fast_value(item, depth + 1)
            if item is _SLOW:
                return _SLOW
            copied[key] = item
        return copied
    return _SLOW


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

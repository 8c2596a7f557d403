"""The checker: name resolution, dependency inference, types and cycles, in one pass.

`check(plan, tools, source_map)` returns a `CheckedPlan` (the plan plus what was
inferred from it) or raises `PlanError` with every error found, sorted by position.
The same checker serves `.plan` text and JSON plans; the source map turns IR paths
into `file:line:col` or JSON paths.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from dsl.ir import TASK_TYPES, FanOut, Plan, Ref, Step, is_template

from .agent_steps import AGENT_TOOL, TOOLS_ARG, check_agent_args
from .errors import Diagnostic, Location, Path, PlanError, did_you_mean, gc_paused
from .parser import SourceMap
from .templates import TemplateProblem, expression_names, is_global, template_names
from .types import (
    JSON,
    PRIMITIVES,
    STR,
    Type,
    TypeSyntaxError,
    build_record_models,
    is_assignable,
    literal_type,
    parse_type,
    record_names,
    type_adapter,
)

if TYPE_CHECKING:
    from .dag import PlanGraph

RESERVED_NAMES = frozenset({"true", "false", "null"})
BUILTIN_TIERS = ("fast", "standard", "frontier")
TYPE_WORDS = frozenset({*PRIMITIVES, "list", "dict", "any"})


class ToolLike(Protocol):
    """What the checker needs of a tool (stdlib_tools.ToolSpec satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> tuple[Any, ...]: ...

    @property
    def returns(self) -> Type: ...

    @property
    def uses_model(self) -> bool: ...


@dataclass(frozen=True)
class CheckedPlan:
    """A plan that passed the checker, with its inferred dependencies and types."""

    plan: Plan
    deps: Mapping[str, tuple[str, ...]]
    """Step id -> the steps it waits for (inferred references + `after`), in plan order."""
    result_types: Mapping[str, Type]
    """Step id -> the type of its result (a list for fan-out steps)."""
    input_types: Mapping[str, Type]
    fallbacks: frozenset[str]
    """Steps that run only when the step naming them in `on_error` fails."""
    outputs: tuple[str, ...]
    """The plan's outputs: declared ones, or the sink steps when none are declared."""
    warnings: tuple[Diagnostic, ...] = ()
    source_map: SourceMap | None = field(default=None, compare=False, repr=False)
    source: str | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.plan.name

    @cached_property
    def plan_json(self) -> str:
        """The plan as compact JSON (defaults left out), serialised once per checked plan:
        what the run journal stores and `resume` validates back. A plan holding text
        UTF-8 cannot encode (a lone surrogate from any front end) is refused here, located,
        before the run writes anything: searching for one up front would cost every plan."""
        try:
            return self.plan.model_dump_json(exclude_defaults=True)
        except PydanticSerializationError:
            from .lone_surrogates import surrogate_error, surrogate_path

            bad = surrogate_path(self.plan.model_dump(mode="python", exclude_defaults=True))
            if bad is None:
                raise
            smap = self.source_map
            where = smap.locate(bad) if smap is not None else Location(None, path=bad)
            raise surrogate_error(where) from None

    @cached_property
    def graph(self) -> PlanGraph:
        """The plan compiled to a networkx DiGraph, once, on first use (dsl/dag.py)."""
        from .dag import PlanGraph  # networkx costs ~95 ms to import: only when needed

        return PlanGraph(self)


class _Checker:
    def __init__(
        self,
        plan: Plan,
        tools: Mapping[str, ToolLike],
        smap: SourceMap,
        tiers: Collection[str],
    ):
        self.plan = plan
        self.tools = tools
        # Per-step lookups on a plain dict (a registry's `get` is a Python call), and each
        # tool's parameters by name, built once per tool rather than searched per argument.
        self.tool_specs: dict[str, ToolLike] = dict(tools)
        self.tool_params: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {}
        self.smap = smap
        self.known_tiers = set(tiers) | set(plan.tiers) | set(BUILTIN_TIERS)
        self.diagnostics: list[Diagnostic] = list(smap.notes)
        self.records: dict[str, dict[str, str]] = {r.name: dict(r.fields) for r in plan.types}
        self.input_types: dict[str, Type] = {}
        self.step_index: dict[str, int] = {}
        self.result_types: dict[str, Type] = {}
        self.deps: dict[str, list[str]] = {}
        self.used: set[str] = set()

    # --- reporting --------------------------------------------------------------
    def error(self, path: Path, message: str, hint: str | None = None, code: str = "error") -> None:
        self.diagnostics.append(self.smap.diagnostic(path, message, hint=hint, code=code))

    def warn(
        self, path: Path, message: str, hint: str | None = None, code: str = "warning"
    ) -> None:
        self.diagnostics.append(
            self.smap.diagnostic(path, message, hint=hint, code=code, severity="warning")
        )

    def unknown_tool_hint(self, name: str) -> str:
        return _unknown_tool_hint(name, self.tools, self.smap.is_json)

    # --- types --------------------------------------------------------------------
    def resolve_type(self, text: str, path: Path) -> Type | None:
        try:
            parsed = parse_type(text)
        except TypeSyntaxError as err:
            self.error(path, f"bad type `{text}`: {err}", code="type")
            return None
        ok = True
        for name in record_names(parsed):
            if name not in self.records:
                known = [*self.records, *PRIMITIVES, "list", "dict"]
                self.error(
                    path,
                    f"unknown type `{name}`",
                    hint=did_you_mean(name, known) or "declare it with `type Name { ... }`",
                    code="unknown-type",
                )
                ok = False
        return parsed if ok else None

    def field_type(self, base: Type, fields: tuple[str, ...], path: Path, shown: str) -> Type:
        current = base
        for index, name in enumerate(fields):
            if current.kind == "json":
                return JSON
            if current.kind == "dict" and current.item is not None:
                current = current.item
                continue
            if current.kind != "record" or current.name not in self.records:
                self.error(
                    path,
                    f"`{'.'.join([shown, *fields[:index]])}` is {current}; it has no field `{name}`",
                    code="type",
                )
                return JSON
            record_fields = self.records[current.name]
            if name not in record_fields:
                self.error(
                    path,
                    f"record `{current.name}` has no field `{name}`",
                    hint=did_you_mean(name, record_fields)
                    or f"its fields: {', '.join(record_fields)}",
                    code="unknown-name",
                )
                return JSON
            field_type = parse_type(record_fields[name])
            current = field_type.as_optional() if current.optional else field_type
        return current

    # --- passes ---------------------------------------------------------------------
    def check_declarations(self) -> None:
        plan = self.plan
        if plan.name in RESERVED_NAMES:
            self.error(("name",), f"`{plan.name}` cannot name a plan", code="reserved")
        for name in plan.tiers:
            if name in RESERVED_NAMES:
                self.error(("tiers", name), f"`{name}` is reserved", code="reserved")
        seen_records: set[str] = set()
        for index, record in enumerate(plan.types):
            path: Path = ("types", index)
            if record.name in TYPE_WORDS:
                self.error(path, f"`{record.name}` is a built-in type name", code="reserved")
            if record.name in seen_records:
                self.error(path, f"type `{record.name}` is declared twice", code="duplicate")
            seen_records.add(record.name)
            for field_name, field_type in record.fields.items():
                self.resolve_type(field_type, (*path, "fields", field_name))
        names: dict[str, Path] = {}
        for index, decl in enumerate(plan.inputs):
            path = ("inputs", index)
            if decl.name in RESERVED_NAMES:
                self.error(path, f"`{decl.name}` is reserved", code="reserved")
            if decl.name in names:
                self.error(path, f"input `{decl.name}` is declared twice", code="duplicate")
            names[decl.name] = path
            declared = self.resolve_type(decl.type, (*path, "type"))
            if declared is None:
                continue
            self.input_types[decl.name] = declared
            if decl.default is not None:
                self.check_literal(
                    decl.default, declared, (*path, "default"), f"input `{decl.name}`"
                )
        step_index = self.step_index
        for index, step in enumerate(plan.steps):
            path = ("steps", index)
            step_id = step.__dict__["id"]  # see check_step
            if step_id in RESERVED_NAMES:
                self.error(path, f"`{step_id}` is reserved", code="reserved")
            if step_id in names:
                what = "step" if names[step_id][0] == "steps" else "input"
                self.error(
                    path,
                    f"`{step_id}` is already defined (as {what} at {self.smap.locate(names[step_id])})",
                    hint="step and input names share one namespace; rename one",
                    code="duplicate",
                )
                continue
            names[step_id] = path
            step_index[step_id] = index

    def check_literal(self, value: Any, expected: Type, path: Path, what: str) -> None:
        if expected.kind == "record" or (
            expected.item is not None and expected.item.kind in ("record", "list", "dict")
        ):
            models = build_record_models(self.records)
            try:
                type_adapter(expected, models).validate_python(value)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                self.error(
                    path,
                    f"{what}: value does not fit `{expected}`: {first['msg']}"
                    + (f" at `{where}`" if where else ""),
                    code="type",
                )
            return
        actual = literal_type(value)
        if not is_assignable(actual, expected):
            self.error(path, f"{what} is `{expected}`, but the value is `{actual}`", code="type")

    def step_result_type(self, step: Step, index: int) -> Type:
        fields = step.__dict__  # see check_step
        tool = self.tool_specs.get(fields["tool"])
        text = fields["type"]
        declared = self.resolve_type(text, ("steps", index, "type")) if text else None
        if fields["for_each"] is not None:
            if declared is not None and declared.kind != "list" and declared.kind != "json":
                self.error(
                    ("steps", index, "type"),
                    f"a `for` step produces a list; declare `list[{declared}]`",
                    code="type",
                )
                declared = Type("list", item=declared)
            if declared is not None:
                return declared
            item = tool.returns if tool is not None else JSON
            return Type("list", item=item)
        if declared is not None:
            return declared
        return tool.returns if tool is not None else JSON

    def check_steps(self) -> None:
        step_index, result_types = self.step_index, self.result_types
        step_result_type = self.step_result_type
        checked: list[tuple[int, Step]] = []  # a repeated id is reported, not checked again
        for index, step in enumerate(self.plan.steps):
            fields = step.__dict__  # see check_step
            step_id = fields["id"]
            if step_index.get(step_id) == index:
                checked.append((index, step))
                result_types[step_id] = step_result_type(step, index)
        check_step = self.check_step
        for index, step in checked:
            check_step(step, index)

    def resolve_name(
        self, name: str, path: Path, step: Step, scope: Mapping[str, Type]
    ) -> Type | None:
        """The type of a top-level name a step reads; record the dependency."""
        if name in scope:
            return scope[name]
        if name in self.input_types:
            return self.input_types[name]
        if name in self.result_types:
            if name == step.id:
                self.error(path, f"step `{step.id}` refers to its own result", code="cycle")
                return None
            self.deps[step.id].append(name)
            self.used.add(name)
            return self.result_types[name]
        if any(decl.name == name for decl in self.plan.inputs):
            return None  # input with a bad type: already reported
        candidates = [*self.input_types, *self.result_types, *scope]
        self.error(
            path,
            f"unknown name `{name}`",
            hint=did_you_mean(name, candidates) or "declare it with `input` or `step`",
            code="unknown-name",
        )
        return None

    def value_type(self, value: Any, path: Path, step: Step, scope: Mapping[str, Type]) -> Type:
        if type(value) is str:  # the common argument, without literal_type's tests
            if "{{" in value or "{%" in value:  # is_template
                self.template_deps(value, path, step, scope)
            return STR
        if isinstance(value, Ref):
            base = self.resolve_name(value.root, path, step, scope)
            if base is None:
                return JSON
            return self.field_type(base, value.path, path, value.root)
        if isinstance(value, str):
            if is_template(value):
                self.template_deps(value, path, step, scope)
            return literal_type(value)
        if isinstance(value, list):
            items = [self.value_type(v, (*path, i), step, scope) for i, v in enumerate(value)]
            return Type("list", item=_join(items))
        if isinstance(value, dict):
            return Type(
                "dict",
                item=_join([self.value_type(v, (*path, k), step, scope) for k, v in value.items()]),
            )
        return literal_type(value)

    def template_deps(
        self, text: str, path: Path, step: Step, scope: Mapping[str, Type], expression: bool = False
    ) -> None:
        try:
            names = expression_names(text) if expression else template_names(text)
        except TemplateProblem as err:
            self.error(path, str(err), hint=err.hint, code="template")
            return
        for name in sorted(names):
            if (
                is_global(name)
                and name not in scope
                and name not in self.input_types
                and name not in self.result_types
            ):
                continue  # `range(3)`: jinja2's own, not a name of the plan
            self.resolve_name(name, path, step, scope)

    def params_of(self, name: str, tool: ToolLike) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Tool `name`'s parameters by name, and the names it requires (once per tool)."""
        known = self.tool_params.get(name)
        if known is None:
            params = {p.name: p for p in reversed(tool.params)}  # the first of a name wins
            known = params, tuple(p.name for p in tool.params if p.required)
            self.tool_params[name] = known
        return known

    def check_step(self, step: Step, index: int) -> None:
        # The step's fields read from its __dict__: pydantic's `__getattr__` hook makes
        # each attribute read a slower, unspecialised lookup (~20 of them per step).
        fields = step.__dict__
        step_id = fields["id"]
        path: Path = ("steps", index)
        deps: list[str] = []
        self.deps[step_id] = deps
        # Names a step binds itself: only a `for` step has any (read-only otherwise).
        scope: dict[str, Type] = _NO_SCOPE
        tool = self.tool_specs.get(fields["tool"])
        if tool is None:
            self.error(
                (*path, "tool"),
                f"unknown tool `{step.tool}`",
                hint=_unknown_tool_hint(
                    step.tool, self.tools, self.smap.is_json, agent_executor=True
                ),
                code="unknown-tool",
            )
        for_each: FanOut | None = fields["for_each"]
        if for_each is not None:
            scope = {}
            fan_path: Path = (*path, "for_each", "over")
            var = for_each.var
            if var in self.input_types or var in self.result_types:
                self.error(
                    (*path, "for_each"),
                    f"loop variable `{var}` hides the {'input' if var in self.input_types else 'step'}"
                    f" of that name",
                    hint="pick another name for the loop variable",
                    code="shadow",
                )
            over_type = self.value_type(for_each.over, fan_path, step, scope)
            if over_type.kind == "list" and over_type.item is not None:
                scope[var] = over_type.item
            elif over_type.kind == "json":
                scope[var] = JSON
            else:
                self.error(
                    fan_path,
                    f"`for` needs a list, but `{for_each.over.ref}` is `{over_type}`",
                    code="type",
                )
                scope[var] = JSON
        agent = tool is not None and fields["tool"] == AGENT_TOOL  # is_agent_step, inline
        params, required = self.params_of(fields["tool"], tool) if tool is not None else _NO_PARAMS
        args = fields["args"]
        for name, value in args.items():
            arg_path: Path = ("steps", index, "args", name)
            if agent and name == TOOLS_ARG:
                continue  # tool names, not references: check_agent_args checks them
            actual = self.value_type(value, arg_path, step, scope)
            if tool is None:
                continue
            param = params.get(name)
            if param is None:
                names = [p.name for p in tool.params]
                self.error(
                    arg_path,
                    f"tool `{tool.name}` has no parameter `{name}`",
                    hint=did_you_mean(name, names)
                    or (f"its parameters: {', '.join(names)}" if names else "it takes none"),
                    code="unknown-param",
                )
                continue
            if not is_assignable(actual, param.type):
                hint = None
                if param.type.kind == "str" and actual.kind != "str":
                    hint = 'use a template to make text: "{{ name }}"'
                elif actual.optional and not param.type.optional:
                    hint = "the value may be null; give the input a default"
                self.error(
                    arg_path,
                    f"`{name}` of `{tool.name}` is `{param.type}`, but the value is `{actual}`",
                    hint=hint,
                    code="type",
                )
        tier, model = fields["tier"], fields["model"]
        if tool is not None:
            missing = [name for name in required if name not in args] if required else ()
            if missing:
                self.error(
                    (*path, "tool"),
                    f"`{tool.name}` needs {', '.join(f'`{m}`' for m in missing)}",
                    hint=f"signature: {_signature(tool)}",
                    code="missing-arg",
                )
            if fields["type"] is not None:
                self.check_result_type(step, index, tool)
            if agent:
                check_agent_args(args, path, self.tools, self)
            if (tier or model) and not tool.uses_model:
                self.warn(
                    (*path, "tier" if tier else "model"),
                    f"tool `{tool.name}` calls no model; `{'tier' if tier else 'model'}` has no"
                    " effect",
                    code="no-effect",
                )
        if tier is not None:
            if tier not in self.known_tiers:
                self.error(
                    (*path, "tier"),
                    f"unknown tier `{tier}`",
                    hint=did_you_mean(tier, self.known_tiers)
                    or f'declare it: `tier {tier} = "provider/model"`',
                    code="unknown-tier",
                )
            if model is not None:
                self.error(
                    (*path, "model"), "give a step `tier` or `model`, not both", code="conflict"
                )
        task = fields["task"]
        if task is not None and task not in TASK_TYPES:
            self.error((*path, "task"), f"unknown task type `{task}`", code="invalid")
        result_types = self.result_types
        for j, name in enumerate(fields["after"]):
            if name == step_id:
                self.error(
                    (*path, "after", j), f"step `{step_id}` cannot run after itself", code="cycle"
                )
            elif name in result_types:
                deps.append(name)
            else:
                self.error(
                    (*path, "after", j),
                    f"`after` names unknown step `{name}`",
                    hint=did_you_mean(name, self.result_types),
                    code="unknown-name",
                )
        if fields["when"] is not None:
            self.template_deps(fields["when"], (*path, "when"), step, scope, expression=True)
        if fields["check"] is not None:
            self.template_deps(
                fields["check"], (*path, "check"), step, {**scope, "result": JSON}, expression=True
            )
        fallback = fields["on_error"]
        if fallback != "fail" and fallback != "skip":
            if fallback == step_id:
                self.error((*path, "on_error"), "a step cannot be its own fallback", code="cycle")
            elif fallback not in self.result_types:
                self.error(
                    (*path, "on_error"),
                    f"`on_error` takes `fail`, `skip` or a fallback step; `{fallback}` is none",
                    hint=did_you_mean(fallback, [*self.result_types, "fail", "skip"]),
                    code="unknown-name",
                )
            else:
                mine, theirs = self.result_types[step_id], self.result_types[fallback]
                if not is_assignable(theirs, mine):
                    self.error(
                        (*path, "on_error"),
                        f"fallback `{fallback}` gives `{theirs}`, but `{step_id}` is `{mine}`",
                        code="type",
                    )
        # A repeated dependency is one edge.
        if len(deps) > 1:
            self.deps[step_id] = list(dict.fromkeys(deps))

    def check_result_type(self, step: Step, index: int, tool: ToolLike) -> None:
        if step.type is None:
            return
        declared = self.result_types.get(step.id)
        if declared is None:
            return
        target = declared.item if step.for_each is not None and declared.item else declared
        returns = tool.returns
        if returns.kind == "json" or tool.uses_model or target.kind == "json":
            return  # checked against the type when the step runs
        if not is_assignable(returns, target):
            self.error(
                ("steps", index, "type"),
                f"`{tool.name}` returns `{returns}`, but step `{step.id}` declares `{target}`",
                code="type",
            )

    def check_outputs(self) -> tuple[str, ...]:
        seen: set[str] = set()
        for j, name in enumerate(self.plan.outputs):
            path: Path = ("outputs", j)
            if name in seen:
                self.error(path, f"output `{name}` is listed twice", code="duplicate")
            seen.add(name)
            if name in self.result_types:
                self.used.add(name)
            elif name not in self.input_types:
                self.error(
                    path,
                    f"output names unknown step `{name}`",
                    hint=did_you_mean(name, [*self.result_types, *self.input_types]),
                    code="unknown-name",
                )
        if self.plan.outputs:
            return self.plan.outputs
        return tuple(step_id for step_id in self.result_types if step_id not in self.used)

    def check_fallbacks(self) -> frozenset[str]:
        fallbacks: dict[str, str] = {}
        for step in self.plan.steps:
            fields = step.__dict__  # see check_step
            on_error = fields["on_error"]
            if on_error != "fail" and on_error != "skip" and on_error in self.result_types:
                fallbacks[on_error] = fields["id"]
        users_of: dict[str, list[str]] = {}
        if fallbacks:
            for user, deps in self.deps.items():
                for dep in deps:
                    if dep in fallbacks:
                        users_of.setdefault(dep, []).append(user)
        for fallback, primary in fallbacks.items():
            index = self.step_index[fallback]
            users = users_of.get(fallback, [])
            if users:
                self.error(
                    ("steps", index),
                    f"`{fallback}` is the fallback of `{primary}`, so it runs only when `{primary}`"
                    f" fails; `{users[0]}` cannot use it directly",
                    hint=f"use `{primary}` instead: it carries the fallback's result",
                    code="fallback",
                )
            if fallback in self.plan.outputs:
                self.error(
                    ("steps", index),
                    f"fallback `{fallback}` cannot be an output; name `{primary}` instead",
                    code="fallback",
                )
            self.used.add(fallback)
        return frozenset(fallbacks)

    def check_cycles(self) -> None:
        if _backwards_only(self.deps, self.step_index) or _is_acyclic(self.deps):
            return
        from .dag import find_cycles  # networkx, loaded only to explain a cycle

        for cycle in find_cycles(self.deps, self.step_index.__getitem__):
            self.error(
                ("steps", self.step_index[cycle[0]]),
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                hint="a step cannot wait, directly or through others, for its own result",
                code="cycle",
            )

    def check_unused(self, outputs: tuple[str, ...]) -> None:
        if not self.plan.outputs:
            return
        waited_for = {dep for deps in self.deps.values() for dep in deps}
        for step in self.plan.steps:
            if step.id in self.used or step.id in outputs or step.id in waited_for:
                continue
            if self.step_index.get(step.id) is None:
                continue
            self.warn(
                ("steps", self.step_index[step.id]),
                f"the result of step `{step.id}` is never used",
                hint="add it to `output`, use it in a later step, or remove it",
                code="unused",
            )

    def run(self) -> CheckedPlan:
        self.check_declarations()
        self.check_steps()
        outputs = self.check_outputs()
        fallbacks = self.check_fallbacks()
        if not any(d.code == "cycle" for d in self.diagnostics):
            self.check_cycles()
        self.check_unused(outputs)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        if errors:
            raise PlanError(self.diagnostics, self.smap_source)
        return CheckedPlan(
            plan=self.plan,
            deps={step_id: tuple(deps) for step_id, deps in self.deps.items()},
            result_types=dict(self.result_types),
            input_types=dict(self.input_types),
            fallbacks=fallbacks,
            outputs=outputs,
            warnings=tuple(self.diagnostics),
            source_map=self.smap,
            source=self.smap_source,
        )

    smap_source: str | None = None


def _unknown_tool_hint(
    name: str, tools: Mapping[str, ToolLike], is_json: bool, *, agent_executor: bool = False
) -> str:
    """The closest tool; for JSON plans (a model named the tool) also every available
    tool and how to map the name on load, and (for a step's own tool, `agent_executor`)
    that `--executor agent` would run the step as an agent."""
    offer_agent = agent_executor and AGENT_TOOL in tools
    # `agent` is no target for a mapped name (it needs a task and tools) nor a tool an
    # agent may call; it is a candidate only for a step's own tool in `.plan` text.
    candidates = [t for t in tools if t != AGENT_TOOL or (offer_agent and not is_json)]
    closest = did_you_mean(name, candidates)
    if closest is None and is_json:
        # Models name tools by purpose (`summary_generator`): match a shared word stem.
        stems = {part[:5] for part in name.lower().split("_") if len(part) >= 5}
        similar = [tool for tool in candidates if tool.lower()[:5] in stems]
        closest = f"did you mean `{similar[0]}`?" if similar else None
    if not is_json:
        return closest or "see `planfile tools`; load your own with `--tools FILE.py`"
    target = closest.split("`")[1] if closest else "TOOL"
    listed = ", ".join(sorted(candidates)[:30]) or "none"
    agent = (
        "; or run the step as an agent over the default tools: `--executor agent`"
        if offer_agent
        else ""
    )
    return (
        f"{closest + ' ' if closest else ''}available tools: {listed}; map the name on load:"
        f" `--map-tool {name}={target}`, or load your own with `--tools FILE.py`{agent}"
    )


_NO_PARAMS: tuple[dict[str, Any], tuple[str, ...]] = ({}, ())
_NO_SCOPE: dict[str, Type] = {}  # never written: a step's scope is a new dict when it has one


def _join(types: list[Type]) -> Type:
    from .types import join_types

    return join_types(types)


def _signature(tool: ToolLike) -> str:
    signature = getattr(tool, "signature", None)
    if callable(signature):
        return str(signature())
    return tool.name


def _backwards_only(deps: Mapping[str, Collection[str]], index: Mapping[str, int]) -> bool:
    """Whether every step waits only for steps written before it: then the plan order is
    a topological order and there is no cycle. Most plans are written so; this pass
    allocates nothing, where Kahn's builds a list per step."""
    for node, needs in deps.items():
        position = index[node]
        for need in needs:
            if index[need] >= position:
                return False
    return True


def _is_acyclic(deps: Mapping[str, Collection[str]]) -> bool:
    """Whether the dependencies form a DAG: Kahn's counting pass, no order kept.

    The plan's topological order comes from its networkx graph (`CheckedPlan.graph`);
    this pass only lets a valid plan be checked without importing networkx (~95 ms).
    """
    indegree = dict.fromkeys(deps, 0)
    users: dict[str, list[str]] = {node: [] for node in deps}
    for node, needs in deps.items():
        for need in needs:
            if need in indegree:
                indegree[node] += 1
                users[need].append(node)
    ready = [node for node, count in indegree.items() if count == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for user in users[node]:
            indegree[user] -= 1
            if indegree[user] == 0:
                ready.append(user)
    return seen == len(indegree)


def check(
    plan: Plan,
    tools: Mapping[str, ToolLike],
    source_map: SourceMap | None = None,
    *,
    tiers: Collection[str] = (),
    source: str | None = None,
) -> CheckedPlan:
    """Check a plan against a tool catalogue; raise PlanError with every error found."""
    smap = source_map or SourceMap(None, is_json=True)
    checker = _Checker(plan, tools, smap, tiers)
    checker.smap_source = source
    with gc_paused():
        return checker.run()

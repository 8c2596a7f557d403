"""Running one step: condition, fan-out, arguments, the tool call, retries, validation.

`StepRunner` implements the driver's `NodeRunner` for a checked plan. A step sees only
the plan's inputs and the results of the steps it depends on, never the whole history.
(Over 400 lines: one step's semantics, from its `when` to its record, read in one place,
with the run context and result checks it alone builds; the tool call itself runs in
engine/run/backend.py.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from dsl.checker import CheckedPlan
from dsl.ir import Ref, Step, is_template
from dsl.templates import (
    TemplateProblem,
    evaluate,
    needs_worker,
    render,
    render_in_worker,
)
from dsl.types import Type, build_record_models, type_adapter
from engine.errors import BudgetExceeded, RunError
from engine.faults import TransientError, worth_retrying
from engine.run.backend import LOCAL, Backend
from engine.run.driver import Outcome
from engine.run.events import (
    EventBus,
    FanOutExpanded,
    StepCancelled,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from engine.run.result import StepRecord, StepStatus, StopReason
from stdlib_tools.registry import ToolContext, ToolSpec

MAX_RESULT_BYTES = 10 * 1024 * 1024
MAX_FAN_OUT = 100_000


class StepError(RunError):
    """A step failed in a way a retry cannot fix (bad arguments, wrong result type)."""


class CheckFailed(StepError):
    """A step's result failed its `check` condition (a surprise, for replanning)."""


# A tool raises this to ask for a retry; the name predates the shared fault classifier.
RetryableError = TransientError


# Errors whose message is already a complete sentence for the user: these, and any error
# class that says so with a true `plain_message` class attribute (one defined in a layer
# engine/run may not import, such as engine.backends.dask's ClusterLost and WorkerLost).
_PLAIN_MESSAGES = {
    "ModelCallError",
    "InvalidReply",
    "LocalModelMissing",
    "BudgetExceeded",
    "NetworkNotAllowed",
    "WorkspaceError",
    "ToolError",
}


def describe_error(err: BaseException) -> str:
    if isinstance(err, TimeoutError | asyncio.TimeoutError) and not str(err):
        return "timed out"
    text = str(err) or type(err).__name__
    if (
        isinstance(err, StepError | TemplateProblem)
        or type(err).__name__ in _PLAIN_MESSAGES
        or getattr(type(err), "plain_message", False)
    ):
        return text
    return f"{type(err).__name__}: {text}"


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter between attempts."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)  # equal jitter


@dataclass(repr=False)
class RunContext:
    """Everything a run's steps share: values, records, settings, services."""

    # A short repr: asyncio repr()s the main task's frame objects when it installs its
    # SIGINT handler, and a full dataclass repr of a 100k-step run costs seconds.
    def __repr__(self) -> str:
        return f"RunContext(run_id={self.run_id!r}, plan={self.checked.plan.name!r})"

    run_id: str
    checked: CheckedPlan
    tools: Mapping[str, ToolSpec]
    inputs: dict[str, Any]
    records: dict[str, StepRecord]
    events: EventBus
    pool: Executor
    settings: Mapping[str, Any] = field(default_factory=dict)
    services: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    select_model: Callable[[Step, ToolSpec, int], str | None] | None = None
    started: float = field(default_factory=time.perf_counter)
    values: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    max_result_bytes: int = MAX_RESULT_BYTES
    stop_reason: StopReason | None = None
    observe: Callable[[int, float], None] | None = None  # (node, seconds): its duration
    wants: Callable[[str, int], bool] | None = None  # the replan policy's trigger filter
    on_final: Callable[[str], None] | None = None  # a step reached a final state (journal)
    # key(tool, args, model, type), get(key) (its MISS when absent), put(key, value):
    # engine.store.step_cache.StepCache, when caching is on
    step_cache: Any = None
    # approval(step_id, arguments) -> True (approved), False (rejected), None (ask later)
    approval: Callable[[str, dict[str, Any]], Any] | None = None
    approve_all: bool = False
    approvals: dict[str, bool] = field(default_factory=dict)
    cache_all: bool = False  # --cache: every step, not only those marked `cache`
    trigger: tuple[str, str, str | None] | None = None  # (kind, step, error) that stopped the round
    finished_steps: int = 0
    # Agent steps (engine.agent.loop documents the call dict): called once per finished
    # inner model or tool call, and asked for a step's journaled inner calls on resume.
    on_agent_call: Callable[[str, dict[str, Any]], None] | None = None
    agent_replay: Callable[[str], list[dict[str, Any]]] | None = None
    backend: Backend = LOCAL  # where tool calls execute (engine/run/backend.py)

    def raise_trigger(self, kind: str, step: str, error: str | None) -> None:
        """Stop this round so the replan policy can decide (first trigger wins)."""
        if (
            self.trigger is None
            and self.stop_reason is None
            and self.wants is not None
            and self.wants(kind, self.finished_steps)
        ):
            self.trigger = (kind, step, error)
            self.stop_reason = StopReason.REPLAN

    def now(self) -> float:
        return time.perf_counter() - self.started


_perf = time.perf_counter  # read per step: a module global, not `time.` and an attribute

# Enum members bound once: `StepStatus.RUNNING` is a class-attribute lookup through the
# enum machinery (~0.3 µs), paid several times per step otherwise.
_RUNNING = StepStatus.RUNNING
_SUCCEEDED = StepStatus.SUCCEEDED


class StepRunner:
    """The driver's NodeRunner for a checked plan's steps."""

    def __init__(self, ctx: RunContext, order: list[str]):
        self.ctx = ctx
        self.order = order
        plan = ctx.checked.plan
        # Nodes are in plan order (the compiled DAG's), unless a caller says otherwise.
        self.steps: list[Step] = list(plan.steps)
        if [step.id for step in self.steps] != order:
            by_id = {step.id: step for step in plan.steps}
            self.steps = [by_id[name] for name in order]
        self.index = dict(zip(order, range(len(order)), strict=True))
        # Whether a node's step reads any value (arguments, `when`, `for`, `check`): a
        # step that reads none (a no-op, a trigger) skips building its scope.
        self._reads = [
            bool(s.args) or s.when is not None or s.for_each is not None or s.check is not None
            for s in self.steps
        ]
        # Whether a node's arguments hold a template that renders in a worker; a step
        # without arguments (the common no-op) skips the walk.
        self._templated = [bool(s.args) and needs_worker(s.args) for s in self.steps]
        # Whether a node goes straight to its call: no `when` to evaluate, no `for` to
        # expand (`run` then returns `_call`'s coroutine, one coroutine frame less).
        self._direct = [s.when is None and s.for_each is None for s in self.steps]
        self._workspace_path: Any = None
        self.models = build_record_models({r.name: dict(r.fields) for r in plan.types})
        # A fan-out's scope, built once when it expands: its items add only their variable.
        self._fan_scopes: dict[int, Mapping[str, Any]] = {}
        self._by_type: dict[Type, _ResultCheck] = {}
        # A node's pair by its declared Type object: parsed types are shared (`parse_type`
        # is cached), so most nodes find theirs without hashing a Type. The Types are kept
        # in `_typed`, so their ids stay their own while the runner lives.
        self._pairs: dict[int, tuple[_ResultCheck, _ResultCheck]] = {}
        self._typed: list[Type | None] = []
        # Per node: how to check (the result, one item of it), indexed by `item`. Made
        # here, once per declared type (`type_adapter` shares one adapter per type across
        # steps and runs), so a step reads its pair with one list index; a type whose
        # adapter cannot be built is left None, to fail its steps when they run.
        result_types, pairs = ctx.checked.result_types, self._pairs
        self._checks: list[tuple[_ResultCheck, _ResultCheck] | None] = [
            pairs.get(id(declared)) or self._pair_for(declared)
            for declared in map(result_types.get, order)
        ]
        # Tool specs by name, read from the registry once per tool (a plain dict lookup
        # per step rather than the registry's `__getitem__`).
        self._specs: dict[str, ToolSpec] = {}
        self._call_tool = ctx.backend.tool_caller(ctx)

    # --- values ---------------------------------------------------------------------
    def scope(self, step: Step, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The names a step may read: the inputs and its dependencies' results."""
        values = dict(self.ctx.inputs)
        for dep in self.ctx.checked.deps[step.id]:
            values[dep] = self.ctx.values.get(dep)
        if extra:
            values.update(extra)
        return values

    def resolve(self, value: Any, scope: Mapping[str, Any]) -> Any:
        if isinstance(value, Ref):
            current = scope.get(value.root)
            for name in value.path:
                if current is None:
                    raise StepError(f"`{value.ref}`: `{value.root}` is null")
                if isinstance(current, Mapping):
                    if name not in current:
                        raise StepError(f"`{value.ref}`: no field `{name}`")
                    current = current[name]
                else:
                    current = getattr(current, name)
            return current
        if isinstance(value, str):
            return render(value, scope) if is_template(value) else value
        if isinstance(value, list):
            return [self.resolve(v, scope) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v, scope) for k, v in value.items()}
        return value

    def _pair_for(self, declared: Type | None) -> tuple[_ResultCheck, _ResultCheck] | None:
        """`_make_pair` once per declared type; None when it raises (`_check_pair` raises
        it again in the step, whose error it becomes)."""
        known = self._pairs.get(id(declared))
        if known is not None:
            return known
        try:
            pair = self._make_pair(declared)
        except Exception:
            return None
        self._pairs[id(declared)] = pair
        self._typed.append(declared)
        return pair

    def _check_pair(self, node: int) -> tuple[_ResultCheck, _ResultCheck]:
        """Node's pair, for a type `_pair_for` could not build: raises its error."""
        return self._make_pair(self.ctx.checked.result_types.get(self.order[node]))

    def _make_pair(self, declared: Type | None) -> tuple[_ResultCheck, _ResultCheck]:
        """How to check a result of type `declared`, and one item of it."""
        whole = self._check_for(declared)
        each = (
            self._check_for(declared.item)
            if declared is not None and declared.kind == "list"
            else whole
        )
        return whole, each

    def _check_for(self, declared: Type | None) -> _ResultCheck:
        if declared is None or declared.kind == "json":
            return _NO_CHECK
        check = self._by_type.get(declared)
        if check is None:
            check = _ResultCheck(
                type_adapter(declared, self.models), _EXACT.get(declared.kind, _NoShortcut)
            )
            self._by_type[declared] = check
        return check

    def validate_result(self, node: int, value: Any, item: bool) -> Any:
        """The result, checked against the declared type (coerced losslessly) and size."""
        check = (self._checks[node] or self._check_pair(node))[item]
        kind = type(value)
        # A plain str/int/float/bool of the declared type: pydantic would return it as is,
        # except nan and inf, which the adapter refuses (they would poison later steps).
        if kind is not check.exact or (kind is float and not math.isfinite(value)):
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            if check.adapter is not None:
                value = self._validated(node, check.adapter, value, item)
            size = _size(value)
        else:
            size = len(value) if kind is str else 8  # `_size` of a str, of a number
        if size > self.ctx.max_result_bytes:
            raise StepError(
                f"result is {size / 1e6:.1f} MB; the limit is {self.ctx.max_result_bytes / 1e6:.0f} MB"
            )
        return value

    def _validated(self, node: int, adapter: TypeAdapter[Any], value: Any, item: bool) -> Any:
        try:
            checked = adapter.validate_python(value)
        except ValidationError as err:
            declared = self.ctx.checked.result_types[self.order[node]]
            shown = declared.item if item and declared.item else declared
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise StepError(
                f"result does not fit `{shown}`"
                + (f" at `{where}`" if where else "")
                + f": {first['msg']} (got {_preview(value)})"
            ) from None
        return adapter.dump_python(checked, mode="python")

    # --- NodeRunner -------------------------------------------------------------------
    def run(self, node: int) -> Coroutine[Any, Any, Outcome]:
        step = self.steps[node]
        if self._direct[node]:
            # Nothing to decide before the call: its coroutine is the node's (building the
            # scope only copies values, so it cannot fail here, outside the coroutine).
            scope = self.scope(step) if self._reads[node] else _NO_SCOPE
            return self._call(node, step, self.ctx.records[step.id], scope, item=False)
        return self._run(node, step)

    async def _run(self, node: int, step: Step) -> Outcome:
        """A step with a `when` or a `for`: decide, then call, skip or expand."""
        record = self.ctx.records[step.id]
        try:
            scope = self.scope(step) if self._reads[node] else _NO_SCOPE
            if step.when is not None and not evaluate(step.when, scope):
                self._skip(step.id, f"`when {step.when}` is false", record, by_when=True)
                return Outcome("skip", value=f"when {step.when!r} is false")
            if step.for_each is not None:
                items = self.resolve(step.for_each.over, scope)
                if items is None:
                    items = []
                if not isinstance(items, list | tuple):
                    raise StepError(
                        f"`for` needs a list; `{step.for_each.over.ref}` is {type(items).__name__}"
                    )
                if len(items) > MAX_FAN_OUT:
                    raise StepError(f"fan-out over {len(items)} items; the limit is {MAX_FAN_OUT}")
                record.status = _RUNNING
                record.started_at = self.ctx.now()
                if self.ctx.events.active:
                    self.ctx.events.emit(
                        FanOutExpanded(self.ctx.run_id, record.started_at, step.id, len(items))
                    )
                if scope is not _NO_SCOPE:
                    self._fan_scopes[node] = scope
                return Outcome("expand", value=items)
        except (TemplateProblem, StepError) as err:
            return self._fail(node, step, record, describe_error(err), started=False)
        return await self._call(node, step, record, scope, item=False)

    async def run_item(self, parent: int, index: int, item: Any) -> Outcome:
        step = self.steps[parent]
        assert step.for_each is not None
        shared = self._fan_scopes.get(parent)
        scope = (
            {**shared, step.for_each.var: item}
            if shared is not None
            else self.scope(step, {step.for_each.var: item})
        )
        record = self.ctx.records[step.id]
        return await self._call(parent, step, record, scope, item=True, index=index)

    def finish_parent(self, parent: int, outcomes: list[Outcome]) -> Outcome:
        self._fan_scopes.pop(parent, None)
        step = self.steps[parent]
        record = self.ctx.records[step.id]
        failures = [(i, o) for i, o in enumerate(outcomes) if o.kind != "ok"]
        record.finished_at = self.ctx.now()
        if failures and step.on_error != "skip":
            index, first = failures[0]
            error = f"{len(failures)} of {len(outcomes)} items failed; item {index}: {first.error}"
            return self._fail(parent, step, record, error, started=True, count_attempt=False)
        values = [o.value for o in outcomes if o.kind == "ok"]
        record.status = _SUCCEEDED
        record.output = values
        if failures:
            record.error = f"{len(failures)} of {len(outcomes)} items failed and were left out"
        self.ctx.values[step.id] = values
        if self.ctx.on_final is not None:
            self.ctx.on_final(step.id)
        if self.ctx.events.active:
            self.ctx.events.emit(
                StepSucceeded(
                    self.ctx.run_id,
                    record.finished_at,
                    step.id,
                    values,
                    record.finished_at - (record.started_at or record.finished_at),
                    record.attempts,
                    record.input_tokens,
                    record.output_tokens,
                    record.cost_usd,
                )
            )
        return Outcome("ok", value=values)

    def skipped(self, node: int, reason: str) -> None:
        step = self.steps[node]
        self._skip(step.id, reason, self.ctx.records[step.id])

    def cancelled(self, node: int) -> None:
        step = self.steps[node]
        record = self.ctx.records[step.id]
        if record.status.is_open:
            record.status = StepStatus.CANCELLED
            if record.started_at is not None:
                record.finished_at = self.ctx.now()
            if self.ctx.events.active:
                self.ctx.events.emit(StepCancelled(self.ctx.run_id, self.ctx.now(), step.id))

    def primary_done(self, primary: int, fallback: int, outcome: Outcome) -> None:
        step = self.steps[primary]
        record = self.ctx.records[step.id]
        fallback_id = self.order[fallback]
        if outcome.kind == "ok":
            record.status = _SUCCEEDED
            record.output = self.ctx.values.get(fallback_id)
            self.ctx.values[step.id] = record.output
            record.error = f"{record.error} (result from fallback `{fallback_id}`)"
        else:
            record.error = f"{record.error}; fallback `{fallback_id}` failed too"
        if self.ctx.on_final is not None:
            self.ctx.on_final(step.id)

    # --- the call ---------------------------------------------------------------------
    def _skip(self, step_id: str, reason: str, record: StepRecord, by_when: bool = False) -> None:
        record.status = StepStatus.SKIPPED
        record.skipped_by_when = by_when
        record.error = reason if record.error is None else record.error
        if self.ctx.on_final is not None:
            self.ctx.on_final(step_id)
        if self.ctx.events.active:
            self.ctx.events.emit(StepSkipped(self.ctx.run_id, self.ctx.now(), step_id, reason))

    def _fail(
        self,
        node: int,
        step: Step,
        record: StepRecord,
        error: str,
        *,
        started: bool,
        count_attempt: bool = True,
        surprise: bool = False,
    ) -> Outcome:
        now = self.ctx.now()
        if not started:
            record.started_at = record.started_at if record.started_at is not None else now
        record.finished_at = now
        record.status = StepStatus.FAILED
        record.error = error
        if self.ctx.on_final is not None:
            self.ctx.on_final(step.id)
        tolerate = step.on_error == "skip"
        fallback = (
            self.index.get(step.on_error, -1) if step.on_error not in ("fail", "skip") else -1
        )
        if self.ctx.wants is not None and not tolerate and fallback < 0:
            self.ctx.raise_trigger("surprise" if surprise else "failure", step.id, error)
        if self.ctx.events.active:
            self.ctx.events.emit(
                StepFailed(self.ctx.run_id, now, step.id, error, record.attempts, tolerate)
            )
        return Outcome("fail", error=error, tolerate=tolerate, fallback=fallback)

    async def _call(
        self,
        node: int,
        step: Step,
        record: StepRecord,
        scope: Mapping[str, Any],
        *,
        item: bool,
        index: int = 0,
    ) -> Outcome:
        # The hot path of every step: locals for what it reads more than once, and the
        # work of an attempt only where the step asks for it (events when someone listens,
        # approval, cache, check). A step's success is written out at the end, not in a
        # helper: it runs once per step.
        ctx = self.ctx
        events = ctx.events
        spec = self._specs.get(step.tool)
        if spec is None:
            spec = self._specs[step.tool] = ctx.tools[step.tool]
        attempts = step.retry + 1
        error = "not run"
        cached = False
        for attempt in range(1, attempts + 1):
            record.attempts += 1
            now = _perf() - ctx.started
            if record.started_at is None:
                record.started_at = now
            if not item:
                record.status = _RUNNING
            model = (
                ctx.select_model(step, spec, attempt)
                if ctx.select_model is not None and spec.uses_model
                else None
            )
            if model is not None:
                record.model = model
            if events.active:
                name = f"{step.id}[{index}]" if item else step.id
                events.emit(StepStarted(ctx.run_id, now, name, attempt, step.tool, model))
            try:
                # Templates render in a worker under the step's timeout, so a hostile
                # one cannot block the event loop.
                if self._templated[node]:
                    kwargs = await render_in_worker(
                        functools.partial(self._arguments, step, spec, scope), step.timeout_s
                    )
                elif step.args or spec.params:
                    kwargs = self._arguments(step, spec, scope)
                else:
                    kwargs = {}  # a fresh dict: a context parameter may be added to it
                if (step.approve or spec.needs_approval) and not ctx.approve_all:
                    approved = await self._approved(step, kwargs)
                    if approved is None:
                        ctx.stop_reason = StopReason.AWAITING_APPROVAL
                        error = f"awaiting approval: planfile approve {ctx.run_id} {step.id}"
                        if item:
                            return Outcome("fail", error=error)
                        return self._fail(node, step, record, error, started=True)
                    if not approved:
                        raise StepError("rejected by a person (planfile reject)")
                key = None
                if ctx.step_cache is not None and (step.cache or ctx.cache_all):
                    key = ctx.step_cache.key(step.tool, kwargs, model, step.type)
                    hit = ctx.step_cache.get(key)
                    if hit is not ctx.step_cache.MISS:
                        value = self.validate_result(node, hit, item)
                        record.cache_hits += 1
                        if item:
                            return Outcome("ok", value=value)
                        cached = True
                        break
                if spec.context_param is not None:
                    kwargs[spec.context_param] = self.tool_context(step, attempt, model)
                value = self.validate_result(
                    node, await self._call_tool(spec, kwargs, step.timeout_s), item
                )
                if key is not None:
                    ctx.step_cache.put(key, value)
                if (
                    step.check is not None
                    and not item
                    and not evaluate(step.check, {**scope, "result": value})
                ):
                    raise CheckFailed(
                        f"check failed: `{step.check}` is false for {_preview(value)}"
                    )
            except asyncio.CancelledError:
                raise
            except BudgetExceeded as err:
                ctx.stop_reason = StopReason.BUDGET_EXCEEDED
                record.budget_scope = err.scope
                error = str(err)
                if item:
                    return Outcome("fail", error=error)
                return self._fail(node, step, record, error, started=True)
            except Exception as err:
                error = describe_error(err)
                if isinstance(err, TimeoutError | asyncio.TimeoutError) and step.timeout_s:
                    error = f"timed out after {step.timeout_s:g}s"
                if attempt < attempts and worth_retrying(err):
                    delay = ctx.retry.delay(attempt, ctx.rng)
                    if events.active:
                        events.emit(
                            StepRetrying(ctx.run_id, ctx.now(), step.id, attempt, error, delay)
                        )
                    await asyncio.sleep(delay)
                    continue
                if item:
                    return Outcome("fail", error=error)
                return self._fail(
                    node, step, record, error, started=True, surprise=isinstance(err, CheckFailed)
                )
            if item:
                return Outcome("ok", value=value)
            break
        else:
            return self._fail(node, step, record, error, started=True)
        # The step succeeded (called, or served from the cache).
        record.finished_at = finished = _perf() - ctx.started
        record.status = _SUCCEEDED
        record.output = value
        ctx.values[step.id] = value
        if ctx.on_final is not None:
            ctx.on_final(step.id)
        started = record.started_at
        duration = finished - started if started is not None else 0.0
        if ctx.observe is not None and not cached:
            ctx.observe(node, duration)
        ctx.finished_steps += 1
        if ctx.wants is not None:
            ctx.raise_trigger("step", step.id, None)
        if events.active:
            events.emit(
                StepSucceeded(
                    ctx.run_id,
                    finished,
                    step.id,
                    value,
                    duration,
                    record.attempts,
                    record.input_tokens,
                    record.output_tokens,
                    record.cost_usd,
                    cached,
                )
            )
        return Outcome("ok", value=value)

    async def _approved(self, step: Step, kwargs: dict[str, Any]) -> bool | None:
        """A person's decision for this step (asked once per run), or None to wait."""
        ctx = self.ctx
        if step.id not in ctx.approvals:
            if ctx.approval is None:
                return None
            decision = ctx.approval(step.id, kwargs)
            if asyncio.iscoroutine(decision):
                decision = await decision
            if decision is None:
                return None
            ctx.approvals[step.id] = bool(decision)
        return ctx.approvals[step.id]

    def _arguments(self, step: Step, spec: ToolSpec, scope: Mapping[str, Any]) -> dict[str, Any]:
        if not step.args and not spec.params:
            return {}  # nothing to resolve or validate (~10 µs of pydantic saved per step)
        raw = {name: self.resolve(value, scope) for name, value in step.args.items()}
        return tool_arguments(spec, raw)

    def _workspace(self) -> Any:
        """The run's workspace folder, looked up once (not a `getcwd` per tool call)."""
        if self._workspace_path is None:
            self._workspace_path = self.ctx.settings.get("workspace_path") or _cwd()
        return self._workspace_path

    def tool_context(self, step: Step, attempt: int, model: str | None) -> ToolContext:
        """What a tool that asks for a context sees for one attempt of `step`."""
        ctx = self.ctx
        return ToolContext(
            run_id=ctx.run_id,
            step_id=step.id,
            attempt=attempt,
            workspace=self._workspace(),
            settings=ctx.settings,
            model=model,
            services={
                **ctx.services,
                "step": step,
                "record": ctx.records[step.id],
                "run": ctx,
                "runner": self,
            },
        )

    def call_tool(
        self, spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float | None
    ) -> Awaitable[Any]:
        """One call of a tool with its arguments ready, under `timeout_s`: the single place
        a step's tool runs (an agent step's inner tool calls come through here too). It
        runs where the run's backend puts it (engine/run/backend.py); a plain function
        returning what the backend returns to await, so the hot path awaits no extra
        frame. Errors may be raised here or at the await: await it in the same `try`."""
        return self._call_tool(spec, kwargs, timeout_s)


def tool_arguments(spec: ToolSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """A tool's arguments validated against its signature (a step's, or an agent's call);
    StepError names the first bad one."""
    if spec.args_model is None:
        return raw
    try:
        model = spec.args_model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise StepError(f"argument `{name}` of `{spec.name}`: {first['msg']}") from None
    return {name: getattr(model, name) for name in type(model).model_fields}


_NO_SCOPE: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class _ResultCheck:
    """How one declared result type is checked: its adapter, and the Python type a value
    may have to skip pydantic (validating an int as `int` gives the same int back)."""

    adapter: TypeAdapter[Any] | None
    exact: type  # `_NoShortcut` for every type but str/int/float/bool


class _NoShortcut:
    """No value is of this type: a declared type without a shortcut (a `list[int]`)
    checks every result, None included, through its adapter."""


_NO_CHECK = _ResultCheck(None, _NoShortcut)
_EXACT: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _cwd() -> Any:
    from pathlib import Path

    return Path.cwd()


def _size(value: Any) -> int:
    kind = type(value)
    if kind is str or kind is bytes:
        return len(value)
    if value is None or isinstance(value, bool | int | float):
        return 8
    if isinstance(value, str | bytes):
        return len(value)
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError, RecursionError):
        return 0


def _preview(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

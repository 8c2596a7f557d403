"""One run of a plan: its state, its rounds (replanning), its hooks, and how it ends.

`Engine` (engine/api.py) holds configuration; every `run`/`resume` builds a `RunSession`
that holds everything belonging to that run, so concurrent runs on one Engine share
nothing mutable but the engine's learned latency estimates. The session knows models,
the journal, the audit log and tracing only through `RunSetup` (Protocols and
callables the API layer fills in) and hooks (engine/run/hooks.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from dsl.checker import CheckedPlan
from dsl.ir import Step
from engine.errors import StoreError
from engine.run.backend import LOCAL, Backend
from engine.run.driver import Driver
from engine.run.events import EventBus, RunFinished, RunStarted
from engine.run.executor import RetryPolicy, RunContext, StepRunner
from engine.run.hooks import EventCallback, Hooks
from engine.run.latency import Estimates, Priorities
from engine.run.replanning import Replanning, run_rounds
from engine.run.result import (
    RunResult,
    RunStatus,
    StepRecord,
    StepStatus,
    StopReason,
    diagnostic_notes,
    observed_critical_path,
)
from engine.run.schedule import Schedule, State
from stdlib_tools.registry import ToolSpec


class ModelService(Protocol):
    """The model gateway as a run uses it: which model a step's attempt calls."""

    def select(self, step: Step, attempt: int) -> Any: ...  # has `.model`


@dataclass
class RunSetup:
    """What a run takes from the engine's configuration (built per run by engine/api.py)."""

    tools: Mapping[str, ToolSpec]
    pool: Executor
    latency: Estimates  # engine.run.latency.LatencyModel
    settings: Mapping[str, Any] = field(default_factory=dict)
    services: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Mapping[str, int] = field(default_factory=dict)
    max_parallel: int = 16
    hooks: list[Any] = field(default_factory=list)
    step_cache: Any = None  # get(key) / put(key, value), when step caching is on
    cache_all: bool = False
    approve_all: bool = False
    # The gateway for a plan that calls models: (checked plan, the run's warnings) -> it.
    models: Callable[[CheckedPlan, list[str]], ModelService] | None = None
    on_warning: Callable[[str], None] | None = None
    backend: Backend = LOCAL  # where tool calls execute (engine/run/backend.py)
    # A resumed run's journaled agent calls: step id -> the inner calls it replays.
    agent_replay: Callable[[str], list[dict[str, Any]]] | None = None


def _preset_state(record: StepRecord, on_error: str) -> State:
    if record.status == StepStatus.SUCCEEDED:
        return State.SUCCEEDED
    if record.status == StepStatus.FAILED and on_error != "skip":
        return State.FAILED
    return State.SKIPPED  # skipped, or a tolerated failure: dependents run on null


class RunSession:
    """One run: its records, values and rounds; the `RunView` its hooks see."""

    def __init__(
        self,
        setup: RunSetup,
        checked: CheckedPlan,
        inputs: dict[str, Any],
        *,
        run_id: str | None = None,
        on_event: Callable[[Any], None] | None = None,
        carried: Mapping[str, StepRecord] | None = None,
        values: Mapping[str, Any] | None = None,
    ):
        self.setup = setup
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.checked = checked
        self.inputs = inputs
        self.started = time.perf_counter()
        self.records: dict[str, StepRecord] = {}
        self.carried: dict[str, StepRecord] = dict(carried or {})  # finished in earlier rounds
        self.values: dict[str, Any] = dict(values or {})
        self.finished_steps = 0
        self.trigger: tuple[str, str, str | None] | None = None
        self.cancelled = False
        self.errors: list[str] = []  # why the run was stopped (a broken journal)
        self.warnings: list[str] = []
        self._ctx: RunContext | None = None
        display = [EventCallback(on_event)] if on_event is not None else []
        self.hooks = Hooks.open([*display, *setup.hooks], self)
        self.events = EventBus(self.hooks.event_listeners())

    def __repr__(self) -> str:  # asyncio repr()s task frames: keep it short
        return f"RunSession(run_id={self.run_id!r})"

    # --- RunView ------------------------------------------------------------------------
    def stop(self, reason: str, message: str) -> None:
        ctx = self._ctx
        if ctx is not None and ctx.stop_reason is None:
            ctx.stop_reason = StopReason(reason)
            self.errors.append(message)

    def warn(self, message: str) -> None:
        if self.setup.on_warning is not None:
            self.setup.on_warning(message)

    # --- the run --------------------------------------------------------------------------
    async def run(
        self,
        replanning: Replanning | None = None,
        *,
        max_replans: int = 5,
        result_holder: list[RunResult] | None = None,
    ) -> RunResult:
        """Run to the end (through replanning rounds when a policy is given); the result
        also goes to `result_holder`, even when the run is cancelled."""
        try:
            self.hooks.call("run_started", self)
            if replanning is None:
                result = await self.round(None, first=True)
            else:
                result = await run_rounds(self, replanning, max_replans)
            self._finish(result, result_holder)
            if self.cancelled:
                raise asyncio.CancelledError
            return result
        finally:
            self.hooks.close()

    async def round(self, wants: Callable[[str, int], bool] | None, first: bool) -> RunResult:
        """Run the current plan once, from what earlier rounds finished, until it is done
        or stopped (by the replan policy, a budget, an approval, a broken journal)."""
        setup = self.setup
        checked = self.checked
        plan = checked.plan
        carried = self.carried
        if carried:
            records = {
                step.id: carried.get(step.id) or StepRecord(tool=step.tool, executor=step.executor)
                for step in plan.steps
            }
        else:
            # Once per step: positional, and `executor` only where a step has one (keyword
            # arguments cost ~35% more of a record's construction).
            records = {
                step.id: StepRecord(step.tool)
                if step.executor is None
                else StepRecord(step.tool, executor=step.executor)
                for step in plan.steps
            }
        self.records = records
        self.trigger = None
        ctx = RunContext(
            run_id=self.run_id,
            checked=checked,
            tools=setup.tools,
            inputs=self.inputs,
            records=records,
            events=self.events,
            pool=setup.pool,
            backend=setup.backend,
            settings=setup.settings,
            services=setup.services,
            retry=setup.retry,
            started=self.started,
        )
        self._ctx = ctx
        if setup.step_cache is not None:
            ctx.step_cache = setup.step_cache
            ctx.cache_all = setup.cache_all
        ctx.approve_all = setup.approve_all
        ctx.approval = self.hooks.approver(self)
        ctx.values.update(self.values)
        ctx.wants = wants
        ctx.finished_steps = self.finished_steps
        self.hooks.call("round_started", self, carried)
        # Read after round_started: a hook may bind its per-round callback there.
        ctx.on_final = self.hooks.step_final()
        ctx.on_agent_call = self.hooks.agent_call()
        ctx.agent_replay = setup.agent_replay
        if (
            setup.models is not None
            and "models" not in setup.services
            and any(setup.tools[tool].uses_model for tool in {step.tool for step in plan.steps})
        ):
            gateway = setup.models(checked, self.warnings)
            ctx.services = {**setup.services, "models": gateway}
            ctx.select_model = lambda step, spec, attempt: gateway.select(step, attempt).model
        schedule, priorities = build_schedule(checked, carried, setup)
        ctx.observe = priorities.observe_node
        runner = StepRunner(ctx, schedule.names)
        for node in schedule.initially_skipped:
            runner.skipped(node, "a step it needs failed before the replan")
        driver = Driver(schedule, runner, should_stop=lambda: ctx.stop_reason is not None)
        if first:
            # The clock starts with the first step: set-up (compiling the graph, opening
            # files) is not the run's wall time.
            self.started = ctx.started = time.perf_counter()
            if self.events.active:
                self.events.emit(RunStarted(self.run_id, 0.0, plan.name, tuple(schedule.names)))
        try:
            await driver.run()
        except asyncio.CancelledError:
            self.cancelled = True
        finally:
            self.hooks.call("round_ended", self)  # no step of this round can finish now
        result = self._round_result(ctx, records)
        self.trigger = ctx.trigger
        self.values = ctx.values
        self.finished_steps = ctx.finished_steps
        ledger = getattr(ctx.services.get("models"), "ledger", None)
        if ledger is not None:
            try:
                ledger.flush()  # the run's calls are durable when it returns
            except StoreError as err:
                # A broken ledger was told to the step whose call it failed to record;
                # the run must still end (and be journaled), not stay `running`.
                self.warnings.append(str(err))
                self.warn(f"warning: {err}")
        return result

    def _round_result(self, ctx: RunContext, records: dict[str, StepRecord]) -> RunResult:
        checked = self.checked
        for name in checked.fallbacks:
            record = records[name]
            if record.status == StepStatus.PENDING:
                record.status = StepStatus.SKIPPED
                record.error = "fallback not needed"
        status = RunStatus.CANCELLED
        if not self.cancelled:
            failed = unfinished = False
            on_error: dict[str, str] | None = None  # read only when a step failed
            for name, record in records.items():
                if record.status == StepStatus.SUCCEEDED:
                    continue
                if record.status == StepStatus.FAILED:
                    if on_error is None:
                        on_error = {step.id: step.on_error for step in checked.plan.steps}
                    failed = failed or on_error[name] != "skip"
                elif record.status.is_open:
                    unfinished = True
            stop = ctx.stop_reason
            if stop is not None and stop.run_status != RunStatus.FAILED:
                status = stop.run_status
            elif failed or unfinished or stop is not None:
                status = RunStatus.FAILED
            else:
                status = RunStatus.SUCCEEDED
        values, inputs = ctx.values, self.inputs
        return RunResult(
            run_id=self.run_id,
            plan=checked.plan.name,
            status=status,
            outputs={
                name: values.get(name, inputs.get(name))
                for name in checked.outputs
                if name in values or name in inputs
            },
            steps=records,
            cost_usd=sum(r.cost_usd for r in records.values()),
            wall_s=time.perf_counter() - self.started,
            critical_path_s=observed_critical_path(checked, records)[0],
            warnings=self.warnings,
            error=self.errors[0] if self.errors else None,
            notes=diagnostic_notes(checked.warnings),
            stop_reason=None if self.cancelled else ctx.stop_reason,
        )

    def _finish(self, result: RunResult, result_holder: list[RunResult] | None) -> None:
        """The run has ended: tell the hooks (the journal records it), then the listeners,
        then hand the result to the holder."""
        if result.error is not None:
            self.warn(f"error: {result.error}")
        self.hooks.call("run_finished", self, result)
        if self.events.active:
            now = time.perf_counter() - self.started
            self.events.emit(
                RunFinished(self.run_id, now, result.status, result.outputs, result.cost_usd)
            )
        if result_holder is not None:
            result_holder.append(result)


def build_schedule(
    checked: CheckedPlan, carried: Mapping[str, StepRecord], setup: RunSetup
) -> tuple[Schedule, Priorities]:
    """The plan as the scheduler's integer arrays (limit groups, the states of steps
    finished in earlier rounds) and the priorities that keep it ordered by critical path."""
    return plan_schedule(
        checked,
        setup.tools,
        setup.latency,
        limits=setup.limits,
        max_parallel=setup.max_parallel,
        carried=carried,
    )


def limit_groups(steps: Sequence[Step], tools: Mapping[str, ToolSpec]) -> list[tuple[str, ...]]:
    """Each step's limit groups (`tool:NAME`, and `model:NAME` or `tier:NAME` for a step
    that calls a model): the keys `--limit` bounds."""
    groups: list[tuple[str, ...]] = []
    known: dict[tuple[str, str | None, str | None], tuple[str, ...]] = {}  # steps share them
    for step in steps:
        group = known.get((step.tool, step.model, step.tier))
        if group is None:
            keys = [f"tool:{step.tool}"]
            if tools[step.tool].uses_model:
                keys.append(
                    f"model:{step.model}" if step.model else f"tier:{step.tier or 'standard'}"
                )
            group = known[(step.tool, step.model, step.tier)] = tuple(keys)
        groups.append(group)
    return groups


def plan_schedule(
    checked: CheckedPlan,
    tools: Mapping[str, ToolSpec],
    latency: Estimates,
    *,
    limits: Mapping[str, int],
    max_parallel: int,
    carried: Mapping[str, StepRecord] | None = None,
) -> tuple[Schedule, Priorities]:
    """`build_schedule` from its parts: also what `planfile bench` (engine/sim) drives
    under a virtual clock, so the simulation schedules exactly as a run does."""
    carried = carried or {}
    dag = checked.graph.compact
    steps = checked.plan.steps  # in plan order, as the graph's nodes are
    schedule = Schedule(
        dag.names,
        dag.deps,
        # Groups matter only to a bound on one (the global slot count needs none).
        groups=limit_groups(steps, tools) if any(v > 0 for v in limits.values()) else None,
        limits=limits,
        max_parallel=max_parallel,
        standby=[dag.index[f] for f in checked.fallbacks if f not in carried],
        finished={
            dag.index[name]: _preset_state(record, steps[dag.index[name]].on_error)
            for name, record in carried.items()
            if name in dag.index
        },
        successors=dag.successors,
    )
    return schedule, Priorities(dag, steps, latency, tools, schedule)

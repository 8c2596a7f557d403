"""The embedding API: `Engine` runs checked plans; `load_plan` loads and checks them.

    from engine import Engine, load_plan
    plan = load_plan("examples/unit_economics.plan")
    result = await Engine(max_parallel=8).run(plan, inputs={"monthly_churn": 0.02})

An Engine holds configuration and a thread pool, no per-run state: one engine can run
many plans, concurrently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dsl.checker import CheckedPlan
from dsl.errors import PlanError, did_you_mean
from dsl.loader import PlanSource, load_and_check
from dsl.printer import format_plan
from dsl.types import build_record_models, type_adapter
from dsl.ir import Plan
from engine.store.home import data_home
from stdlib_tools.registry import ToolRegistry, ToolSpec, make_tool

from engine.observe.audit import AuditLog, secrets_from
from engine.config import Config
from engine.run.driver import Driver
from engine.run.events import Event, EventBus, RunFinished, RunStarted
from engine.run.executor import RetryPolicy, RunContext, StepRunner
from dsl.dag import LatencyModel
from engine.store.journal import Journal, JournalError, RunLog
from engine.models.ledger import BudgetGuard, Ledger
from engine.models.local_model import LOCAL_MODEL
from engine.models.gateway import Gateway, ModelSelector, TierSelector
from engine.agent.planner import Usage
from engine.agent.replan import (
    POLICIES,
    LLMPolicy,
    Replanner,
    ReplanPolicy,
    ReplanRequest,
    revised_plan,
    truncate_results,
)
from engine.run.result import RunResult, StepRecord, observed_critical_path
from engine.run.schedule import Schedule, State, critical_tails
from engine.store.step_cache import StepCache
from engine.observe.tracing import TraceListener, tracer_from_environment


class InputError(ValueError):
    """Run inputs do not fit the plan's declared inputs."""


def build_registry(
    tools: Iterable[ToolSpec | Callable[..., Any]] | ToolRegistry | None,
) -> ToolRegistry:
    """The stdlib tools plus the user's (functions are wrapped as tools)."""
    if isinstance(tools, ToolRegistry):
        return tools
    registry = ToolRegistry.standard()
    for item in tools or ():
        registry.add(item if isinstance(item, ToolSpec) else make_tool(item, source="user"))
    return registry


def load_plan(
    source: PlanSource,
    *,
    tools: Iterable[ToolSpec | Callable[..., Any]] | ToolRegistry | None = None,
    tiers: Iterable[str] = (),
) -> CheckedPlan:
    """Load a plan from a `.plan`/`.json` path, text, a JSON value or IR, and check it."""
    return load_and_check(source, build_registry(tools), tiers=tuple(tiers))


def resolve_inputs(checked: CheckedPlan, provided: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults plus provided values, validated against the declared input types."""
    provided = dict(provided or {})
    plan = checked.plan
    declared = {decl.name: decl for decl in plan.inputs}
    problems: list[str] = []
    for name in provided:
        if name not in declared:
            hint = did_you_mean(name, declared)
            problems.append(f"unknown input `{name}`" + (f" ({hint})" if hint else ""))
    models = build_record_models({r.name: dict(r.fields) for r in plan.types})
    values: dict[str, Any] = {}
    for name, decl in declared.items():
        input_type = checked.input_types[name]
        if name in provided:
            value = provided[name]
        elif decl.default is not None:
            value = decl.default
        elif input_type.optional:
            value = None
        else:
            problems.append(f"input `{name}` ({input_type}) is required: pass --input {name}=...")
            continue
        try:
            values[name] = type_adapter(input_type, models).validate_python(value)
        except ValidationError as err:
            first = err.errors()[0]
            problems.append(
                f"input `{name}` must be `{input_type}`: {first['msg']} (got {value!r:.60})"
            )
    if problems:
        raise InputError("; ".join(problems))
    return {name: _plain(value) for name, value in values.items()}


@dataclass
class Round:
    """One round of a replanned run: what earlier rounds finished, and what stopped this one."""

    run_id: str
    started: float
    records: dict[str, StepRecord]
    values: dict[str, Any]
    wants: Callable[[str, int], bool] | None
    first: bool
    finished_steps: int = 0
    trigger: tuple[str, str, str | None] | None = None
    audit: AuditLog | None = None
    # Replanned runs end in `_run_rounds` (after the replans are known), not in a round.
    deferred: bool = False
    events: EventBus | None = None
    trace: TraceListener | None = None


def _preset_state(record: StepRecord, on_error: str) -> State:
    if record.status == "succeeded":
        return State.SUCCEEDED
    if record.status == "failed" and on_error != "skip":
        return State.FAILED
    return State.SKIPPED  # skipped, or a tolerated failure: dependents run on null


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="python") if callable(dump) else value


class Engine:
    """Runs plans: scheduling, tools, limits and events. Reusable and safe to share."""

    def __init__(
        self,
        *,
        tools: Iterable[ToolSpec | Callable[..., Any]] | ToolRegistry | None = None,
        max_parallel: int = 16,
        limits: Mapping[str, int] | None = None,
        settings: Mapping[str, Any] | None = None,
        tiers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        latency: LatencyModel | None = None,
        services: Mapping[str, Any] | None = None,
        config: Config | None = None,
        budget_usd: float | None = None,
        selector: ModelSelector | None = None,
        ledger: Ledger | None = None,
        on_warning: Callable[[str], None] | None = None,
        journal: Journal | None = None,
        audit: bool | Path = False,
        step_cache: StepCache | None = None,
        cache_all: bool = False,
        approver: Callable[[str, str, dict[str, Any]], Any] | None = None,
        approve_all: bool = False,
        tracer: Any = None,
    ):
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.registry = build_registry(tools)
        self.max_parallel = max_parallel
        self.limits = dict(limits or {})
        self.settings = dict(settings or {})
        self.tiers = dict(tiers or {})
        self.retry = retry or RetryPolicy()
        self.latency = latency or LatencyModel.from_tools(self.registry)
        self.services = dict(services or {})
        self.config = config or Config()
        self.budget_usd = budget_usd
        self.selector = selector
        self.ledger = ledger
        self.on_warning = on_warning
        self.journal = journal
        self.audit = audit
        self.step_cache = step_cache
        self.cache_all = cache_all
        self.approver = approver
        self.approve_all = approve_all
        # An OpenTelemetry tracer (the `tracing` extra); None = no tracing, no cost.
        self.tracer = tracer if tracer is not None else tracer_from_environment()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._preamble: list[tuple[str, str, dict[str, Any]]] = []

    # --- lifecycle ------------------------------------------------------------------
    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(4, self.max_parallel), thread_name_prefix="planfile-tool"
            )
        return self._pool

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.flush()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plans ------------------------------------------------------------------------
    def check(self, plan: PlanSource | CheckedPlan) -> CheckedPlan:
        if isinstance(plan, CheckedPlan):
            return plan
        return load_and_check(plan, self.registry, tiers=tuple(self.tiers))

    async def run(
        self,
        plan: PlanSource | CheckedPlan,
        inputs: Mapping[str, Any] | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
        result_holder: list[RunResult] | None = None,
        replan: str | ReplanPolicy | None = None,
        max_replans: int = 5,
        goal: str | None = None,
        audit_preamble: list[tuple[str, str, dict[str, Any]]] | None = None,
    ) -> RunResult:
        """Run a plan to the end and return its result (a failed step is not an exception).

        `replan` is a policy (or a built-in's name: never, on-failure, after-each-step,
        every-n, on-surprise) asked at the points it wants; revisions are capped at
        `max_replans` and recorded in the result's `replans`. `result_holder` receives
        the result even when the run is cancelled (Ctrl-C), so a caller can report what
        finished before re-raising.
        """
        checked = self.check(plan)
        values = resolve_inputs(checked, inputs)
        policy = self.replan_policy(replan, checked)
        self._preamble = audit_preamble or []
        if policy is None:
            return await self._execute(checked, values, on_event, result_holder)
        return await self._run_rounds(
            checked,
            values,
            policy,
            max_replans,
            goal or checked.plan.goal or checked.plan.name,
            on_event,
            result_holder,
        )

    async def resume(
        self,
        run_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        result_holder: list[RunResult] | None = None,
    ) -> RunResult:
        """Continue a journaled run: finished steps are not run again, nor paid for again.

        Steps that were running when the run stopped (killed, cancelled, out of budget)
        run again: at-least-once for those, exactly-once for finished ones.
        """
        if self.journal is None:
            raise ValueError("resume needs a journal: Engine(journal=Journal())")
        row = self.journal.run(run_id)
        plan = Plan.model_validate_json(row.plan_json)
        checked = self.check(plan)
        inputs = resolve_inputs(checked, row.inputs)
        finished = {
            name: record
            for name, record in self.journal.steps(row.run_id).items()
            if record.status == "succeeded"
            or (record.status == "skipped" and (record.error or "").startswith("`when"))
        }
        values = {name: record.output for name, record in finished.items()}
        round_ = Round(row.run_id, time.perf_counter(), finished, values, None, True)
        return await self._execute(checked, inputs, on_event, result_holder, round_)

    def replan_policy(
        self, replan: str | ReplanPolicy | None, checked: CheckedPlan
    ) -> ReplanPolicy | None:
        """A built-in policy by name (with the planner tier as replanner), or the user's."""
        if replan is None or replan == "never":
            return None
        if not isinstance(replan, str):
            return replan
        every = 3
        name = replan
        if replan.startswith("every-") and replan[6:].isdigit():
            name, every = "every-n", int(replan[6:])
        if name not in POLICIES:
            raise ValueError(
                f"unknown replan policy `{replan}` (policies: {', '.join(POLICIES)}, every-N)"
            )
        gateway = self.model_gateway(checked.plan.tiers)
        tiers = self.tier_map(checked.plan.tiers)
        model = gateway.usable(tiers.get("planner") or tiers.get("frontier") or LOCAL_MODEL)
        replanner = Replanner(gateway, model, self.registry, Usage(model=model))
        return LLMPolicy(name, replanner, every)

    async def _run_rounds(
        self,
        checked: CheckedPlan,
        inputs: dict[str, Any],
        policy: ReplanPolicy,
        max_replans: int,
        goal: str,
        on_event: Callable[[Event], None] | None,
        result_holder: list[RunResult] | None,
    ) -> RunResult:
        """Run, stop where the policy wants to decide, go on / revise / finish; repeat."""
        round_ = Round(
            uuid.uuid4().hex[:12], time.perf_counter(), {}, {}, policy.wants, True, deferred=True
        )
        replans: list[dict[str, Any]] = []
        while True:
            revisions = sum(1 for r in replans if r.get("added") is not None)
            round_.wants = policy.wants if revisions < max_replans else None
            result = await self._execute(checked, inputs, on_event, result_holder, round_)
            events = round_.events
            if round_.trigger is None:
                break
            kind, step_id, error = round_.trigger
            finished = {
                n: r
                for n, r in result.steps.items()
                if r.status in ("succeeded", "skipped", "failed")
            }
            succeeded = {
                n: round_.values.get(n) for n, r in finished.items() if r.status == "succeeded"
            }
            request = ReplanRequest(
                goal=goal,
                plan=checked.plan,
                trigger=kind,  # type: ignore[arg-type]
                step=step_id,
                error=error,
                completed=truncate_results(succeeded),
                failed={
                    n: r.error or "failed" for n, r in finished.items() if r.status == "failed"
                },
                replans=revisions,
            )
            decision = await policy.decide(request)
            if round_.audit is not None:
                round_.audit.write(
                    "replanning",
                    "decision",
                    run_id=round_.run_id,
                    trigger=kind,
                    step=step_id,
                    error=error,
                    action=decision.action,
                    reason=decision.reason,
                    added=[s.id for s in decision.steps],
                )
            audit_log = round_.audit
            round_ = Round(
                round_.run_id,
                round_.started,
                finished,
                round_.values,
                policy.wants,
                False,
                round_.finished_steps,
                audit=audit_log,
                deferred=True,
                trace=round_.trace,
            )
            if decision.action == "finish":
                result = self._finished_early(checked, result, finished, decision)
                break
            if decision.action == "revise":
                # Kept: what truly finished (successes, `when` skips). A failed step and
                # the steps skipped because of it are replaced by the revision.
                done = {
                    n
                    for n, r in finished.items()
                    if r.status == "succeeded"
                    or (r.status == "skipped" and (r.error or "").startswith("`when"))
                }
                revised = revised_plan(checked.plan, done, decision)
                try:
                    new_checked = load_and_check(
                        revised, self.registry, tiers=tuple(self.tier_map(revised.tiers))
                    )
                except PlanError as err:
                    replans.append(
                        {
                            "after": step_id,
                            "reason": f"revision rejected: {err.diagnostics[0].message}",
                            "added": None,
                            "removed": [],
                        }
                    )
                    continue
                old_remaining = [s.id for s in checked.plan.steps if s.id not in done]
                round_.records = {n: r for n, r in finished.items() if n in done}
                replans.append(
                    {
                        "after": step_id,
                        "reason": decision.reason,
                        "added": [s.id for s in decision.steps],
                        "removed": old_remaining,
                    }
                )
                checked = new_checked
        result.replans = [r for r in replans]
        usage = getattr(getattr(policy, "replanner", None), "usage", None)
        if usage is not None:
            result.cost_usd += usage.cost_usd
        self._finish(result, events, time.perf_counter() - round_.started, result_holder)
        return result

    def _finish(
        self,
        result: RunResult,
        events: EventBus | None,
        now: float,
        result_holder: list[RunResult] | None,
    ) -> None:
        """A run has ended: journal it, tell the listeners, hand the result to the holder."""
        if result.error is not None and self.on_warning is not None:
            self.on_warning(f"error: {result.error}")
        if self.journal is not None:
            try:
                self.journal.run_finished(result)
            except JournalError as err:
                # The result is still returned (and printed): the run's work is not lost,
                # only its record. Records that could not be written stay queued.
                message = f"the run's end could not be journaled: {err}"
                result.error = result.error or message
                result.warnings.append(message)
                if self.on_warning is not None:
                    self.on_warning(f"warning: {message}")
        if events is not None and events.active:
            events.emit(
                RunFinished(result.run_id, now, result.status, result.outputs, result.cost_usd)
            )
        if result_holder is not None:
            result_holder.append(result)

    def _finished_early(
        self,
        checked: CheckedPlan,
        result: RunResult,
        finished: Mapping[str, StepRecord],
        decision: Any,
    ) -> RunResult:
        for name, record in result.steps.items():
            if name not in finished:
                record.status = "skipped"
                record.error = "not needed: the replan policy finished the run"
        result.status = "succeeded"
        result.outputs = {"answer": decision.answer}
        return result

    def run_sync(
        self, plan: PlanSource | CheckedPlan, inputs: Mapping[str, Any] | None = None
    ) -> RunResult:
        """`run` for code without an event loop."""
        return asyncio.run(self.run(plan, inputs))

    async def stream(
        self, plan: PlanSource | CheckedPlan, inputs: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Event]:
        """Run a plan, yielding its events as they happen (the last is RunFinished)."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        task = asyncio.create_task(self.run(plan, inputs, on_event=queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                yield event
            task.result()  # re-raise input errors and the like
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- execution ------------------------------------------------------------------------
    def _schedule(
        self,
        checked: CheckedPlan,
        order: list[str],
        carried: Mapping[str, StepRecord] | None = None,
    ) -> Schedule:
        index = {name: i for i, name in enumerate(order)}
        plan = checked.plan
        deps = [[index[d] for d in checked.deps[name]] for name in order]
        on_error = {step.id: step.on_error for step in plan.steps}
        tails = critical_tails(deps, [self.latency.estimate(s, self.registry) for s in plan.steps])
        groups: list[tuple[str, ...]] = []
        for step in plan.steps:
            spec = self.registry[step.tool]
            keys = [f"tool:{step.tool}"]
            if spec.uses_model:
                if step.model:
                    keys.append(f"model:{step.model}")
                else:
                    keys.append(f"tier:{step.tier or 'standard'}")
            groups.append(tuple(keys))
        return Schedule(
            order,
            deps,
            priority=tails,
            groups=groups,
            limits=self.limits,
            max_parallel=self.max_parallel,
            standby=[index[f] for f in checked.fallbacks if f not in (carried or {})],
            finished={
                index[name]: _preset_state(record, on_error[name])
                for name, record in (carried or {}).items()
                if name in index
            },
        )

    def _approval(self, run_id: str) -> Callable[[str, dict[str, Any]], Any]:
        """Decisions recorded in the journal first (planfile approve/reject), then the approver."""

        async def decide(step_id: str, arguments: dict[str, Any]) -> bool | None:
            if self.journal is not None:
                recorded = self.journal.decision(run_id, step_id)
                if recorded is not None:
                    return recorded == "approved"
            if self.approver is None:
                return None
            decision = self.approver(run_id, step_id, arguments)
            if asyncio.iscoroutine(decision):
                decision = await decision
            if decision is not None and self.journal is not None:
                self.journal.decide(run_id, step_id, "approved" if decision else "rejected")
            return None if decision is None else bool(decision)

        return decide

    def _observer(
        self, checked: CheckedPlan, order: list[str], schedule: Schedule
    ) -> Callable[[Any, float], None]:
        """Refine latency estimates from observed durations; re-prioritise now and then.

        Recomputing the remaining critical paths is O(steps), so it runs once per
        max(16, steps/8) completions: amortised O(1) per step.
        """
        every = max(16, len(order) // 8)
        seen = [0]
        index = {name: i for i, name in enumerate(order)}
        deps = [[index[d] for d in checked.deps[name]] for name in order]

        def observe(step: Any, seconds: float) -> None:
            self.latency.observe(step, self.registry, seconds)
            seen[0] += 1
            if seen[0] % every == 0:
                durations = [self.latency.estimate(s, self.registry) for s in checked.plan.steps]
                schedule.reprioritize(critical_tails(deps, durations))

        return observe

    def model_gateway(
        self, plan_tiers: Mapping[str, str] | None = None, warnings: list[str] | None = None
    ) -> Gateway:
        """A model gateway outside a run (the planner uses one)."""
        return self._gateway_for(dict(plan_tiers or {}), warnings if warnings is not None else [])

    def tier_map(self, plan_tiers: Mapping[str, str] | None = None) -> dict[str, str]:
        """Tiers by precedence, lowest first: the plan's, the config's, the engine's (--tier)."""
        return {**(plan_tiers or {}), **self.config.tiers, **self.tiers}

    def _gateway(self, checked: CheckedPlan, warnings: list[str]) -> Gateway:
        return self._gateway_for(checked.plan.tiers, warnings)

    def _gateway_for(self, plan_tiers: Mapping[str, str], warnings: list[str]) -> Gateway:
        """The model gateway for one run: tiers, budget guard, ledger, warnings."""
        tiers = self.tier_map(plan_tiers)
        if self.ledger is None:
            self.ledger = Ledger()  # one per engine: planning and runs share it
        ledger = self.ledger
        run_budget = self.budget_usd if self.budget_usd is not None else self.config.budget.run_usd
        guard = BudgetGuard(ledger, run_budget, self.config.budget.daily_usd)

        def warn(message: str) -> None:
            warnings.append(message)
            if self.on_warning is not None:
                self.on_warning(message)

        selector = self.selector or TierSelector(tiers, default_tier=self.config.default_tier)
        return Gateway(
            self.config,
            tiers,
            selector=selector,
            budget=guard,
            ledger=ledger,
            warn=warn,
            fallback_to_local=self.config.fallback_to_local,
        )

    async def _execute(
        self,
        checked: CheckedPlan,
        inputs: dict[str, Any],
        on_event: Callable[[Event], None] | None,
        result_holder: list[RunResult] | None,
        round_: Round | None = None,
    ) -> RunResult:
        plan: Plan = checked.plan
        run_id = round_.run_id if round_ else uuid.uuid4().hex[:12]
        order = [step.id for step in plan.steps]
        carried = round_.records if round_ else {}
        records = {
            step.id: carried.get(step.id) or StepRecord(tool=step.tool) for step in plan.steps
        }
        events = EventBus([on_event] if on_event else None)
        audit = round_.audit if round_ is not None and round_.audit is not None else None
        if audit is None and self.audit:
            extra = self.audit if isinstance(self.audit, Path) else None
            audit = AuditLog.for_run(run_id, extra, secrets_from(self.config))
            for phase, kind, data in self._preamble:
                audit.write(phase, kind, run_id=run_id, **data)
            audit.write("execution", "plan", run_id=run_id, plan=format_plan(plan), inputs=inputs)
            if round_ is not None:
                round_.audit = audit
        if audit is not None:
            events.subscribe(audit)
        if self.tracer is not None:
            # One listener for all rounds of a replanned run: one run span, each round's steps.
            trace = round_.trace if round_ is not None else None
            if trace is None:
                trace = TraceListener(self.tracer, records)
                if round_ is not None:
                    round_.trace = trace
            trace.records = records
            events.subscribe(trace)
        journal = self.journal
        journal_errors: list[str] = []
        settings = dict(self.settings)
        settings.setdefault("cache_dir", str(data_home() / "cache"))
        if settings.get("workspace"):
            settings["workspace_path"] = Path(settings["workspace"])
        ctx = RunContext(
            run_id=run_id,
            checked=checked,
            tools=self.registry,
            inputs=inputs,
            records=records,
            events=events,
            pool=self.pool,
            settings=settings,
            services=self.services,
            retry=self.retry,
        )
        if self.step_cache is not None:
            ctx.step_cache = self.step_cache
            ctx.cache_all = self.cache_all
        ctx.approve_all = self.approve_all
        ctx.approval = self._approval(run_id)
        journal_log: RunLog | None = None
        if journal is not None:

            def journal_broke(err: JournalError) -> None:
                # Stop: work that could not be recorded would be lost to `resume`.
                if ctx.stop_reason is None:
                    ctx.stop_reason = "journal"
                    journal_errors.append(f"{err}; the run stopped")

            source = checked.source_map.file if checked.source_map else None
            journal_log = journal.run_started(
                run_id,
                checked.plan_json,
                plan.name,
                inputs,
                source,
                records,
                journal_broke,
                carried,
            )
            # Each step is queued for the journal the moment it is final (a bare deque
            # append), so a killed run keeps it.
            ctx.on_final = journal_log.finished
        if round_ is not None:
            ctx.started = round_.started
            ctx.values.update(round_.values)
            ctx.wants = round_.wants
            ctx.finished_steps = round_.finished_steps
        warnings: list[str] = []
        if (
            any(self.registry[step.tool].uses_model for step in plan.steps)
            and "models" not in self.services
        ):
            gateway = self._gateway(checked, warnings)
            ctx.services = {**self.services, "models": gateway}
            ctx.select_model = lambda step, spec, attempt: gateway.select(step, attempt).model
        schedule = self._schedule(checked, order, carried)
        ctx.observe = self._observer(checked, order, schedule)
        runner = StepRunner(ctx, order)
        for node in schedule.initially_skipped:
            runner.skipped(node, "a step it needs failed before the replan")
        driver = Driver(schedule, runner, should_stop=lambda: ctx.stop_reason is not None)
        if events.active and (round_ is None or round_.first):
            events.emit(RunStarted(run_id, 0.0, plan.name, tuple(order)))
        wall_start = round_.started if round_ else time.perf_counter()
        status = "succeeded"
        cancelled = False
        try:
            await driver.run()
        except asyncio.CancelledError:
            cancelled = True
            status = "cancelled"
        finally:
            if journal is not None and journal_log is not None:
                journal.detach(journal_log)  # no step of this round can finish now
        wall = time.perf_counter() - wall_start
        for name in checked.fallbacks:
            record = records[name]
            if record.status == "pending":
                record.status = "skipped"
                record.error = "fallback not needed"
        if not cancelled:
            on_error = {step.id: step.on_error for step in plan.steps}
            failed = [
                name
                for name, record in records.items()
                if record.status == "failed" and on_error[name] != "skip"
            ]
            unfinished = [
                name for name, record in records.items() if record.status in ("pending", "running")
            ]
            if ctx.stop_reason == "budget_exceeded":
                status = "budget_exceeded"
            elif ctx.stop_reason == "replan":
                status = "replanning"
            elif ctx.stop_reason == "awaiting_approval":
                status = "awaiting_approval"
            elif failed or unfinished or ctx.stop_reason == "journal":
                status = "failed"
        outputs = {
            name: ctx.values.get(name, inputs.get(name))
            for name in checked.outputs
            if name in ctx.values or name in inputs
        }
        result = RunResult(
            run_id=run_id,
            plan=plan.name,
            status=status,
            outputs=outputs,
            steps=records,
            cost_usd=sum(r.cost_usd for r in records.values()),
            wall_s=wall,
            critical_path_s=observed_critical_path(checked.deps, records),
            warnings=warnings,
            error=journal_errors[0] if journal_errors else None,
        )
        if round_ is not None:
            round_.trigger = ctx.trigger
            round_.values = ctx.values
            round_.finished_steps = ctx.finished_steps
        gateway_ledger = getattr(ctx.services.get("models"), "ledger", None)
        if gateway_ledger is not None:
            gateway_ledger.flush()  # the run's calls are durable when it returns
        if round_ is not None:
            round_.events = events
        if status == "replanning" or (round_ is not None and round_.deferred and not cancelled):
            return result
        self._finish(result, events, ctx.now(), result_holder)
        if cancelled:
            raise asyncio.CancelledError
        return result

"""The embedding API: `Engine` runs checked plans; `load_plan` loads and checks them.

    from engine import Engine, load_plan
    plan = load_plan("examples/unit_economics.plan")
    result = await Engine(max_parallel=8).run(plan, inputs={"monthly_churn": 0.02})

An Engine holds configuration and a thread pool; each run's state lives in its own
`RunSession` (engine/run/session.py): one engine can run many plans, concurrently. This
module is the wiring: the one place that knows the concrete journal, audit log, tracer,
model gateway and replanner, and plugs them into runs as hooks and Protocols. (A little
over 400 lines: the front door and that wiring stay together, so one file shows
everything a run gets plugged into.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dsl.agent_steps import Executor
from dsl.checker import CheckedPlan
from dsl.errors import Diagnostic, InputError, Location, did_you_mean
from dsl.ir import Plan
from dsl.loader import PlanSource, load_and_check
from dsl.types import build_record_models, type_adapter
from engine.agent.loop import AGENT_LOOP
from engine.agent.planner import Usage
from engine.agent.replan import POLICIES, LLMPolicy, PolicyRounds, Replanner, ReplanPolicy
from engine.config import Config
from engine.errors import RunSetupError, StoreError
from engine.models.gateway import Gateway
from engine.models.ledger import BudgetGuard, Ledger, usd_problem
from engine.models.local_model import LOCAL_MODEL
from engine.models.selection import ModelSelector, TierSelector
from engine.observe.audit import AuditHook, secrets_from
from engine.observe.tracing import TraceHook, tracer_from_environment
from engine.run.backend import LOCAL, Backend
from engine.run.events import Event
from engine.run.executor import RetryPolicy
from engine.run.hooks import Approver
from engine.run.latency import LatencyModel
from engine.run.result import RunResult
from engine.run.session import RunSession, RunSetup
from engine.store.home import data_home
from engine.store.journal import Journal
from engine.store.journal_hook import JournalHook
from engine.store.step_cache import StepCache
from stdlib_tools.registry import ToolRegistry, ToolSpec, make_tool

__all__ = ["Engine", "InputError", "build_registry", "load_plan", "resolve_inputs"]


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
    tool_map: Mapping[str, str] | None = None,
    executor: Executor = "llm",
) -> CheckedPlan:
    """Load a plan from a `.plan`/`.json` path, text, a JSON value or IR, and check it;
    `tool_map` renames tools a JSON plan names (`{"web_search": "search"}`); with
    `executor="agent"` a JSON step naming no registered tool is an agent step."""
    return load_and_check(
        source, build_registry(tools), tiers=tuple(tiers), tool_map=tool_map, executor=executor
    )


def resolve_inputs(checked: CheckedPlan, provided: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults plus provided values, validated against the declared input types."""
    provided = dict(provided or {})
    plan = checked.plan
    declared = {decl.name: decl for decl in plan.inputs}
    smap = checked.source_map
    # Each problem points at its input's declaration; an undeclared name at the flag.
    problems: list[Diagnostic] = []
    for name in provided:
        if name not in declared:
            hint = did_you_mean(name, declared)
            problems.append(
                Diagnostic(f"unknown input `{name}`", Location("--input"), hint=hint, subject=name)
            )
    models = build_record_models({r.name: dict(r.fields) for r in plan.types})
    values: dict[str, Any] = {}
    for index, (name, decl) in enumerate(declared.items()):
        input_type = checked.input_types[name]
        where = smap.locate(("inputs", index)) if smap is not None else Location("--input")
        if name in provided:
            value = provided[name]
        elif decl.default is not None:
            value = decl.default
        elif input_type.optional:
            value = None
        else:
            problems.append(
                Diagnostic(
                    f"input `{name}` ({input_type}) is required",
                    where,
                    hint=f"pass --input {name}=...",
                    code="missing-input",
                    subject=name,
                )
            )
            continue
        try:
            values[name] = type_adapter(input_type, models).validate_python(value)
        except (ValidationError, ValueError) as err:
            # pydantic raises a bare ValueError for integers over 4,300 digits.
            detail = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
            problems.append(
                Diagnostic(
                    f"input `{name}` must be `{input_type}`: {detail} (got {_short(value)})",
                    where,
                    subject=name,
                )
            )
    if problems:
        raise InputError(problems, checked.source)
    return {name: _plain(value) for name, value in values.items()}


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="python") if callable(dump) else value


def _short(value: Any) -> str:
    """A value for an error message, cut short; safe for huge ints and deep nesting."""
    try:
        return f"{value!r:.60}"
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} too large to show"


class Engine:
    """Runs plans: the front door. Holds configuration and a thread pool; each run's state
    lives in its own `RunSession` (engine/run/session.py). Reusable and safe to share.

    Journal, audit log, tracing, display and approvals attach through `hooks`
    (engine/run/hooks.py); `journal=`, `audit=`, `tracer=` and `approver=` are shorthands
    for the built-in ones, turned into hooks at each run (so they may be set later too).
    """

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
        hooks: Iterable[Any] = (),
        journal: Journal | None = None,
        audit: bool | Path = False,
        step_cache: StepCache | None = None,
        cache_all: bool = False,
        approver: Callable[[str, str, dict[str, Any]], Any] | None = None,
        approve_all: bool = False,
        tracer: Any = None,
        backend: Backend | None = None,
    ):
        if max_parallel < 1:
            raise RunSetupError("max_parallel must be at least 1")
        if budget_usd is not None and (problem := usd_problem(budget_usd)) is not None:
            raise RunSetupError(f"budget_usd {problem}")
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
        self.hooks = list(hooks)
        self.journal = journal
        self.audit = audit
        self.step_cache = step_cache
        self.cache_all = cache_all
        self.approver = approver
        self.approve_all = approve_all
        # An OpenTelemetry tracer (the `tracing` extra); None = no tracing, no cost.
        self.tracer = tracer if tracer is not None else tracer_from_environment()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Where steps execute: this process (default) or a cluster (engine/backends/);
        # closed with the engine.
        self.backend: Backend = backend or LOCAL

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
        self.backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plans ------------------------------------------------------------------------
    def check(self, plan: PlanSource | CheckedPlan) -> CheckedPlan:
        if isinstance(plan, CheckedPlan):
            return plan
        return load_and_check(
            plan,
            self.registry,
            tiers=tuple(self.tiers),
            tool_map=self.config.tools.map,
            executor=self.config.executor,
        )

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
        hooks: Iterable[Any] = (),
    ) -> RunResult:
        """Run a plan to the end and return its result (a failed step is not an exception).

        `replan` is a policy (or a built-in's name: never, on-failure, after-each-step,
        every-n, on-surprise) asked at the points it wants; revisions are capped at
        `max_replans` and recorded in the result's `replans`. `result_holder` receives
        the result even when the run is cancelled (Ctrl-C), so a caller can report what
        finished before re-raising. `hooks`: extra hooks for this run only;
        `audit_preamble`: lines the audit log writes before the plan (planning).
        """
        checked = self.check(plan)
        values = resolve_inputs(checked, inputs)
        policy = self.replan_policy(replan, checked)
        rounds = None
        if policy is not None:
            rounds = PolicyRounds(
                policy,
                goal or checked.plan.goal or checked.plan.name,
                lambda revised: load_and_check(
                    revised, self.registry, tiers=tuple(self.tier_map(revised.tiers))
                ),
            )
        self._open_stores(checked)
        setup = self._setup(audit_preamble or (), hooks)
        session = RunSession(setup, checked, values, on_event=on_event)
        return await session.run(rounds, max_replans=max_replans, result_holder=result_holder)

    async def resume(
        self,
        run_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        result_holder: list[RunResult] | None = None,
        hooks: Iterable[Any] = (),
    ) -> RunResult:
        """Continue a journaled run: finished steps are not run again, nor paid for again.

        Steps that were running when the run stopped (killed, cancelled, out of budget)
        run again: at-least-once for those, exactly-once for finished ones.
        """
        journal = self.journal or next(
            (h.journal for h in self.hooks if isinstance(h, JournalHook)), None
        )
        if journal is None:
            raise RunSetupError("resume needs a journal: Engine(journal=Journal())")
        row = journal.run(run_id)
        # Own the run before reading what finished: a second `resume` stops here.
        note = journal.acquire(row.run_id)
        try:
            if note is not None and self.on_warning is not None:
                self.on_warning(f"warning: {note}")
            plan = Plan.model_validate_json(row.plan_json)
            checked = self.check(plan)
            inputs = resolve_inputs(checked, row.inputs)
            self._open_stores(checked)
            finished = {
                name: record for name, record in journal.steps(row.run_id).items() if record.is_done
            }
            values = {name: record.output for name, record in finished.items()}
            # The run budget is the run's, across resumes: what it spent already counts.
            spent = self.ledger.spent_by_run(row.run_id) if self.ledger is not None else 0.0
            setup = self._setup((), hooks, spent)
            # An agent step killed mid-loop replays its finished calls, not running them again.
            setup.agent_replay = journal.agent_replay(row.run_id)
            session = RunSession(
                setup,
                checked,
                inputs,
                run_id=row.run_id,
                on_event=on_event,
                carried=finished,
                values=values,
            )
            return await session.run(result_holder=result_holder)
        finally:
            # If the run's end has not given it back already (it stopped before starting).
            with contextlib.suppress(StoreError):
                journal.release(row.run_id)

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
            raise RunSetupError(
                f"unknown replan policy `{replan}` (policies: {', '.join(POLICIES)}, every-N)"
            )
        gateway = self.model_gateway(checked.plan.tiers)
        tiers = self.tier_map(checked.plan.tiers)
        model = gateway.usable(tiers.get("planner") or tiers.get("frontier") or LOCAL_MODEL)
        replanner = Replanner(gateway, model, self.registry, Usage(model=model))
        return LLMPolicy(name, replanner, every)

    # --- wiring: the concrete classes a run plugs in ------------------------------------
    def _open_stores(self, checked: CheckedPlan) -> None:
        """Open and check the stores a run writes before it starts (so before it spends):
        a broken journal or ledger is a clear error now; a broken cache is rebuilt."""
        if self.journal is not None:
            self.journal.open()
        if isinstance(self.step_cache, StepCache):  # a user's own cache opens itself
            if self.step_cache.on_warning is None:
                self.step_cache.on_warning = self.on_warning
            self.step_cache.open()
        used = {step.tool for step in checked.plan.steps}  # each tool once, not each step
        if any(self.registry[tool].uses_model for tool in used):
            if self.ledger is None:
                self.ledger = Ledger()  # one per engine: planning and runs share it
            self.ledger.open()

    def _setup(
        self,
        audit_preamble: Iterable[tuple[str, str, dict[str, Any]]],
        extra: Iterable[Any],
        spent_before: float = 0.0,
    ) -> RunSetup:
        """One run's configuration: resolved settings, the gateway factory, the hooks.
        `spent_before`: what a resumed run spent already (its run budget counts it)."""
        settings = dict(self.settings)
        settings.setdefault("cache_dir", str(data_home() / "cache"))
        if settings.get("workspace"):
            settings["workspace_path"] = Path(settings["workspace"])
        return RunSetup(
            tools=self.registry,
            pool=self.pool,
            backend=self.backend,
            latency=self.latency,
            settings=settings,
            services={"agent": AGENT_LOOP, **self.services},
            retry=self.retry,
            limits=self.limits,
            max_parallel=self.max_parallel,
            hooks=self._hooks(audit_preamble, extra),
            step_cache=self.step_cache,
            cache_all=self.cache_all,
            approve_all=self.approve_all,
            models=self._models(spent_before),
            on_warning=self.on_warning,
        )

    def _hooks(
        self, audit_preamble: Iterable[tuple[str, str, dict[str, Any]]], extra: Iterable[Any]
    ) -> list[Any]:
        """The shorthands as hooks, around the engine's own and the run's: the journal
        first (a recorded approval decides before the approver is asked)."""
        hooks: list[Any] = []
        if self.journal is not None:
            hooks.append(JournalHook(self.journal))
        if self.audit:
            path = self.audit if isinstance(self.audit, Path) else None
            hooks.append(AuditHook(path, secrets_from(self.config), audit_preamble))
        if self.tracer is not None:
            hooks.append(TraceHook(self.tracer))
        hooks.extend(self.hooks)
        if self.approver is not None:
            hooks.append(Approver(self.approver))
        hooks.extend(extra)
        return hooks

    def model_gateway(
        self, plan_tiers: Mapping[str, str] | None = None, warnings: list[str] | None = None
    ) -> Gateway:
        """A model gateway outside a run (the planner uses one)."""
        return self._gateway_for(dict(plan_tiers or {}), warnings if warnings is not None else [])

    def tier_map(self, plan_tiers: Mapping[str, str] | None = None) -> dict[str, str]:
        """Tiers by precedence, lowest first: the plan's, the config's, the engine's (--tier)."""
        return {**(plan_tiers or {}), **self.config.tiers, **self.tiers}

    def _models(self, spent_before: float) -> Callable[[CheckedPlan, list[str]], Gateway]:
        """One run's gateway factory (called per replanning round). Its rounds share one
        budget guard: the run budget is the run's, not each round's."""
        guards: list[BudgetGuard] = []

        def models(checked: CheckedPlan, warnings: list[str]) -> Gateway:
            gateway = self._gateway_for(checked.plan.tiers, warnings, guards[0] if guards else None)
            if not guards:
                gateway.budget.spent = spent_before
                guards.append(gateway.budget)
            return gateway

        return models

    def _gateway_for(
        self,
        plan_tiers: Mapping[str, str],
        warnings: list[str],
        guard: BudgetGuard | None = None,
    ) -> Gateway:
        """The model gateway for one run: tiers, budget guard, ledger, warnings."""
        tiers = self.tier_map(plan_tiers)
        if self.ledger is None:
            self.ledger = Ledger()  # one per engine: planning and runs share it
        ledger = self.ledger
        ledger.open()  # a broken ledger is an error before the first call
        run_budget = self.budget_usd if self.budget_usd is not None else self.config.budget.run_usd
        if guard is None:
            guard = BudgetGuard(ledger, run_budget, self.config.budget.daily_usd)

        def warn(message: str) -> None:
            warnings.append(message)
            if self.on_warning is not None:
                self.on_warning(message)

        selector = self.selector or TierSelector(tiers, default_tier=self.config.default_tier)
        gateway = Gateway(
            self.config,
            tiers,
            selector=selector,
            budget=guard,
            ledger=ledger,
            warn=warn,
            fallback_to_local=self.config.fallback_to_local,
        )
        # On a cluster, the raw provider call runs on a worker; pricing, budgets, rate
        # limits and the ledger stay here.
        gateway.provider_call = self.backend.model_caller(tiers)
        return gateway

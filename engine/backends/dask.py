"""The Dask backend: a run's tool calls and raw model calls execute on a Dask cluster.

    planfile run plan.plan --cluster tcp://10.0.0.5:8786     # or [cluster] address

The coordinator (the `planfile` process) keeps the scheduler of steps, the journal,
budgets, rate limits and the ledger; this backend only ships calls to an existing
cluster through a `distributed.Client` and brings their results (or exceptions) back:

- A tool call runs on a worker: async tools on its event loop, sync tools in its
  threads (start I/O-bound workers with many threads: `dask worker ADDR --nthreads 64`).
  A tool that asks for a `ToolContext` gets a copy without the coordinator's services
  (the gateway, the run). Tools that call models (the LLM tools, the agent tool) and
  `inline` tools (pure, microseconds: a round trip costs a thousand times more) run in
  the coordinator; their model calls go to the workers (`model_caller`).
- User tools (`--tools FILE.py`) reach every worker, now and later joiners, by a worker
  plugin (engine/backends/worker.py); workers need planfile installed, nothing else.
  Loading starts when a run starts; the first call of one of the file's tools awaits it
  (within `[cluster] connect_timeout_s`), so the event loop never blocks on it.
- Placement: `[cluster.resources]` (engine/backends/placement.py).
- Faults: a worker lost mid-call is Dask's to handle (it reschedules the call on
  another worker); after `distributed.scheduler.allowed-failures` losses the call fails
  with `WorkerLost`, which the step's retry policy may retry. The scheduler unreachable
  at start is a `ClusterUnavailable` (exit 2, the address and the fix); lost mid-run,
  the call fails with `ClusterLost` and the run stops (`failed`, resumable with
  `planfile resume RUN`). The address is checked, and the service there asked who it
  is, before the client connects (engine/backends/connect.py). No worker for
  `no_workers_warn_s` while a call waits: one warning per outage (`on_warning`), and
  the call waits on. Every wait has a deadline: the connection's, and each call's
  (its step's timeout, else `[cluster] task_timeout_s`).

Over 400 lines: connecting, shipping calls, and mapping Dask's failures to planfile's
faults are one backend; the probe, placement and worker side live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

from dsl.errors import ToolError
from engine.backends.placement import Placement, Resources
from engine.errors import RunError, RunSetupError
from engine.faults import TransientError
from engine.run.backend import ModelCaller, ToolCaller, call_local
from engine.run.result import StopReason
from stdlib_tools.registry import ToolContext, ToolSpec

if TYPE_CHECKING:
    from engine.config import ClusterSettings
    from engine.run.executor import RunContext

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_TASK_TIMEOUT_S = 3600.0
# A call waiting while the scheduler has had no worker this long gets one warning (it
# keeps waiting, under its deadline: workers may join).
DEFAULT_NO_WORKERS_WARN_S = 30.0
# How often a waiting call looks at the client's cached worker count (no round trip).
_WORKERS_POLL_S = 0.5
# The registry loads `--tools FILE.py` as modules named so (stdlib_tools/registry.py):
# workers cannot import them, the worker plugin loads them there.
USER_TOOLS_PREFIX = "planfile_user_tools_"
# Closing the client must not hang the end of a run on a scheduler that went away.
CLOSE_TIMEOUT_S = 5.0
_HINT = (
    "start the cluster (`dask scheduler`, then `dask worker ADDRESS` on each machine) "
    "or fix the address (--cluster ADDRESS, or `[cluster] address` in planfile.toml)"
)


class ClusterUnavailable(RunSetupError):
    """The Dask scheduler could not be reached, or has no workers (before any step)."""


class ClusterLost(RunError):
    """The connection to the scheduler was lost mid-run: the run stops, resumable."""

    plain_message = True  # a step's error shows the message alone (engine.run.executor)


class WorkerLost(TransientError):
    """Workers died running this call as many times as Dask allows (KilledWorker)."""

    plain_message = True  # a step's error shows the message alone (engine.run.executor)


class DaskBackend:
    """Executes tool calls and raw model calls on a Dask cluster (module docstring)."""

    name = "dask"

    def __init__(
        self,
        address: str,
        *,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        task_timeout_s: float = DEFAULT_TASK_TIMEOUT_S,
        resources: Mapping[str, Mapping[str, float]] | None = None,
        no_workers_warn_s: float = DEFAULT_NO_WORKERS_WARN_S,
    ) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ClusterUnavailable(
                "running on a cluster needs Dask's `distributed`",
                hint="install the cluster extra: pip install 'planfile[cluster]'",
            ) from None
        self.address = address
        self.task_timeout_s = task_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.placement = Placement(resources)
        self._shipped: dict[str, str] = {}  # user tools module -> its worker plugin's name
        self._loading: dict[str, Future[Any]] = {}  # user tools module -> its loading
        self._refs: dict[str, Any] = {}  # tool name -> what workers resolve it from
        self._warned_no_workers = False
        self.no_workers_warn_s = no_workers_warn_s
        # Where "no workers" goes (the CLI sets its warning printer); None: logged.
        self.on_warning: Callable[[str], None] | None = None
        from engine.backends.connect import checked_address, probe_scheduler

        probe_scheduler(address, connect_timeout_s, checked_address(address))
        try:
            self.client = Client(
                address, timeout=connect_timeout_s, set_as_default=False, name="planfile"
            )
        except Exception as err:  # the probe passed: the scheduler went away since
            raise ClusterUnavailable(
                f"cannot reach the Dask scheduler at {address} within {connect_timeout_s:g} s: "
                f"{_first_line(err)}",
                hint=_HINT,
            ) from None
        try:
            self.client.wait_for_workers(1, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as err:
            self.close()
            raise ClusterUnavailable(
                f"the Dask scheduler at {address} has no workers "
                f"(none joined within {connect_timeout_s:g} s): {_first_line(err)}",
                hint=f"start workers: dask worker {address}",
            ) from None

    @classmethod
    def from_settings(cls, settings: ClusterSettings, address: str | None = None) -> DaskBackend:
        """The backend `[cluster]` in planfile.toml describes (`address` overrides it)."""
        target = address or settings.address
        if not target:
            raise ClusterUnavailable(
                "no cluster address", hint="give --cluster ADDRESS or `[cluster] address`"
            )
        return cls(
            target,
            connect_timeout_s=settings.connect_timeout_s,
            task_timeout_s=settings.task_timeout_s,
            resources=settings.resources,
            no_workers_warn_s=settings.no_workers_warn_s,
        )

    # --- Backend ------------------------------------------------------------------------
    def tool_caller(self, ctx: RunContext) -> ToolCaller:
        loading = self._ship_user_tools(ctx, {step.tool for step in ctx.checked.plan.steps})
        return _RunCalls(self, ctx, loading).call

    def model_caller(self, tiers: Mapping[str, str]) -> ModelCaller | None:
        from engine.models.local_model import LOCAL_MODEL

        return functools.partial(self._complete, self.placement.for_models(tiers, LOCAL_MODEL))

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is None:
            return
        self.client = None  # type: ignore[assignment]
        # The scheduler may be gone: then there is nothing left to undo or close.
        with contextlib.suppress(Exception):
            if client.status == "running":
                for plugin in self._shipped.values():
                    client.unregister_worker_plugin(plugin)
        with contextlib.suppress(Exception):
            client.close(timeout=CLOSE_TIMEOUT_S)

    # --- calls --------------------------------------------------------------------------
    async def execute(
        self,
        fn: Any,
        args: tuple[Any, ...],
        key: str,
        resources: Resources | None,
        deadline_s: float,
    ) -> Any:
        """One call on the cluster, its result or the exception the step sees, within
        `deadline_s` (the call is cancelled on the cluster when we stop waiting).

        Submitting and fetching the result run on the client's own event loop (its
        thread), concurrently for every call in flight; this loop only awaits them.
        """
        client = self.client
        if client is None or client.status not in ("running", "newly-created"):
            raise self.lost()
        call = asyncio.run_coroutine_threadsafe(
            self._on_client_loop(client, fn, args, f"{key}-{uuid.uuid4().hex[:16]}", resources),
            cast(Any, client.loop).asyncio_loop,
        )
        try:
            async with asyncio.timeout(deadline_s):
                return await self._watched(client, asyncio.wrap_future(call))
        except BaseException as err:
            raise self._located(err) from None

    async def _watched(self, client: Any, waiting: asyncio.Future[Any]) -> Any:
        """`waiting`'s result; meanwhile, warn once per outage if the scheduler has had
        no worker for `no_workers_warn_s` (the call would wait silently to its deadline)."""
        since: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=_WORKERS_POLL_S)
                if done:
                    return waiting.result()
                if _worker_count(client) > 0:
                    since = None
                    self._warned_no_workers = False  # workers back: warn at the next outage
                    continue
                if self._warned_no_workers:
                    continue
                since = loop.time() if since is None else since
                if loop.time() - since >= self.no_workers_warn_s:
                    self._warned_no_workers = True
                    self._warn(
                        f"warning: cluster: the Dask scheduler at {self.address} has had no "
                        f"workers for {self.no_workers_warn_s:g} s; calls wait for one "
                        f"(each within its deadline): start workers: dask worker {self.address}"
                    )
        finally:
            waiting.cancel()

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            logging.getLogger(__name__).warning("%s", message)

    @staticmethod
    async def _on_client_loop(
        client: Any, fn: Any, args: tuple[Any, ...], key: str, resources: Resources | None
    ) -> Any:
        future = client.submit(fn, *args, key=key, pure=False, resources=resources)
        try:
            return await client.gather(future, asynchronous=True)
        except asyncio.CancelledError:
            # The step stopped waiting (its timeout, Ctrl-C): free the worker's slot.
            await client.cancel(future, asynchronous=True)
            raise

    def _located(self, err: BaseException) -> BaseException:
        """The exception a step sees for a failed call."""
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError
        from distributed.comm.core import CommClosedError

        from engine.backends.worker import RemoteFault

        if isinstance(err, RemoteFault):
            return err.rebuild()
        if isinstance(err, KilledWorker):
            return WorkerLost(
                f"the workers running it died; Dask gave up: {_first_line(err)}",
                hint="a call that kills its worker (memory, a crash) fails after "
                "distributed.scheduler.allowed-failures losses; give workers more memory",
            )
        if isinstance(err, FutureCancelledError):
            return self.lost(str(getattr(err, "reason", None) or "the call was cancelled"))
        # A closed comm while waiting on a call is the scheduler going away, even when the
        # client has not noticed yet (its status still says running): stopping the run,
        # resumable, loses nothing; calling it the step's failure would (a batch row
        # would be written as failed instead of queued).
        if isinstance(err, CommClosedError) or (
            isinstance(err, OSError | RuntimeError)
            and (self.client is None or self.client.status not in ("running", "newly-created"))
        ):
            return self.lost(_first_line(err))
        return err

    def lost(self, why: str = "the connection was lost") -> ClusterLost:
        return ClusterLost(
            f"cluster: lost the Dask scheduler at {self.address} ({why}); the run stopped",
            hint="start the scheduler again, then `planfile resume RUN` continues the run",
        )

    async def _complete(self, placed: dict[str, Resources], kwargs: dict[str, Any]) -> Any:
        """The gateway's raw provider call, on a worker (pricing and the ledger stay here)."""
        from engine.backends.worker import run_completion

        model = str(kwargs.get("model"))
        # The gateway bounds the call with its own deadline too (`_within`).
        deadline = float(kwargs.get("timeout") or self.task_timeout_s)
        return await self.execute(
            run_completion, (kwargs,), "planfile-model", placed.get(model), deadline
        )

    def ref(self, spec: ToolSpec) -> Any:
        """What a worker resolves `spec`'s function from: (module, name) when the module
        holds it under its name (stdlib, `--tools` files, importable modules), else the
        function itself (pickled by value: lambdas, closures, `__main__`)."""
        ref = self._refs.get(spec.name)
        if ref is None:
            fn = spec.fn
            module = sys.modules.get(fn.__module__)
            value = getattr(module, fn.__name__, None) if module is not None else None
            if fn.__module__ != "__main__" and (value is spec or getattr(value, "fn", value) is fn):
                ref = (fn.__module__, fn.__name__)
            else:
                ref = fn
            self._refs[spec.name] = ref
        return ref

    def _ship_user_tools(self, ctx: RunContext, used: set[str]) -> dict[str, Future[Any]]:
        """Start loading the `--tools` files the plan's tools come from on every worker
        (once per file): module name -> the loading, which a call of one of its tools
        awaits (`_RunCalls.loaded`) so that this does not hold up the event loop."""
        from engine.backends.worker import UserTools

        loading: dict[str, Future[Any]] = {}
        for name in used:
            spec = ctx.tools.get(name)
            module_name = spec.fn.__module__ if spec is not None else ""
            if not module_name.startswith(USER_TOOLS_PREFIX) or module_name in loading:
                continue
            done = self._loading.get(module_name)
            if done is not None and not (done.done() and done.exception() is not None):
                loading[module_name] = done  # loaded, or loading, for an earlier run
                continue
            module = sys.modules[module_name]
            path = str(getattr(module, "__file__", "") or "")
            try:
                with open(path, encoding="utf-8") as file:
                    source = file.read()
            except (OSError, UnicodeDecodeError) as err:
                why = err.strerror if isinstance(err, OSError) else str(err)
                raise RunSetupError(
                    f"--tools {path}: cannot read it to load it on the workers: {why}",
                    hint="the file must stay in place while a run uses its tools",
                ) from None
            plugin = UserTools(module_name, path, source)
            if self.client is None or self.client.status != "running":
                raise self.lost()
            # In the engine's pool: the client's call blocks, and has no timeout.
            done = ctx.pool.submit(self.client.register_plugin, plugin, name=plugin.name)
            self._loading[module_name] = loading[module_name] = done
            self._shipped[module_name] = plugin.name
        return loading


class _RunCalls:
    """One run's tool calls on the cluster: its `ToolCaller`."""

    __slots__ = ("backend", "ctx", "loading")

    def __init__(
        self, backend: DaskBackend, ctx: RunContext, loading: dict[str, Future[Any]]
    ) -> None:
        self.backend = backend
        self.ctx = ctx
        self.loading = loading  # `--tools` files still loading on the workers

    async def loaded(self, spec: ToolSpec) -> None:
        """Wait (within the connect timeout) until `spec`'s `--tools` file is loaded on
        the workers, if it comes from one."""
        module_name = spec.fn.__module__
        done = self.loading.get(module_name)
        if done is None:
            return
        backend = self.backend
        limit = backend.connect_timeout_s
        path = getattr(sys.modules.get(module_name), "__file__", None) or module_name
        try:
            async with asyncio.timeout(limit):
                await asyncio.wrap_future(done)
        except TimeoutError:
            raise backend.lost(f"loading {path} on the workers took over {limit:g} s") from None
        except Exception as err:  # e.g. the file imports what the workers lack
            raise ToolError(
                f"tool `{spec.name}`: loading {path} on the workers failed: {_first_line(err)}"
            ) from None
        self.loading.pop(module_name, None)

    async def call(self, spec: ToolSpec, kwargs: dict[str, Any], timeout_s: float | None) -> Any:
        ctx = self.ctx
        try:
            if spec.uses_model or (spec.inline and not spec.is_async):
                return await call_local(ctx.pool, spec, kwargs, timeout_s)
            from engine.backends.worker import run_async_tool, run_sync_tool

            if spec.context_param is not None:
                kwargs = {**kwargs, spec.context_param: _portable(kwargs[spec.context_param])}
            if self.loading:
                await self.loaded(spec)
            backend = self.backend
            try:
                return await backend.execute(
                    run_async_tool if spec.is_async else run_sync_tool,
                    (spec.name, backend.ref(spec), kwargs),
                    f"planfile-{spec.name}",
                    backend.placement.tool(spec.name),
                    timeout_s or backend.task_timeout_s,
                )
            except TimeoutError:
                if timeout_s is None:
                    raise TimeoutError(
                        f"no result from the cluster within {backend.task_timeout_s:g} s "
                        "([cluster] task_timeout_s)"
                    ) from None
                raise
        except ClusterLost as err:
            # Stop starting steps; what finished is journaled, `resume` does the rest.
            if ctx.stop_reason is None:
                ctx.stop_reason = StopReason.CLUSTER
            raise ClusterLost(
                f"{err}: with the cluster back, `planfile resume {ctx.run_id}` continues it"
            ) from None


def _portable(context: ToolContext) -> ToolContext:
    """A tool's context for a worker: the run's facts, none of its live services."""
    return ToolContext(
        run_id=context.run_id,
        step_id=context.step_id,
        attempt=context.attempt,
        workspace=context.workspace,
        settings=dict(context.settings),
        model=context.model,
    )


def quiet_distributed_logs() -> None:
    """Silence distributed's log lines on the terminal (the `planfile` command): a lost
    scheduler is reported once, on the step, with the fix; distributed would add its
    reconnect attempts and tracebacks of the cancelled calls."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name == "distributed" or name.startswith("distributed."):
            for handler in getattr(logger, "handlers", ()):
                handler.setLevel(logging.CRITICAL)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _worker_count(client: Any) -> int:
    """The scheduler's workers as the client last heard (it refreshes them every
    `distributed.client.scheduler-info-interval`): no round trip per look."""
    identity = getattr(client, "_scheduler_identity", None) or {}
    return len(identity.get("workers") or {})

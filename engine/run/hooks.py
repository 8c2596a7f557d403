"""One interface for what watches or gates a run: journal, audit log, tracing, display, approvals.

A hook is any object with some of `RunHook`'s methods (subclassing it is optional).
`Engine(hooks=[...])` takes them. Each run asks every hook to `open(run)` its listener
for that run: the hook itself by default, or a per-run object when the hook keeps
per-run state (an audit file, a journal log), so one Engine can run plans concurrently.

The run calls only the listeners that implement a method: `Hooks` sorts them once per
run into one list per method, so a method nobody implements costs nothing per step
(`step_final`, the only per-step method besides events, is then not called at all).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from engine.run.events import Event

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan
    from engine.run.result import RunResult, StepRecord


class RunView(Protocol):
    """What a hook sees of a run (the per-run object implements it)."""

    @property
    def run_id(self) -> str: ...

    @property
    def checked(self) -> CheckedPlan: ...

    @property
    def inputs(self) -> Mapping[str, Any]: ...

    @property
    def records(self) -> Mapping[str, StepRecord]:
        """The current round's records."""

    def stop(self, reason: str, message: str) -> None:
        """Stop the run: start nothing new; `message` becomes the result's error."""

    def warn(self, message: str) -> None:
        """Tell the user (the engine's `on_warning`)."""


class RunHook:
    """Base class of hooks: every method does nothing; override the ones you need.

    Order of calls for one run: `open`, `run_started`, then per round (a replanned run
    has several; others one) `round_started`, `step_final`/`event` as steps finish,
    `round_ended`, `replanned` after a replan decision; at the end `run_finished`, the
    last event (RunFinished), then `close`, which is called even when the run crashed
    or was cancelled.
    """

    def open(self, run: RunView) -> Any:
        """The listener for this run (default: this hook); None to sit the run out."""
        return self

    def run_started(self, run: RunView) -> None:
        """Before the first round."""

    def round_started(self, run: RunView, carried: Mapping[str, StepRecord]) -> None:
        """A round starts; `carried`: records finished in earlier rounds (or a resumed run)."""

    def step_final(self, step_id: str) -> None:
        """`run.records[step_id]` reached a final state (hot path: keep it cheap)."""

    def event(self, event: Event) -> None:
        """Every run event, as the executor emits it."""

    def agent_call(self, step_id: str, call: dict[str, Any]) -> None:
        """An agent step's inner model or tool call finished (the call dict of
        engine/agent/loop.py); the journal keeps it for `resume`."""

    def round_ended(self, run: RunView) -> None:
        """No step of the round can finish any more."""

    def replanned(self, run: RunView, decision: Mapping[str, Any]) -> None:
        """The replan policy decided (trigger, step, error, action, reason, added)."""

    def approval(
        self, run: RunView, step_id: str, arguments: dict[str, Any]
    ) -> bool | Awaitable[bool | None] | None:
        """Approve (True) or reject (False) a gated step; None: not this hook's call."""
        return None

    def approval_decided(self, run: RunView, step_id: str, approved: bool) -> None:
        """Another listener decided a gated step (the journal records it)."""

    def run_finished(self, run: RunView, result: RunResult) -> None:
        """The run's result is final (before the RunFinished event)."""

    def close(self) -> None:
        """Release what the run held (flush files); called on every path out of a run."""


METHODS = (
    "run_started",
    "round_started",
    "step_final",
    "event",
    "agent_call",
    "round_ended",
    "replanned",
    "approval",
    "approval_decided",
    "run_finished",
    "close",
)


def implements(listener: Any, name: str) -> bool:
    """Whether `listener` has its own `name` (not RunHook's do-nothing one)."""
    if name in getattr(listener, "__dict__", ()):
        return callable(listener.__dict__[name])
    method = getattr(type(listener), name, None)
    return callable(method) and method is not getattr(RunHook, name)


class Hooks:
    """One run's listeners, sorted once into a list per method."""

    __slots__ = ("_by_method", "listeners")

    def __init__(self, listeners: Iterable[Any]):
        self.listeners = [listener for listener in listeners if listener is not None]
        self._by_method: dict[str, list[Any]] = {
            name: [lst for lst in self.listeners if implements(lst, name)] for name in METHODS
        }

    @classmethod
    def open(cls, hooks: Iterable[Any], run: RunView) -> Hooks:
        """Each hook's listener for `run`."""
        return cls(
            hook.open(run) if callable(getattr(hook, "open", None)) else hook for hook in hooks
        )

    def call(self, name: str, *args: Any) -> None:
        """Call `name` on every listener that implements it (lifecycle: errors propagate)."""
        for listener in self._by_method[name]:
            getattr(listener, name)(*args)

    def _callback(self, name: str) -> Callable[..., None] | None:
        """One callable for listeners' `name`: None when nobody listens, the one bound
        method when one does (no wrapper frame), else a fan-out to all of them."""
        calls = [getattr(listener, name) for listener in self._by_method[name]]
        if not calls:
            return None
        if len(calls) == 1:
            return calls[0]

        def fan_out(*args: Any) -> None:
            for call in calls:
                call(*args)

        return fan_out

    def step_final(self) -> Callable[[str], None] | None:
        """The per-step callback (read after `round_started`, which may rebind it)."""
        return self._callback("step_final")

    def agent_call(self) -> Callable[[str, dict[str, Any]], None] | None:
        """The run's `on_agent_call` (read after `round_started`, which may rebind it)."""
        return self._callback("agent_call")

    def event_listeners(self) -> list[Callable[[Event], None]]:
        return [listener.event for listener in self._by_method["event"]]

    def approver(self, run: RunView) -> Callable[[str, dict[str, Any]], Any] | None:
        """The run's approval callback: the first listener with an answer decides, the
        others hear it (so the journal records a decision made at the terminal)."""
        deciders = self._by_method["approval"]
        if not deciders:
            return None
        audience = self._by_method["approval_decided"]

        async def decide(step_id: str, arguments: dict[str, Any]) -> bool | None:
            for decider in deciders:
                answer = decider.approval(run, step_id, arguments)
                if inspect.isawaitable(answer):
                    answer = await answer
                if answer is None:
                    continue
                for listener in audience:
                    if listener is not decider:
                        listener.approval_decided(run, step_id, bool(answer))
                return bool(answer)
            return None

        return decide

    def close(self) -> None:
        """Close every listener, even when one fails (the first error is raised after)."""
        first: BaseException | None = None
        for listener in self._by_method["close"]:
            try:
                listener.close()
            except Exception as err:  # the others still get to flush their files
                first = first or err
        if first is not None:
            raise first


class Approver(RunHook):
    """A person's (or a policy's) decision on gated steps: `approver(run_id, step, args)`
    returns True, False, or None to ask later (a coroutine is awaited)."""

    def __init__(self, approver: Callable[[str, str, dict[str, Any]], Any]):
        self.approver = approver

    def approval(
        self, run: RunView, step_id: str, arguments: dict[str, Any]
    ) -> bool | Awaitable[bool | None] | None:
        answer: bool | Awaitable[bool | None] | None = self.approver(run.run_id, step_id, arguments)
        return answer


class EventCallback(RunHook):
    """A plain `on_event(event)` callable as a hook."""

    def __init__(self, callback: Callable[[Event], None]):
        self.event = callback  # type: ignore[method-assign, assignment]

    def close(self) -> None:
        """A listener that batches its output (`PlainLog`) writes it out as the run ends,
        even when it crashed before its last event."""
        flush = getattr(self.event, "flush", None)
        if callable(flush):
            flush()

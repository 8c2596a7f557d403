"""Run events: every state change of a run, on one stream.

The live display, the `--json` result, `Engine.stream()` and (later) the journal and
audit log all consume the same events. Emitting costs nothing when nobody listens.

Events are frozen: every listener sees the one object the executor made. The two that
every step makes (`StepStarted`, `StepSucceeded`: the CLI's audit log always listens)
store their fields through the slots directly, not through the frozen dataclass's
`object.__setattr__` per field, which cost ~0.5-1 µs more per event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all run events; `t` is seconds since the run began."""

    run_id: str
    t: float

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    plan: str
    steps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepStarted(Event):
    step: str
    attempt: int
    tool: str
    model: str | None = None


@dataclass(frozen=True, slots=True)
class StepRetrying(Event):
    step: str
    attempt: int
    error: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class StepSucceeded(Event):
    step: str
    output: Any
    duration_s: float
    attempts: int
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False  # served from the step cache, priced at 0


@dataclass(frozen=True, slots=True)
class StepFailed(Event):
    step: str
    error: str
    attempts: int
    tolerated: bool = False


@dataclass(frozen=True, slots=True)
class StepSkipped(Event):
    step: str
    reason: str


@dataclass(frozen=True, slots=True)
class StepCancelled(Event):
    step: str


@dataclass(frozen=True, slots=True)
class FanOutExpanded(Event):
    step: str
    items: int


@dataclass(frozen=True, slots=True)
class AgentModelCalled(Event):
    """An agent step's model call finished: its reply asked for `tool_calls` tools (none:
    the final answer). `replayed`: read back from the journal on resume, not made."""

    step: str
    iteration: int
    model: str
    tool_calls: tuple[str, ...]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class AgentToolCalled(Event):
    """An agent step's tool call finished, with its output or the error the model saw."""

    step: str
    iteration: int
    tool: str
    args: Any
    output: Any = None
    error: str | None = None
    duration_s: float = 0.0
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    cost_usd: float = 0.0


_Setter = Callable[[Any, Any], None]


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[_Setter, ...]:
    """The slot descriptors' setters of `cls` for `names`, which must be all its fields in
    order (a field added to the class and not to its `__init__` below fails here)."""
    declared = tuple(f.name for f in fields(cls))
    if declared != names:
        raise TypeError(f"{cls.__name__}.__init__ stores {names}, the class has {declared}")
    return tuple(getattr(cls, name).__set__ for name in names)  # the slots, inherited too


# Each setter a default argument of its own: a local read, not a tuple index per field.
_s0, _s1, _s2, _s3, _s4, _s5 = _slot_setters(
    StepStarted, ("run_id", "t", "step", "attempt", "tool", "model")
)


def _step_started_init(
    self: StepStarted,
    run_id: str,
    t: float,
    step: str,
    attempt: int,
    tool: str,
    model: str | None = None,
    *,
    _s0: _Setter = _s0,
    _s1: _Setter = _s1,
    _s2: _Setter = _s2,
    _s3: _Setter = _s3,
    _s4: _Setter = _s4,
    _s5: _Setter = _s5,
) -> None:
    _s0(self, run_id)
    _s1(self, t)
    _s2(self, step)
    _s3(self, attempt)
    _s4(self, tool)
    _s5(self, model)


_u0, _u1, _u2, _u3, _u4, _u5, _u6, _u7, _u8, _u9 = _slot_setters(
    StepSucceeded,
    (
        "run_id",
        "t",
        "step",
        "output",
        "duration_s",
        "attempts",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "cached",
    ),
)


def _step_succeeded_init(
    self: StepSucceeded,
    run_id: str,
    t: float,
    step: str,
    output: Any,
    duration_s: float,
    attempts: int,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: float = 0.0,
    cached: bool = False,
    *,
    _u0: _Setter = _u0,
    _u1: _Setter = _u1,
    _u2: _Setter = _u2,
    _u3: _Setter = _u3,
    _u4: _Setter = _u4,
    _u5: _Setter = _u5,
    _u6: _Setter = _u6,
    _u7: _Setter = _u7,
    _u8: _Setter = _u8,
    _u9: _Setter = _u9,
) -> None:
    _u0(self, run_id)
    _u1(self, t)
    _u2(self, step)
    _u3(self, output)
    _u4(self, duration_s)
    _u5(self, attempts)
    _u6(self, input_tokens)
    _u7(self, output_tokens)
    _u8(self, cost_usd)
    _u9(self, cached)


StepStarted.__init__ = _step_started_init  # type: ignore[method-assign]
StepSucceeded.__init__ = _step_succeeded_init  # type: ignore[method-assign]

_KINDS: dict[type, str] = {
    Event: "event",
    RunStarted: "run_started",
    StepStarted: "step_started",
    StepRetrying: "step_retrying",
    StepSucceeded: "step_succeeded",
    StepFailed: "step_failed",
    StepSkipped: "step_skipped",
    StepCancelled: "step_cancelled",
    FanOutExpanded: "fan_out_expanded",
    AgentModelCalled: "agent_model_called",
    AgentToolCalled: "agent_tool_called",
    RunFinished: "run_finished",
}

Listener = Callable[[Event], None]


class EventBus:
    """Fan-out of events to listeners; a listener's exception never breaks the run."""

    __slots__ = ("_listeners", "active", "errors")

    def __init__(self, listeners: list[Listener] | None = None):
        self._listeners: list[Listener] = list(listeners or [])
        # A plain attribute, not a property: the executor reads it several times a step.
        self.active = bool(self._listeners)
        self.errors: list[BaseException] = []

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as err:  # a broken display must not fail the run
                self.errors.append(err)

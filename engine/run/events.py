"""Run events: every state change of a run, on one stream.

The live display, the `--json` result, `Engine.stream()` and (later) the journal and
audit log all consume the same events. Emitting costs nothing when nobody listens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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

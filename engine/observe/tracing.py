"""Optional OpenTelemetry tracing: a span per run and per step, GenAI attributes on model steps.

Off unless the user installs the extra (`pip install -e '.[tracing]'`) and either passes a
tracer (`Engine(tracer=...)`, or `hooks=[TraceHook(tracer)]`) or configures an exporter
through the standard environment (`OTEL_TRACES_EXPORTER`, with the SDK's
autoconfiguration). When off, nothing is imported and nothing runs: the engine attaches
no hook.

Model steps carry the GenAI semantic conventions: `gen_ai.operation.name`,
`gen_ai.request.model`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, plus
`planfile.cost_usd`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from engine.run.events import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from engine.run.hooks import RunHook, RunView
from engine.run.result import StepRecord


def tracer_from_environment() -> Any | None:
    """A tracer when the user configured an exporter and installed the SDK, else None."""
    if (
        not os.environ.get("OTEL_TRACES_EXPORTER")
        or os.environ.get("OTEL_TRACES_EXPORTER") == "none"
    ):
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer("planfile")


class TraceHook(RunHook):
    """Traces every run of the engine it is given to: one `TraceListener` per run."""

    def __init__(self, tracer: Any):
        self.tracer = tracer

    def open(self, run: RunView) -> TraceListener:
        return TraceListener(self.tracer, run.records)


class TraceListener(RunHook):
    """Turns run events into spans: run -> steps (one span per step, retries as events).

    One listener for all rounds of a replanned run: one run span, each round's steps.
    """

    def __init__(self, tracer: Any, records: Mapping[str, StepRecord]):
        self.tracer = tracer
        self.records = records
        self.run_span: Any = None
        self.steps: dict[str, Any] = {}

    def round_started(self, run: RunView, carried: Mapping[str, StepRecord]) -> None:
        self.records = run.records  # each round has its own records

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_span = self.tracer.start_span(
                f"planfile.run {event.plan}",
                attributes={"planfile.run_id": event.run_id, "planfile.plan": event.plan},
            )
            return
        if self.run_span is None:
            return
        from opentelemetry import trace

        context = trace.set_span_in_context(self.run_span)
        if isinstance(event, StepStarted):
            base = event.step.split("[", 1)[0]
            if event.step in self.steps:
                self.steps[event.step].add_event("retry", {"attempt": event.attempt})
                return
            attributes: dict[str, Any] = {"planfile.step": base, "planfile.tool": event.tool}
            if event.model:
                attributes.update(
                    {"gen_ai.operation.name": "chat", "gen_ai.request.model": event.model}
                )
            self.steps[event.step] = self.tracer.start_span(
                f"planfile.step {event.step}", context=context, attributes=attributes
            )
        elif isinstance(event, StepSucceeded | StepFailed | StepSkipped):
            span = self.steps.pop(event.step, None)
            if span is None:
                return
            record = self.records.get(event.step)
            if record is not None:
                span.set_attribute("planfile.status", record.status)
                span.set_attribute("planfile.attempts", record.attempts)
                if record.model:
                    span.set_attribute("gen_ai.request.model", record.model)
                    span.set_attribute("gen_ai.usage.input_tokens", record.input_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", record.output_tokens)
                    span.set_attribute("planfile.cost_usd", record.cost_usd)
            if isinstance(event, StepFailed):
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, event.error))
            span.end()
        elif isinstance(event, RunFinished):
            for span in self.steps.values():
                span.end()
            self.steps.clear()
            self.run_span.set_attribute("planfile.status", event.status)
            self.run_span.set_attribute("planfile.cost_usd", event.cost_usd)
            self.run_span.end()
            self.run_span = None

    event = __call__  # the run hook method: one call per event, no wrapper

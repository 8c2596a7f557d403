"""Optional tracing: spans per run and step, GenAI attributes on model steps."""

from __future__ import annotations

import pytest

from engine import Engine, load_plan
from engine.config import Config, ModelSettings

from .scripted_provider import Reply, registered

otel = pytest.importorskip("opentelemetry.sdk.trace")


def test_spans_per_run_and_step() -> None:
    """A run span with one child per step; model steps carry gen_ai.* usage attributes."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scripted = registered()
    scripted.reset()
    scripted.default["standard"] = Reply("hi", 120, 30)
    config = Config(
        tiers={"standard": "pftest/standard"},
        models={
            "pftest/standard": ModelSettings(
                input_cost_per_million=1.0, output_cost_per_million=1.0
            )
        },
    )
    engine = Engine(config=config, tracer=provider.get_tracer("test"))
    engine.run_sync(
        load_plan('step a: float = calculate(expression: "1 / 0")\nstep b: str = llm(prompt: "hi")')
    )
    spans = {span.name: span for span in exporter.get_finished_spans()}
    run = next(s for n, s in spans.items() if n.startswith("planfile.run"))
    step_a, step_b = spans["planfile.step a"], spans["planfile.step b"]
    assert step_a.parent.span_id == run.context.span_id == step_b.parent.span_id
    assert step_a.status.status_code.name == "ERROR"
    assert step_b.attributes["gen_ai.request.model"] == "pftest/standard"
    assert step_b.attributes["gen_ai.usage.input_tokens"] == 120
    assert step_b.attributes["gen_ai.usage.output_tokens"] == 30
    assert run.attributes["planfile.status"] == "failed"


def test_off_by_default() -> None:
    """Without a tracer or OTEL_TRACES_EXPORTER, the engine traces nothing."""
    assert Engine().tracer is None


def test_a_replanned_run_is_one_trace() -> None:
    """A run revised by the replanner: one run span (ended, with the final status) and
    the steps of every round under it."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from engine.run.executor import RetryPolicy

    from .engine_tools import TEST_TOOLS

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scripted = registered()
    scripted.reset()
    scripted.add(
        "planner",
        Reply(
            {
                "action": "revise",
                "reason": "use a",
                "steps": [{"id": "b2", "tool": "echo", "args": {"value": "{{ a }}"}}],
                "outputs": ["b2"],
            }
        ),
    )
    engine = Engine(
        tools=TEST_TOOLS,
        config=Config(tiers={"planner": "pftest/planner"}),
        retry=RetryPolicy(base_s=0.001, cap_s=0.002),
        tracer=provider.get_tracer("test"),
    )
    import asyncio

    result = asyncio.run(
        engine.run(
            "step a = echo(value: 1)\nstep b = bad_input() after a\noutput b", replan="on-failure"
        )
    )
    assert result.status == "succeeded"
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name.startswith("planfile.run")]
    assert len(runs) == 1 and runs[0].attributes["planfile.status"] == "succeeded"
    steps = {s.name: s for s in spans if s.name.startswith("planfile.step")}
    assert {"planfile.step a", "planfile.step b", "planfile.step b2"} <= set(steps)
    assert all(s.parent.span_id == runs[0].context.span_id for s in steps.values())

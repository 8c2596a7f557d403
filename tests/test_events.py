"""Run events (engine/run/events.py): the per-step events built through their fast
constructors are the events their dataclass declares, field for field, and stay frozen."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.run.events import StepStarted, StepSucceeded

names = st.text(max_size=8)
numbers = st.floats(allow_nan=False)


@given(names, numbers, names, st.integers(), names, st.none() | names)
def test_step_started_holds_every_field_it_was_given(
    run_id: str, t: float, step: str, attempt: int, tool: str, model: str | None
) -> None:
    event = StepStarted(run_id, t, step, attempt, tool, model)
    assert dataclasses.asdict(event) == {
        "run_id": run_id,
        "t": t,
        "step": step,
        "attempt": attempt,
        "tool": tool,
        "model": model,
    }
    assert event == StepStarted(
        run_id=run_id, t=t, step=step, attempt=attempt, tool=tool, model=model
    )
    assert event.kind == "step_started"


@given(names, numbers, st.integers() | names | st.none(), numbers, st.integers(), st.booleans())
def test_step_succeeded_holds_every_field_with_its_defaults(
    step: str, t: float, output: Any, duration: float, attempts: int, cached: bool
) -> None:
    short = StepSucceeded("r", t, step, output, duration, attempts)
    assert (short.input_tokens, short.output_tokens, short.cost_usd, short.cached) == (
        0,
        0,
        0.0,
        False,
    )
    full = StepSucceeded("r", t, step, output, duration, attempts, 3, 4, 0.5, cached=cached)
    assert dataclasses.astuple(full) == (
        "r",
        t,
        step,
        output,
        duration,
        attempts,
        3,
        4,
        0.5,
        cached,
    )
    assert [f.name for f in dataclasses.fields(full)] == [
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
    ]


def test_events_stay_frozen_and_reject_unknown_arguments() -> None:
    event = StepSucceeded("r", 0.0, "a", 1, 0.1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.step = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        StepStarted("r", 0.0, "a", 1, "tool", None, "extra")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        StepStarted("r", 0.0, "a", 1)  # type: ignore[call-arg]

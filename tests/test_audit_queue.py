"""What a run writes per step, on its cheap paths: the audit log's queued events (their
time, their order with other lines, the flush during a run) and the `--json` record's
rounding and copies, each the same as the general path's."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine import Engine, load_plan
from engine.observe.audit import AuditLog
from engine.run.events import StepStarted
from engine.run.result import StepRecord, StepStatus, _micros, jsonable

from .engine_tools import TEST_TOOLS


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wall(ts: str) -> float:
    return dt.datetime.fromisoformat(ts).timestamp()


def test_step_lines_carry_the_time_their_event_happened(planfile_home: Path) -> None:
    """Queued events are encoded at the flush, stamped with when they happened."""
    checked = load_plan(
        "step a = sleep(seconds: 0.3)\nstep b = sleep(seconds: 0.2)\nstep c = sleep(seconds: 0.01) after a, b",
        tools=TEST_TOOLS,
    )
    before = time.time()
    result = Engine(tools=TEST_TOOLS, audit=True).run_sync(checked)
    after = time.time()
    assert result.ok
    lines = _lines(planfile_home / "audit" / f"{result.run_id}.jsonl")
    stamps = [_wall(line["ts"]) for line in lines]
    assert all(before - 0.002 <= ts <= after + 0.002 for ts in stamps)
    assert stamps == sorted(stamps)  # in the order they happened
    at = {(line["event"], line.get("step")): _wall(line["ts"]) for line in lines}
    assert abs(at["step_succeeded", "a"] - at["step_started", "a"] - 0.3) < 0.05
    assert abs(at["step_succeeded", "b"] - at["step_started", "b"] - 0.2) < 0.05
    assert at["step_started", "c"] >= at["step_succeeded", "a"] - 0.002


def test_a_runs_lines_are_flushed_while_it_runs(planfile_home: Path) -> None:
    """A killed run loses at most the last second: the queue is written every second."""
    checked = load_plan(
        "step a = sleep(seconds: 0.01)\nstep b = sleep(seconds: 1.6) after a", tools=TEST_TOOLS
    )
    seen: list[list[str]] = []

    async def go() -> None:
        engine = Engine(tools=TEST_TOOLS, audit=True)
        task = asyncio.create_task(engine.run(checked))
        await asyncio.sleep(AuditLog.FLUSH_EVERY_S + 0.4)
        path = next((planfile_home / "audit").glob("*.jsonl"))
        seen.append([line["event"] for line in _lines(path)])
        await task

    asyncio.run(go())
    assert seen[0][:4] == ["plan", "run_started", "step_started", "step_succeeded"]
    assert "run_finished" not in seen[0]


def test_write_lines_keep_their_place_among_queued_events(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog([path])
    started = time.perf_counter()
    listen = log.run_listener(lambda: started)
    listen(StepStarted("r", 0.0, "a", 1, "tool"))
    log.write("execution", "note", n=1)
    listen(StepStarted("r", 0.001, "b", 1, "tool"))
    log.close()
    assert [(line["event"], line.get("step")) for line in _lines(path)] == [
        ("step_started", "a"),
        ("note", None),
        ("step_started", "b"),
    ]


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**9), 10**9) | st.none())
def test_micros_is_round_to_six_places(value: float | int | None) -> None:
    expected = None if value is None else round(value, 6)
    assert repr(_micros(value)) == repr(expected)


@given(st.integers(0, 10**12))
def test_micros_at_and_near_halves(n: int) -> None:
    for seconds in ((n + 0.5) / 1e6, n / 1e6, math.nextafter((n + 0.5) / 1e6, 0.0)):
        assert repr(_micros(seconds)) == repr(round(seconds, 6))


@given(st.floats(min_value=0.0, max_value=1e7), st.floats(min_value=0.0, max_value=1e7))
def test_a_records_times_are_rounded_as_round_does(started: float, finished: float) -> None:
    record = StepRecord(
        tool="t", status=StepStatus.SUCCEEDED, started_at=started, finished_at=finished
    )
    doc = record.to_json()
    assert repr(doc["started_at"]) == repr(round(started, 6))
    assert repr(doc["finished_at"]) == repr(round(finished, 6))


def _jsonable_reference(value: Any) -> Any:
    """`jsonable` before its plain-value shortcut: one call per value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable_reference(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable_reference(v) for v in value]
    return str(value)


plain = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
nested = st.recursive(
    plain,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text() | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(nested)
def test_jsonable_is_the_one_call_per_value_copy(value: Any) -> None:
    got, want = jsonable(value), _jsonable_reference(value)
    assert json.dumps(got) == json.dumps(want)

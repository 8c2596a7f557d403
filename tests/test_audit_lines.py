"""The audit log's cheap paths write what the general ones would: each event type's
compiled line, the buffer that flushes while lines are added, the plan line, and the
`--json` document written as bytes."""

from __future__ import annotations

import json
import math
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsl.ir import Plan
from engine import Engine, load_plan
from engine.cli.run_cmds import report
from engine.observe.audit import AuditLog
from engine.observe.audit_lines import ENCODERS
from engine.run.events import RunFinished, StepRetrying, StepStarted, StepSucceeded
from engine.run.result import RunResult, RunStatus, StepRecord, StepStatus, jsonable

texts = st.text()  # quotes, backslashes, control characters, any code point
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond 64 bits too
)
counts = st.integers(min_value=-(2**70), max_value=2**70)
events = st.one_of(
    st.builds(StepStarted, texts, st.floats(), texts, counts, texts, st.none() | texts),
    st.builds(StepRetrying, texts, st.floats(), texts, counts, texts, numbers),
    st.builds(
        StepSucceeded,
        texts,
        st.floats(),
        texts,
        st.integers(),
        numbers,
        counts,
        counts,
        counts,
        numbers,
        st.booleans(),
    ),
    st.builds(RunFinished, texts, st.floats(), texts, st.just({}), numbers),
)


def expected_line(event: Any, ts: str) -> dict[str, Any]:
    """The line as the general path writes it: the event's fields but `t` and outputs,
    each made JSON-safe (non-finite floats as text)."""
    line: dict[str, Any] = {"ts": ts, "phase": "execution", "event": event.kind}
    for f in fields(event):
        if f.name not in ("t", "output", "outputs"):
            line[f.name] = jsonable(getattr(event, f.name))
    return line


@given(events)
def test_each_event_types_compiled_line_is_the_general_line(event: Any) -> None:
    raw = ENCODERS[type(event)](event, "2026-01-01T00:00:00.000+00:00")
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # one line, whatever the text
    line = json.loads(raw)
    assert line == expected_line(event, "2026-01-01T00:00:00.000+00:00")
    assert list(line)[:3] == ["ts", "phase", "event"]


def test_lines_added_while_the_buffer_flushes_are_kept(tmp_path: Path) -> None:
    """Appending takes no lock: a flush removes only what it copied."""
    path = tmp_path / "a.jsonl"
    log = AuditLog([path])
    per_thread, threads = 3000, 4
    done = threading.Event()

    def add(n: int) -> None:
        for i in range(per_thread):
            log(StepStarted("r", 0.0, f"t{n}-{i}", 1, "tool"))

    def flush() -> None:
        while not done.is_set():
            log.flush()

    flusher = threading.Thread(target=flush)
    flusher.start()
    adders = [threading.Thread(target=add, args=(n,)) for n in range(threads)]
    for thread in adders:
        thread.start()
    for thread in adders:
        thread.join(timeout=60)
    done.set()
    flusher.join(timeout=60)
    log.close()
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    assert len(steps) == len(set(steps)) == per_thread * threads


def test_the_plan_line_is_the_plan_as_json(planfile_home: Path) -> None:
    """The audit log's `plan` line holds the plan that ran, as a JSON object, readable
    back into the same plan."""
    checked = load_plan('step a: float = calculate(expression: "6 * 7")\noutput a')
    result = Engine(audit=True).run_sync(checked)
    lines = (planfile_home / "audit" / f"{result.run_id}.jsonl").read_text().splitlines()
    plan_line = json.loads(lines[0])
    assert plan_line["event"] == "plan" and isinstance(plan_line["plan"], dict)
    assert Plan.model_validate(plan_line["plan"]) == checked.plan


def test_json_report_is_written_as_bytes_after_earlier_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = RunResult(
        run_id="r",
        plan="p",
        status=RunStatus.SUCCEEDED,
        outputs={"a": "naïve ✓"},
        steps={"a": StepRecord(tool="t", status=StepStatus.SUCCEEDED, output=math.inf)},
    )
    print("before", file=sys.stdout)
    report(result, True, lambda _: None)
    out = capsys.readouterr().out
    assert out == "before\n" + result.dumps() + "\n"
    assert json.loads(out.removeprefix("before\n"))["steps"]["a"]["output"] == "inf"

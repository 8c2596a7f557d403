"""The cheap per-step paths keep what the general ones did: the canonical-step loader,
the audit log's precompiled event lines and buffer, and the plain log's batched lines."""

from __future__ import annotations

import asyncio
import io
import json
import math
from pathlib import Path

from dsl.json_loader import load_json
from engine.observe.audit import AuditLog
from engine.observe.display import PlainLog, preview
from engine.run.events import RunFinished, RunStarted, StepStarted, StepSucceeded
from stdlib_tools import ToolRegistry


def canonical_plan(n: int) -> dict[str, object]:
    steps: list[dict[str, object]] = [
        {"id": "s0", "tool": "calculate", "args": {"expression": "1 + 1"}}
    ]
    steps += [
        {"id": f"s{i}", "tool": "calculate", "args": {"expression": "2"}, "after": [f"s{i - 1}"]}
        for i in range(1, n)
    ]
    return {"name": "chain", "steps": steps}


def test_canonical_steps_keep_their_json_paths() -> None:
    """Each field of a canonical step maps to its own place in the document, so an error
    in it is located as precisely as through the general walk."""
    tools = ToolRegistry.standard()
    plan, smap = load_json(canonical_plan(3), "p.json", tools)
    assert [list(s.after) for s in plan.steps] == [[], ["s0"], ["s1"]]
    for path in [("steps", 2, "id"), ("steps", 2, "tool"), ("steps", 2, "after", 0)]:
        assert smap.json_paths[path] == path
    assert smap.json_paths[("steps", 2, "args", "expression")] == (
        "steps",
        2,
        "args",
        "expression",
    )


def test_steps_that_need_the_general_walk_still_get_it() -> None:
    """A dependency by number, a step-number reference, a tool renamed by `tool_map`,
    and `after: null` are resolved as before (the canonical path declines them)."""
    tools = ToolRegistry.standard()
    doc = {
        "steps": [
            {"id": "a", "tool": "calc", "args": {"expression": "1"}},
            {"id": "b", "tool": "calculate", "args": {"expression": "2"}, "after": [1]},
            {"id": "c", "tool": "calculate", "args": {"expression": "3"}, "after": None},
        ]
    }
    plan, smap = load_json(doc, "p.json", tools, tool_map={"calc": "calculate"})
    assert [s.tool for s in plan.steps] == ["calculate"] * 3
    assert list(plan.steps[1].after) == ["a"] and not plan.steps[2].after
    assert any("mapped" in note.message for note in smap.notes)


def test_audit_lines_are_complete_and_non_finite_floats_are_text(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog([path], ["sk-secret-123"]) as log:
        log(RunStarted("r1", 0.0, "p", ("a", "b")))
        log(StepStarted("r1", 0.1, "a", 1, "search", model="sk-secret-123"))
        log(StepSucceeded("r1", 0.2, "a", {"big": "output"}, math.inf, 1, cost_usd=math.nan))
        log(RunFinished("r1", 0.3, "succeeded", {"a": 1}, 0.5))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == [
        "run_started",
        "step_started",
        "step_succeeded",
        "run_finished",
    ]
    assert lines[0]["steps"] == ["a", "b"] and lines[1]["model"] == "[redacted]"
    assert lines[2]["duration_s"] == "inf" and lines[2]["cost_usd"] == "nan"
    assert "output" not in lines[2] and "outputs" not in lines[3]
    assert all(list(line)[:3] == ["ts", "phase", "event"] for line in lines)


def test_audit_buffer_is_written_when_full_and_redacted(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog([path], ["sk-secret-123"])
    log.FLUSH_EVERY_BYTES = 1000
    for i in range(20):
        log.write("execution", "note", text=f"line {i} sk-secret-123")
    written = path.read_text()  # before close: the full buffer went out
    assert written and "sk-secret" not in written
    log.close()
    assert len(path.read_text().splitlines()) == 20


def test_plain_log_batches_lines_on_a_loop_and_flushes_at_the_end() -> None:
    stream = io.StringIO()
    log = PlainLog(stream)

    async def run() -> str:
        log(StepSucceeded("r", 0.1, "a", 42, 0.01, 1))
        log(StepSucceeded("r", 0.2, "b", None, 0.01, 1))
        early = stream.getvalue()
        log(RunFinished("r", 0.3, "succeeded"))
        return early

    early = asyncio.run(run())
    assert early == ""  # both lines wait for one write
    out = stream.getvalue().splitlines()
    assert len(out) == 2 and out[0].endswith("ok      a (0.010s): 42")
    assert out[1].endswith(": null")


def test_plain_log_without_a_loop_writes_at_once() -> None:
    stream = io.StringIO()
    PlainLog(stream)(StepSucceeded("r", 0.1, "a", True, 0.01, 1))
    assert stream.getvalue().endswith(": true\n")


def test_preview_of_scalars_matches_json() -> None:
    for value in (0, -7, 10**30, True, False, None, 1.5, math.nan, "text"):
        expected = value if isinstance(value, str) else json.dumps(value)
        if isinstance(value, float) and math.isnan(value):
            expected = '"nan"'
        assert preview(value) == expected

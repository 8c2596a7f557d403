"""The journal's rows for an agent step's inner calls: how they are stored, read and replayed.

An agent step (engine/agent/loop.py documents the call dict) reports each inner model
call and tool call once it has finished; the journal queues it on the run's log and
writes it with the step records (every ~50 ms, engine/store/journal.py), one row per
call in `agent_calls`. A run killed in the middle of an agent step thus keeps every
call that finished before the kill, and `planfile resume` hands them back to the step
(`replayable`), which replays them instead of calling the model or the tool again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson

from engine.run.result import StepRecord, StepStatus, jsonable

TABLE = (
    "CREATE TABLE IF NOT EXISTS agent_calls (run_id TEXT, step TEXT, call_index INTEGER, "
    "attempt INTEGER, kind TEXT, call_key TEXT, written_at TEXT, call_json TEXT)"
)
INDEX = "CREATE INDEX IF NOT EXISTS agent_calls_run ON agent_calls (run_id, step)"
INSERT = (
    "INSERT INTO agent_calls (run_id, step, call_index, attempt, kind, call_key, written_at, "
    "call_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):  # odd objects, integers beyond 64 bits
        import json

        return json.dumps(jsonable(value), ensure_ascii=False).encode()


def row(run_id: str, step: str, call: Mapping[str, Any], now: str) -> tuple[Any, ...]:
    """One finished inner call as an `agent_calls` row (`INSERT`'s parameters)."""
    return (
        run_id,
        step,
        call.get("index"),
        call.get("attempt"),
        call.get("kind"),
        call.get("key"),
        now,
        _dumps(jsonable(dict(call))),
    )


def read(
    db: sqlite3.Connection, run_id: str, step: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every journaled inner call of the run (or of one step), per step, as written."""
    if step is None:
        rows = db.execute(
            "SELECT step, call_json FROM agent_calls WHERE run_id = ? ORDER BY rowid", (run_id,)
        ).fetchall()
    else:
        rows = db.execute(
            "SELECT step, call_json FROM agent_calls WHERE run_id = ? AND step = ? ORDER BY rowid",
            (run_id, step),
        ).fetchall()
    out: dict[str, list[dict[str, Any]]] = {}
    for name, data in rows:
        out.setdefault(name, []).append(orjson.loads(data))
    return out


def last_attempt(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls of the step's latest attempt, in call order (by `index`).

    Every attempt starts with a model call of the first iteration, so the latest
    attempt is what was written from the last such call on. A resumed step that
    replays goes on with that attempt's iterations (no new first one), so a second
    kill and resume replays the calls of both processes. Parallel tool calls finish
    (and are written) in any order: sorted by index, a call that had not finished is
    simply absent.
    """
    if not calls:
        return []
    first = min(int(call.get("iteration") or 0) for call in calls)
    start = 0
    for position, call in enumerate(calls):
        if call.get("kind") == "model" and int(call.get("iteration") or 0) == first:
            start = position
    by_index: dict[int, dict[str, Any]] = {}
    for call in calls[start:]:
        by_index.setdefault(int(call.get("index") or 0), call)  # the first writing wins
    # One attempt: a resumed process numbers its attempts from 1 again, so the calls it
    # made going on with (say) attempt 2 say attempt 1; they belong to the attempt they
    # continued, and a replayer that keeps one attempt's calls must keep them all.
    attempt = calls[start].get("attempt")
    return [{**by_index[index], "attempt": attempt} for index in sorted(by_index)]


def replayable(
    calls: Mapping[str, list[dict[str, Any]]],
    records: Mapping[str, StepRecord],
    budget_stopped: bool,
) -> dict[str, list[dict[str, Any]]]:
    """Per step that a resume runs again, the inner calls it replays.

    A step killed mid-loop (no final record) or cancelled (Ctrl-C) replays its latest
    attempt; so does one that failed because the run ran out of budget
    (`budget_stopped`), so raising the budget and resuming pays for nothing twice. A
    step that failed on its own runs again from its start, as any failed step does.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for step, step_calls in calls.items():
        record = records.get(step.split("[", 1)[0]) if step not in records else records[step]
        if record is not None and record.status == StepStatus.FAILED and not budget_stopped:
            continue
        if record is not None and record.is_done:
            continue
        chosen = last_attempt(step_calls)
        if chosen:
            out[step] = chosen
    return out

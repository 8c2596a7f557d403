"""Terminal output for `planfile run`: a live step table (rich), or plain log lines.

Both consume run events (as `on_event` callbacks or as run hooks); neither affects the run. The live table shows each step's
state, elapsed time, attempts, model, tokens and cost; an agent step's row shows its
latest inner tool call, and the plain log has a short line per inner tool call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from dsl.errors import escape_controls
from engine.run.events import (
    AgentToolCalled,
    Event,
    FanOutExpanded,
    RunFinished,
    RunStarted,
    StepCancelled,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from engine.run.result import RunResult, jsonable

if TYPE_CHECKING:
    from dsl.ir import Plan

_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "succeeded": "green",
    "failed": "red",
    "skipped": "dim",
    "cancelled": "yellow",
}


def preview(value: Any, limit: int = 60) -> str:
    if type(value) in _SCALAR_TEXT:  # a number or a flag: no JSON encoder (once a step)
        text = _SCALAR_TEXT[type(value)](value)
        return text if len(text) <= limit else text[: limit - 1] + "…"
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(jsonable(value), ensure_ascii=False, default=str)
    text = " ".join(text.split())
    # Model-written: no raw ESC to a terminal. Escaping only widens, so only the part
    # that can show is escaped (a result may be megabytes).
    shown = escape_controls(text[:limit])
    return shown if len(shown) <= limit and len(text) <= limit else shown[: limit - 1] + "…"


# How JSON writes these (json.dumps(jsonable(v))); floats keep the encoder (nan, inf).
_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    type(None): lambda value: "null",
}


class StepTable:
    """Collects events into per-step rows for the live display."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.started = time.perf_counter()
        self.items: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            for name in event.steps:
                self.rows[name] = {"state": "pending", "start": None, "end": None, "note": ""}
            return
        name = getattr(event, "step", "")
        base = name.split("[", 1)[0]
        row = self.rows.get(base)
        if row is None:
            return
        now = time.perf_counter() - self.started
        if isinstance(event, StepStarted):
            row["state"] = "running"
            row["start"] = row["start"] if row["start"] is not None else now
            row["attempt"] = event.attempt
            if event.model:
                row["model"] = event.model
        elif isinstance(event, FanOutExpanded):
            row["state"] = "running"
            row["start"] = now
            row["note"] = f"{event.items} items"
        elif isinstance(event, StepRetrying):
            row["state"] = "retrying"
            row["note"] = f"attempt {event.attempt} failed: {event.error}"
        elif isinstance(event, StepSucceeded):
            row.update(
                state="succeeded",
                end=now,
                note=("(cached) " if event.cached else "") + preview(event.output),
            )
            row["tokens"] = event.input_tokens + event.output_tokens
            row["cost"] = event.cost_usd
        elif isinstance(event, StepFailed):
            row.update(state="failed", end=now, note=event.error)
        elif isinstance(event, StepSkipped):
            row.update(state="skipped", end=now, note=event.reason)
        elif isinstance(event, StepCancelled):
            row.update(state="cancelled", end=now)
        elif isinstance(event, AgentToolCalled):
            row["note"] = f"iteration {event.iteration}: {tool_call_line(event)}"

    event = __call__  # a run hook too: Engine(hooks=[StepTable()])

    def render(self) -> Any:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("step", "state", "time", "model", "tokens", "cost", "result"):
            table.add_column(column, no_wrap=column != "result", overflow="ellipsis")
        now = time.perf_counter() - self.started
        # A copy: the live display renders on its own thread while the run adds rows.
        for name, row in list(self.rows.items()):
            start, end = row["start"], row["end"]
            elapsed = "" if start is None else f"{(end if end is not None else now) - start:.2f}s"
            state = row["state"]
            table.add_row(
                name,
                f"[{_STYLE.get(state, '')}]{state}[/]",
                elapsed,
                row.get("model") or "",
                str(row.get("tokens") or ""),
                f"${row['cost']:.4f}" if row.get("cost") else "",
                _escape(escape_controls(row["note"])),  # rich passes ESC through
            )
        return table


def tool_call_line(event: AgentToolCalled, limit: int = 40) -> str:
    """`search({"query": "x"}) -> [...] (0.12s)`: one inner tool call of an agent step."""
    result = (
        f"error: {preview(event.error, limit)}" if event.error else preview(event.output, limit)
    )
    replayed = ", replayed" if event.replayed else ""
    return (
        f"{escape_controls(event.tool)}({preview(event.args, limit)}) -> {result} "
        f"({event.duration_s:.2f}s{replayed})"
    )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class PlainLog:
    """One line per finished step, for logs and pipes.

    On an event loop the lines of one moment are written together, at most
    `FLUSH_AFTER_S` after the first of them (and at `RunFinished` or `flush()`): a
    write and flush per line cost ~5 µs a step. Without a loop each line is written
    at once.
    """

    FLUSH_AFTER_S = 0.1

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def flush(self) -> None:
        """Write out the lines not written yet."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            pending, self._pending = self._pending, []
            self.stream.write("".join(pending))
            self.stream.flush()

    def _write(self, line: str) -> None:
        self._pending.append(line + "\n")
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (or another thread): now
            self.flush()
            return
        self._timer = loop.call_later(self.FLUSH_AFTER_S, self.flush)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self.flush()
            return
        line = None
        if isinstance(event, StepSucceeded):
            cached = " cached" if event.cached else ""
            line = f"[{event.t:8.3f}s] ok      {event.step} ({event.duration_s:.3f}s{cached}): {preview(event.output)}"
        elif isinstance(event, StepFailed):
            line = f"[{event.t:8.3f}s] failed  {event.step}: {escape_controls(event.error)}"
        elif isinstance(event, StepSkipped):
            line = f"[{event.t:8.3f}s] skipped {event.step}: {escape_controls(event.reason)}"
        elif isinstance(event, StepRetrying):
            error = escape_controls(event.error)
            line = f"[{event.t:8.3f}s] retry   {event.step} in {event.delay_s:.2f}s: {error}"
        elif isinstance(event, StepCancelled):
            line = f"[{event.t:8.3f}s] cancelled {event.step}"
        elif isinstance(event, AgentToolCalled):
            line = f"[{event.t:8.3f}s] tool    {event.step}: {tool_call_line(event)}"
        if line:
            self._write(line)

    event = __call__  # a run hook too: Engine(hooks=[PlainLog()])
    close = flush  # as a hook: called as the run ends, even when it crashed


def output_labels(plan: Plan) -> dict[str, str]:
    """What each output is, in the plan's words: its step's (or input's) description.

    A model-written plan names its steps `step_3`; `step_3: 45000.0` alone does not say
    that it is the housing cost, its description does.
    """
    described = {s.id: s.description for s in plan.steps}
    described.update({i.name: i.description for i in plan.inputs})
    return {name: text for name, text in described.items() if text and text.strip()}


def print_summary(
    result: RunResult,
    stream: TextIO | None = None,
    expected_cost: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> None:
    """The outputs (each with its label: `output_labels`), then status, time and cost
    (per model, and against the plan's estimate)."""
    out = stream or sys.stdout
    for name, value in result.outputs.items():
        if isinstance(value, str):
            value = escape_controls(value, multiline=True)
            text = value if "\n" not in value else "\n    " + value.replace("\n", "\n    ")
        else:
            text = escape_controls(
                json.dumps(jsonable(value), ensure_ascii=False, indent=2), multiline=True
            )  # JSON leaves DEL and C1 controls raw
        label = (labels or {}).get(name)
        head = f"{name} ({preview(label, 80)})" if label else name
        print(f"{head}: {text}", file=out)
    counts: dict[str, int] = {}
    for record in result.steps.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    hits = sum(record.cache_hits for record in result.steps.values())
    if hits:
        counts["served from the step cache ($0)"] = hits
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(
        f"run {result.run_id} {result.status}: {parts}; {result.wall_s:.2f}s wall, "
        f"critical path {result.critical_path_s:.2f}s, ${result.cost_usd:.4f}",
        file=sys.stderr,
    )
    by_model: dict[str, list[float]] = {}
    for record in result.steps.values():
        if record.model:
            row = by_model.setdefault(record.model, [0, 0, 0.0, 0])
            row[0] += record.input_tokens
            row[1] += record.output_tokens
            row[2] += record.cost_usd
            row[3] += 1
    for model, (tokens_in, tokens_out, cost, steps) in sorted(by_model.items()):
        print(
            f"  {model}: {int(steps)} step(s), {int(tokens_in)} in / {int(tokens_out)} out tokens, ${cost:.6f}",
            file=sys.stderr,
        )
    if expected_cost is not None:
        print(
            f"  cost ${result.cost_usd:.6f} against ${expected_cost:.6f} planned", file=sys.stderr
        )
    for name, record in result.steps.items():
        if record.status == "failed" and record.error:
            print(f"  {name}: {escape_controls(record.error)}", file=sys.stderr)

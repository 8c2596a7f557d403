"""The audit log: one JSON line per thing that happened in a run, secrets redacted.

Written to `$PLANFILE_HOME/audit/<run_id>.jsonl` (and/or `--audit FILE`): the plan, each
phase (planning, execution, replanning), each step with status, model, tokens, cost and
error, each inner model and tool call of an agent step (with its idempotency key), and
replans as diffs. Every line passes through redaction: API keys from the
config and the environment never reach the file. `AuditHook` attaches it to runs.

A little over 400 lines: the buffer, a run's event queue and the files share one lock
and one flush; how a line is encoded lives apart (engine/observe/audit_lines.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from engine.observe.audit_lines import ENCODERS, encode_line
from engine.run.events import Event, RunStarted
from engine.run.hooks import RunHook, RunView
from engine.run.result import jsonable
from engine.store.home import data_home

REDACTED = "[redacted]"
_SECRET_NAMES = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)


def secrets_from(config: Any = None, environ: Mapping[str, str] | None = None) -> set[str]:
    """Values to redact: configured api_keys, the variables api_key_env names, *_API_KEY-like vars."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if _SECRET_NAMES.search(name) and len(value) >= 6:
            found.add(value)
    for settings in getattr(config, "models", {}).values():
        if settings.api_key and len(settings.api_key) >= 6:
            found.add(settings.api_key)
        if settings.api_key_env and env.get(settings.api_key_env):
            found.add(env[settings.api_key_env])
    return found


class AuditLog:
    """Appends redacted JSON lines to one or more files; usable as an event listener.

    Buffered: lines are encoded as they come and kept in memory; `flush()` redacts
    them as one buffer and writes it to each file. It runs every `FLUSH_EVERY_S` on the
    running event loop, every `FLUSH_EVERY_BYTES`, on `close()` (which a run calls
    on every path out, cancellation included) and at interpreter exit. A killed process
    loses at most the last second of lines; an open/close per line cost ~140 µs per
    step, and a redaction and file write per line ~1 µs.
    """

    FLUSH_EVERY_S = 1.0
    FLUSH_EVERY_BYTES = 1 << 20

    def __init__(
        self, paths: Iterable[Path], secrets: Iterable[str] = (), *, open_now: bool = True
    ):
        """`open_now=False`: the files are opened by `open()` (a run's log exists from the
        run's set-up, so its events go straight to it, but no file is made before the run
        starts)."""
        self.paths = list(paths)
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secret_bytes = [(s.encode(), _REDACTED_BYTES) for s in ordered]
        self._lock = threading.Lock()
        self._files: list[BinaryIO] = []
        # Encoded lines, not yet redacted nor written. One growing buffer, not a list of
        # lines: orjson's outputs kept alive cost ~5 µs each in allocation.
        self._pending = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        # A run's events and lines in the order they came, encoded at the next flush
        # (see `run_listener`); None: each is encoded as it comes.
        self._queue: list[Any] | None = None
        self._clock: Callable[[], float] = _no_clock
        self._base = 0.0
        self._closed = False
        # `_last_ts` is the time from `_ts_from` until `_ts_until` (time.time() values).
        self._ts_from = self._ts_until = 0.0
        self._last_ts = ""
        # Written out at interpreter exit too, if the log was never closed.
        self._finalizer = weakref.finalize(
            self, _close_files, self._files, self._pending, self._secret_bytes
        )
        if open_now:
            self.open()

    def open(self) -> None:
        """Open (create) the files for appending; lines written before wait in the buffer."""
        if self._files:
            return
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            for path in self.paths:
                self._files.append(path.open("ab", buffering=1 << 16))
        except BaseException:
            self.close()
            raise

    @classmethod
    def for_run(
        cls,
        run_id: str,
        extra: Path | None = None,
        secrets: Iterable[str] = (),
        *,
        open_now: bool = True,
    ) -> AuditLog:
        paths = [data_home() / "audit" / f"{run_id}.jsonl"]
        if extra is not None:
            paths.append(extra)
        return cls(paths, secrets, open_now=open_now)

    def write(self, phase: str, kind: str, **data: Any) -> None:
        line = {"ts": self._timestamp(), "phase": phase, "event": kind}
        for key, value in data.items():
            line[key] = value if type(value) in _PLAIN else jsonable(value)
        if self._queue is not None:
            self._queue.append(encode_line(line))  # after the events queued before it
        else:
            self._append(encode_line(line))

    def run_listener(self, clock: Callable[[], float]) -> Callable[[Event], None]:
        """This log's listener for one run's events: a bare `list.append`, no Python
        frame per event (that frame, its clock read and its buffer checks cost ~0.2 µs
        an event, two a step). Events wait in the list, in order with `write`'s
        lines, and are encoded when the log flushes: every `FLUSH_EVERY_S` on the
        run's event loop (`tick_on_loop`, from the run's start) and on `close()`,
        which a run calls on every path out; a killed process loses at most the
        last second, as before.

        A line's `ts` is the moment its event happened: `clock()` is the
        `time.perf_counter()` reading the run's events count their `t` from (read
        now and again at `RunStarted`, when a run's clock starts), placed in wall
        time at each flush.
        """
        self._queue = []
        self._clock = clock
        self._base = clock()
        return self._queue.append

    def tick_on_loop(self) -> None:
        """Flush every `FLUSH_EVERY_S` on the running event loop until `close()` (the
        queued events' only other way out); no loop: at `close()` alone."""
        if self._timer is None and not self._closed:
            self._schedule_flush()

    def _timestamp(self) -> str:
        """Now, to the millisecond; formatted once per millisecond, not once per line."""
        now = time.time()
        if not self._ts_from <= now < self._ts_until:
            self._new_millisecond(now)
        return self._last_ts

    def _new_millisecond(self, now: float) -> None:
        millis = int(now * 1000)
        self._ts_from, self._ts_until = millis / 1000, (millis + 1) / 1000
        self._last_ts = dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(
            timespec="milliseconds"
        )

    def _append(self, raw: bytes) -> None:
        # No lock: `+=` on a bytearray is one step under the GIL, and `flush` removes
        # only the bytes it copied, so a line added meanwhile stays for the next flush.
        pending = self._pending
        pending += raw
        if len(pending) >= self.FLUSH_EVERY_BYTES:
            self.flush()
        elif self._timer is None:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a plain script): flush() / close() write it out
        self._timer = loop.call_later(self.FLUSH_EVERY_S, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.flush()
        if self._queue is not None:
            self.tick_on_loop()  # queued events schedule nothing themselves

    def _drain(self) -> None:
        """Encode the queued events and lines into the pending buffer, in order."""
        queue = self._queue
        if not queue:
            return
        items = queue[:]
        del queue[: len(items)]  # events appended meanwhile (another thread) stay queued
        pending = self._pending
        encoders = ENCODERS.get
        # perf_counter() -> wall clock, read once a flush (they drift apart by at most
        # what NTP slews in a second); the run clock's start added (it moves once, at
        # `RunStarted`: events before it count from the run's set-up).
        at = time.time() - time.perf_counter() + self._base
        ts_from, ts_until, ts = self._ts_from, self._ts_until, self._last_ts
        for item in items:
            if type(item) is bytes:
                pending += item
                continue
            encode = encoders(type(item))
            if encode is None:
                continue
            if type(item) is RunStarted:  # its `t` is 0.0 at the run clock's start
                at += self._clock() - self._base
                self._base = self._clock()
            now = at + item.t
            if not ts_from <= now < ts_until:
                self._new_millisecond(now)
                ts_from, ts_until, ts = self._ts_from, self._ts_until, self._last_ts
            try:
                pending += encode(item, ts)
            except Exception:  # as from a failing listener: that line is lost
                continue

    def flush(self) -> None:
        with self._lock:
            self._drain()
            _write_pending(self._files, self._pending, self._secret_bytes)
            for handle in self._files:
                if not handle.closed:
                    handle.flush()

    def close(self) -> None:
        """Write out what is buffered and close the files (idempotent)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            self._drain()
            _close_files(self._files, self._pending, self._secret_bytes)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, event: Event) -> None:
        """Run events -> execution-phase lines (results stay in the journal, not here).

        One line per event, encoded by its type's encoder: ~1 µs, two per step."""
        encode = ENCODERS.get(type(event))
        if encode is None:
            return
        now = time.time()
        if not self._ts_from <= now < self._ts_until:
            self._new_millisecond(now)
        pending = self._pending
        pending += encode(event, self._last_ts)
        if len(pending) >= self.FLUSH_EVERY_BYTES:
            self.flush()
        elif self._timer is None:
            self._schedule_flush()


def _write_pending(
    files: list[BinaryIO], pending: bytearray, secrets: list[tuple[bytes, bytes]]
) -> None:
    """Redact the pending lines as one buffer (a secret never spans lines: a line
    holds no raw newline) and append it to each open file."""
    if not pending:
        return
    raw = bytes(pending)
    del pending[: len(raw)]  # not clear(): lines appended since the copy stay queued
    for secret, mask in secrets:
        raw = raw.replace(secret, mask)
    for handle in files:
        if not handle.closed:
            handle.write(raw)


def _close_files(
    files: list[BinaryIO], pending: bytearray, secrets: list[tuple[bytes, bytes]]
) -> None:
    _write_pending(files, pending, secrets)
    for handle in files:
        if not handle.closed:
            handle.close()


class AuditHook(RunHook):
    """The audit log as a run hook: one log (one open file per path) per run.

    `preamble`: lines from before the run (the planner's attempts and cost for `ask`).
    """

    def __init__(
        self,
        extra: Path | None = None,
        secrets: Iterable[str] = (),
        preamble: Iterable[tuple[str, str, dict[str, Any]]] = (),
    ):
        self.extra = extra
        self.secrets = set(secrets)
        self.preamble = list(preamble)

    def open(self, run: RunView) -> _AuditRun:
        return _AuditRun(self, run)


class _AuditRun(RunHook):
    def __init__(self, hook: AuditHook, run: RunView):
        self.hook = hook
        self.run_id = run_id = run.run_id
        # Its files open when the run starts. The run's event listener is a bare
        # `list.append` of the log's queue (two events a step), when the run says
        # where its events' `t` counts from (`started`, a perf_counter() reading; a
        # RunSession's); else the log itself, which encodes each event as it comes.
        self.log = AuditLog.for_run(run_id, hook.extra, hook.secrets, open_now=False)
        if isinstance(getattr(run, "started", None), float):
            listener = self.log.run_listener(partial(_run_clock, run))
            self.event = listener  # type: ignore[method-assign, assignment]
        else:
            self.event = self.log  # type: ignore[method-assign]

    def run_started(self, run: RunView) -> None:
        # Serialised first: a plan that cannot be written refuses to run before a file opens.
        plan_json = run.checked.plan_json
        self.log.open()
        self.log.tick_on_loop()
        for phase, kind, data in self.hook.preamble:
            self.log.write(phase, kind, run_id=run.run_id, **data)
        # The plan as the JSON object the journal stores (serialised once per checked
        # plan and shared with it; `planfile fmt` prints it as `.plan` text): the
        # canonical `.plan` text cost ~4 µs a step more for the same content.
        self.log.write(
            "execution",
            "plan",
            run_id=run.run_id,
            plan=orjson.Fragment(plan_json),
            inputs=dict(run.inputs),
        )

    def event(self, event: Event) -> None:  # replaced by the log in __init__
        self.log(event)

    def agent_call(self, step_id: str, call: dict[str, Any]) -> None:
        """One line per inner call of an agent step; like a step's line, without its
        output (results stay in the journal): a model call's tokens, cost and the tools
        it asked for; a tool call's idempotency key, arguments and error."""
        common = {
            "run_id": self.run_id,
            "step": step_id,
            "index": call.get("index"),
            "iteration": call.get("iteration"),
            "attempt": call.get("attempt"),
            "duration_s": _duration(call),
        }
        if call.get("kind") == "model":
            reply = call.get("reply") or {}
            self.log.write(
                "execution",
                "agent_model_called",
                **common,
                model=call.get("model"),
                tool_calls=[c.get("name") for c in reply.get("tool_calls") or ()],
                input_tokens=call.get("input_tokens", 0),
                output_tokens=call.get("output_tokens", 0),
                cost_usd=call.get("cost_usd", 0.0),
            )
        else:
            self.log.write(
                "execution",
                "agent_tool_called",
                **common,
                key=call.get("key"),
                tool=call.get("tool"),
                args=call.get("args"),
                error=call.get("error"),
            )

    def replanned(self, run: RunView, decision: Mapping[str, Any]) -> None:
        self.log.write("replanning", "decision", run_id=run.run_id, **decision)

    def close(self) -> None:
        self.log.close()


def _duration(call: Mapping[str, Any]) -> float | None:
    started, finished = call.get("started_at"), call.get("finished_at")
    if isinstance(started, int | float) and isinstance(finished, int | float):
        return round(finished - started, 6)
    return None


def _no_clock() -> float:
    return 0.0


def _run_clock(run: Any) -> float:
    """Where the run's events count `t` from (reset when its first round starts)."""
    return float(run.started)


_PLAIN = frozenset({str, int, bool, type(None), orjson.Fragment})
_REDACTED_BYTES = REDACTED.encode()

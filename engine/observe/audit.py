"""The audit log: one JSON line per thing that happened in a run, secrets redacted.

Written to `$PLANFILE_HOME/audit/<run_id>.jsonl` (and/or `--audit FILE`): the plan, each
phase (planning, execution, replanning), each step with status, model, tokens, cost and
error, and replans as diffs. Every line passes through redaction: API keys from the
config and the environment never reach the file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from engine.store.home import data_home

from engine.run.events import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from engine.run.result import jsonable

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
    """Appends redacted JSON lines to one or more files; usable as an event listener."""

    def __init__(self, paths: Iterable[Path], secrets: Iterable[str] = ()):
        self.paths = list(paths)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._lock = threading.Lock()
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_run(
        cls, run_id: str, extra: Path | None = None, secrets: Iterable[str] = ()
    ) -> AuditLog:
        paths = [data_home() / "audit" / f"{run_id}.jsonl"]
        if extra is not None:
            paths.append(extra)
        return cls(paths, secrets)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def write(self, phase: str, kind: str, **data: Any) -> None:
        line = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "phase": phase,
            "event": kind,
            **{k: jsonable(v) for k, v in data.items()},
        }
        text = self.redact(json.dumps(line, ensure_ascii=False, default=str)) + "\n"
        with self._lock:
            for path in self.paths:
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(text)

    def __call__(self, event: Event) -> None:
        """Run events -> execution-phase lines (results stay in the journal, not here)."""
        if isinstance(event, _AUDITED):
            data = {
                f.name: getattr(event, f.name) for f in fields(event) if f.name not in _LEFT_OUT
            }
            self.write("execution", event.kind, **data)


_AUDITED = (
    RunStarted,
    StepStarted,
    StepRetrying,
    StepSucceeded,
    StepFailed,
    StepSkipped,
    RunFinished,
)
_LEFT_OUT = frozenset({"t", "output", "outputs"})

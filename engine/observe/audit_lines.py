"""How the audit log's lines are encoded: one compiled encoder per audited event type,
and the general path (any values) that writes the same line.

Apart from engine/observe/audit.py (the log's buffer, files and run hook) because this
is the per-step hot path, with its own test of equivalence (tests/test_audit_lines.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import orjson

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

_LEFT_OUT = frozenset({"t", "output", "outputs"})


def encoder(event_type: type[Event]) -> Callable[[Any, str], bytes]:
    """How one event type becomes a line (bytes), compiled once per type.

    The fast path is one dict display of the event's fields, encoded by orjson: building
    the line field by field in Python cost twice as much, two lines a step. A
    float field that is not finite (orjson would write NaN as null), a value orjson
    cannot encode, or an integer beyond 64 bits takes `_careful`, as `write` does.
    Field names are the dataclass's own (identifiers), so the source below is safe.
    """
    names = [f.name for f in fields(event_type) if f.name not in _LEFT_OUT]
    kind = _kind_of(event_type)
    # The annotations are text (`from __future__ import annotations` in events.py).
    floats = [f.name for f in fields(event_type) if f.name in names and f.type in ("float", float)]
    items = "".join(f", {name!r}: e.{name}" for name in names)
    line = f"{{'ts': ts, 'phase': 'execution', 'event': {kind!r}{items}}}"
    # One finiteness test for all float fields: a sum of finite floats is finite unless
    # it overflows, and then `_careful` tests each field.
    finite = f"_isfinite({' + '.join(f'e.{name}' for name in floats)})" if floats else "True"
    source = (
        "def encode(e, ts):\n"
        "    try:\n"
        f"        if {finite}:\n"
        f"            return _dumps({line}, default=_jsonable, option=_NEWLINE)\n"
        "    except TypeError:  # orjson's JSONEncodeError is one\n"
        "        pass\n"
        f"    return _careful({line})\n"
    )
    namespace: dict[str, Any] = {
        "_isfinite": math.isfinite,
        "_dumps": orjson.dumps,
        "_jsonable": jsonable,
        "_NEWLINE": orjson.OPT_APPEND_NEWLINE,
        "_careful": _careful,
    }
    exec(compile(source, f"<audit line of {event_type.__name__}>", "exec"), namespace)
    encode: Callable[[Any, str], bytes] = namespace["encode"]
    return encode


def _careful(line: dict[str, Any]) -> bytes:
    """A line whose values may not be plain JSON: each made JSON-safe (`jsonable` writes
    non-finite floats as "inf"/"nan"), then encoded."""
    return encode_line({key: jsonable(value) for key, value in line.items()})


def encode_line(line: dict[str, Any]) -> bytes:
    """One line as JSON bytes ending in a newline.

    orjson first; `default` sees only what it cannot encode itself (sets, models, ...).
    What it refuses (integers beyond 64 bits, lone surrogates) is encoded value by value,
    with `json` where needed (escaping what UTF-8 cannot hold), and joined as pre-encoded
    fragments (an `orjson.Fragment`, the plan's JSON, stays as it is).
    """
    try:
        return orjson.dumps(line, default=jsonable, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        pass
    parts: dict[str, Any] = {}
    for key, value in line.items():
        if isinstance(value, orjson.Fragment):
            parts[key] = value
            continue
        try:
            parts[key] = orjson.Fragment(orjson.dumps(value, default=jsonable))
        except orjson.JSONEncodeError:
            plain = jsonable(value)
            encoded = json.dumps(plain, ensure_ascii=False, default=str)
            try:
                parts[key] = orjson.Fragment(encoded.encode())
            except UnicodeEncodeError:  # a lone surrogate (a tool's error text): escaped
                parts[key] = orjson.Fragment(json.dumps(plain, default=str).encode())
    return orjson.dumps(parts, option=orjson.OPT_APPEND_NEWLINE)


def _kind_of(event_type: type[Event]) -> str:
    """An event type's `kind` (a property of its instances), from a bare instance."""
    return event_type.__new__(event_type).kind


# The audited events, each with its line's encoder (compiled once, not per event).
ENCODERS: dict[type, Callable[[Any, str], bytes]] = {
    cls: encoder(cls)
    for cls in (
        RunStarted,
        StepStarted,
        StepRetrying,
        StepSucceeded,
        StepFailed,
        StepSkipped,
        RunFinished,
    )
}
# Written as they are by `write` (a Fragment: JSON encoded already, the plan's).

"""Lossless coercion of model-written JSON values to declared types, and durations.

Models write numbers as strings (`"1000"`), booleans as text (`"true"`) and lists as
JSON text (`'["a", "b"]'`). Where the text converts to the declared type without losing
anything, the JSON loader converts it and records a note; where it would lose
information (`"2.5"` for an `int`, `"abc"` for a `float`) the value is left alone so the
checker reports a located type error. The `.plan` language never coerces.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .parser import parse_duration
from .types import Type

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_BOOLS = {"true": True, "false": False}
_UNIT_WORDS = {
    "ms": "ms",
    "msec": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
}

NOT_COERCED = object()
"""`coerce` found no lossless conversion: the value stays as written."""


def coerce(value: Any, target: Type) -> Any:
    """`value` converted to `target` without loss, or NOT_COERCED.

    Only text and whole-number floats are converted: text to `int`/`float`/`bool`, JSON
    text to `list`/`dict`/record, `5.0` to `int`, numbers and booleans to `str`.
    """
    kind = target.kind
    if isinstance(value, str) and value.strip() != value:
        value = value.strip() if kind != "str" else value
    if kind == "int":
        if isinstance(value, str) and _INT.fullmatch(value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "float":
        if isinstance(value, str) and _FLOAT.fullmatch(value):
            number = float(value)
            return number if math.isfinite(number) else NOT_COERCED
    elif kind == "bool":
        if isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
    elif kind == "str":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return json.dumps(value)
    elif kind in ("list", "dict", "record") and isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return NOT_COERCED
        wanted = list if kind == "list" else dict
        if isinstance(parsed, wanted):
            return parsed
    return NOT_COERCED


def describe(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def duration_seconds(value: Any, unit: str) -> float | None:
    """A duration a model wrote -> seconds: a number in `unit` ("ms" or "s"), numeric
    text, or text with a unit (`"30s"`, `"1500 ms"`, `"2 minutes"`); None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return value / 1000 if unit == "ms" else float(value)
        except OverflowError:  # an int past float range: longer than any timeout allows
            return math.inf
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if _FLOAT.fullmatch(text):
        return duration_seconds(float(text), unit)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text)
    if not match or match.group(2) not in _UNIT_WORDS:
        return None
    return parse_duration(match.group(1) + _UNIT_WORDS[match.group(2)])

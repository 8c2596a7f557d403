"""Strict JSON, and an input's value from its text: the one reader for values a user wrote.

`json.loads` also accepts `NaN`, `Infinity` and numbers past a float's range (as
infinity); none of those is JSON, and each would later print as a string or compare
wrongly. `strict_json` refuses them (`NotJSONNumber`). `typed_input` reads an input's
raw text (`--input k=v`, a CSV cell) the way the plan declares it: text as is for a
`str` input, JSON for the rest.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import Type


class NotJSONNumber(ValueError):
    """`NaN`/`Infinity`, or a number too large for a float: not a JSON number."""


def _reject_constant(name: str) -> Any:
    raise NotJSONNumber(f"`{name}` is not a JSON number; use a finite number or null")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (math.inf, -math.inf):  # 1e400: json.loads would make it infinity
        raise NotJSONNumber(f"`{text:.40}` is too large for a number; use a finite number")
    return number


def strict_json(text: str | bytes) -> Any:
    """JSON text as a value, refusing what is not JSON.

    Raises `json.JSONDecodeError` (not JSON, located), `NotJSONNumber`, `RecursionError`
    (nested too deeply), or `ValueError` (an integer past Python's 4,300-digit limit).
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def typed_input(raw: str, declared: Type | None) -> Any:
    """An input's value from its text: as is for a `str` input, else JSON (strictly).

    Text that is not JSON stays text: the input's type check then reports the mismatch
    against the declared type. Raises as `strict_json` for JSON that is not a value.
    """
    if declared is not None and declared.kind == "str":
        return raw
    try:
        return strict_json(raw)
    except json.JSONDecodeError:
        return raw

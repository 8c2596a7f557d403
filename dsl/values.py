"""Walking nested plan values (lists and dicts of any depth) without recursion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def walk(value: Any) -> Iterator[Any]:
    """Every value inside `value`, itself included: containers, then what they hold.

    Iterative, because plan values may nest deeper than Python's recursion limit
    (model-written JSON, and `--input` values, are bounded only later)."""
    stack = [value]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, list | tuple):
            stack.extend(current)
        elif isinstance(current, dict):
            stack.extend(current.values())

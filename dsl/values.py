"""Walking nested plan values (lists and dicts of any depth) without recursion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def walk(value: Any) -> Iterator[Any]:
    """Every value inside `value`, itself included: containers, then what they hold, in
    document order (depth first, items and dict values in the order written).

    Iterative, because plan values may nest deeper than Python's recursion limit
    (model-written JSON, and `--input` values, are bounded only later)."""
    stack = [value]
    while stack:
        current = stack.pop()
        yield current
        # Pushed last-first, so the first item is the next one popped.
        if isinstance(current, list | tuple):
            stack.extend(reversed(current))
        elif isinstance(current, dict):
            stack.extend(reversed(current.values()))

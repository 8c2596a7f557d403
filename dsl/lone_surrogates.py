"""Finding text that cannot be written as UTF-8: a lone surrogate (`"\\ud800"` in JSON or
a `.plan` string) parses into a Python str, but the journal, the audit log and `--json`
cannot encode it. A plan holding one is refused with the JSON path of the value, not
left to fail as an internal error when the run starts writing.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import Diagnostic, Location, Path, PlanError

# A `\uD800`-`\uDFFF` escape in JSON text: the only way a strictly decoded file can hold
# a surrogate. Escaped pairs (emoji) match too; the walk then decides.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
HINT = "a lone UTF-16 surrogate is not text; write the character itself, or a valid pair"


def may_hold_surrogates(text: str) -> bool:
    """Whether JSON text has a surrogate escape: a backslash test (memchr, ~5 µs a MB),
    then the regex (~0.3 ms a MB; faster than a two-character substring test)."""
    return "\\" in text and _SURROGATE_ESCAPE.search(text) is not None


def _bad(text: str) -> bool:
    if text.isascii():  # O(1) in CPython
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def surrogate_path(value: Any) -> Path | None:
    """The path of the first str (value or dict key) in a JSON-like value that is not
    valid Unicode text, or None."""
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, current = stack.pop()
        kind = type(current)
        if kind is str:
            if _bad(current):
                return path
        elif kind is dict:
            for key, child in current.items():
                if type(key) is str and _bad(key):
                    return (*path, key)
                stack.append(((*path, key), child))
        elif kind is list or kind is tuple:
            stack.extend(((*path, index), child) for index, child in enumerate(current))
    return None


def surrogate_error(where: Location) -> PlanError:
    """The located error for a value `surrogate_path` found."""
    return PlanError(
        [
            Diagnostic(
                "text holds a lone surrogate (e.g. `\\ud800`), which is not valid Unicode",
                where,
                HINT,
                code="encoding",
            )
        ]
    )

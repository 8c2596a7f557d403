"""The root of planfile's error tree, and located diagnostics for plans and inputs.

Every error planfile raises for something a user, a config file or a model got wrong
is a `PlanfileError`: it carries a message, a `Location` where one exists, a `hint`
where the fix is known, and the `exit_code` the CLI maps it to. `dsl` holds the root
(it imports nothing from `engine`); the engine's phases subclass it in `engine.errors`.

Every problem found in a plan, by the parser, the JSON loader or the checker, is a
`Diagnostic` with a `Location` (line:col in a `.plan` file, or a JSON path). They are
collected and raised together as one `PlanError`, sorted by position, so a user sees
all of a plan's errors in one pass. Bad run inputs are reported the same way, as an
`InputError` pointing at each input's declaration (or at the `--input` flag).
"""

from __future__ import annotations

import contextlib
import difflib
import gc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Literal

Path = tuple[str | int, ...]
Severity = Literal["error", "warning", "note"]  # a note: what a loader changed (repairs, coercions)


# C0 controls, DEL and C1 controls, each shown as its escape (`\x1b`): text a plan or a
# model wrote must not move the cursor, retitle the window or fake lines on a terminal.
# Lone surrogates (a tool's odd text) as theirs (`\ud800`): no stream can encode them.
_CONTROL_ESCAPES: dict[int, str] = {
    code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]
} | {code: f"\\u{code:04x}" for code in range(0xD800, 0xE000)}
_MULTILINE_ESCAPES = {k: v for k, v in _CONTROL_ESCAPES.items() if k not in (0x09, 0x0A)}


def escape_controls(text: str, *, multiline: bool = False) -> str:
    """`text` safe to write to a terminal: control characters escaped (`\x1b`, `\x9b`).

    `multiline` keeps newlines and tabs, for displays meant to span lines."""
    return text.translate(_MULTILINE_ESCAPES if multiline else _CONTROL_ESCAPES)


def json_path(path: Path) -> str:
    """Render a path as `steps[3].depends_on[0]`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif not out:
            out.append(part)
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append(f"[{part!r}]")
    return "".join(out) or "$"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a diagnostic points: a text position, or a JSON path, in a named source."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    end_column: int | None = None
    path: Path | None = None

    def __str__(self) -> str:
        name = self.file or "<plan>"
        if self.line is not None:
            return f"{name}:{self.line}:{self.column or 1}"
        if self.path is not None:
            return f"{name}:{json_path(self.path)}"
        return name

    def sort_key(self) -> tuple[int, int, str]:
        if self.line is not None:
            return (self.line, self.column or 0, "")
        # JSON paths sort by document order of their numeric parts, then lexically.
        return (0, 0, json_path(self.path or ()))


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in a plan: what is wrong, where, and how to fix it when known."""

    message: str
    location: Location = field(default_factory=Location)
    hint: str | None = None
    severity: Severity = "error"
    code: str = "error"
    # The name the problem is about (an input), for a caller that re-locates it (a
    # batch row's field) without reading the message.
    subject: str | None = None

    def render(self, source: str | None = None) -> str:
        head = f"{escape_controls(str(self.location))}: {self.severity}: "
        lines = [head + escape_controls(self.message, multiline=True)]
        loc = self.location
        if source is not None and loc.line is not None:
            # Lines as the parser counts them: "\n" only (splitlines() also breaks at
            # \x0b, \x1c, \u2028, ..., which would show the wrong line).
            text_lines = source.split("\n")
            if 0 < loc.line <= len(text_lines):
                text = text_lines[loc.line - 1].removesuffix("\r").expandtabs(1)
                if len(text) > 200:
                    start = max(0, (loc.column or 1) - 80)
                    text = text[start : start + 200]
                    col = (loc.column or 1) - start
                else:
                    col = loc.column or 1
                width = 1
                if loc.end_column is not None and loc.end_column > (loc.column or 1):
                    width = loc.end_column - (loc.column or 1)
                width = max(1, min(width, len(text) - col + 1 if len(text) >= col else 1))
                # Escaping widens control characters: measure the caret on the shown text.
                before = len(escape_controls(text[: col - 1])) + max(0, col - 1 - len(text))
                width = len(escape_controls(text[col - 1 : col - 1 + width])) or 1
                gutter = f"{loc.line:>5} | "
                lines.append(gutter + escape_controls(text))
                lines.append(" " * (len(gutter) - 2) + "| " + " " * before + "^" * width)
        if self.hint:
            lines.append(f"  hint: {escape_controls(self.hint, multiline=True)}")
        return "\n".join(lines)


class ExitCode(IntEnum):
    """The `planfile` command's exit codes (specs/cli.md)."""

    OK = 0
    FAILED = 1  # the run failed, or a model/provider could not do the job
    INVALID = 2  # the plan, its inputs, the config, a tools file or the command line
    BUDGET = 3  # a budget was exhausted
    INTERRUPTED = 130  # Ctrl-C


class PlanfileError(Exception):
    """Base of every error planfile reports to a user: message, location, hint, exit code.

    Subclasses keep the constructor of the class they replaced (any positional
    arguments, the first one the message), so `raise ConfigError("...")` still works;
    `location` and `hint` are keywords.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.INVALID
    phase: ClassVar[str] = "error"
    # Whether a retry may help (engine.faults.classify reads it): false for all but a few.
    transient: ClassVar[bool] = False

    def __init__(
        self, *args: object, location: Location | None = None, hint: str | None = None
    ) -> None:
        super().__init__(*args)
        self.location = location
        self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__

    def render(self) -> str:
        """One readable report: `where: error: what` and the hint on its own line."""
        where = str(self.location) if self.location is not None else "planfile"
        message = escape_controls(self.message, multiline=True)
        lines = [f"{escape_controls(where)}: error: {message}"]
        if self.hint:
            lines.append(f"  hint: {escape_controls(self.hint, multiline=True)}")
        return "\n".join(lines)


class _DiagnosticsError(PlanfileError):
    """An error made of located diagnostics, all reported together."""

    def __init__(self, diagnostics: Sequence[Diagnostic], source: str | None = None):
        self.diagnostics = sort_diagnostics(diagnostics)
        self.source = source
        errors = [d for d in self.diagnostics if d.severity == "error"]
        first = errors[0] if errors else (self.diagnostics[0] if self.diagnostics else None)
        super().__init__(
            f"{first.location}: {first.message}" if first else f"invalid {self.phase}",
            location=first.location if first else None,
            hint=first.hint if first else None,
        )

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def render(self) -> str:
        return "\n".join(d.render(self.source) for d in self.diagnostics)


class PlanError(_DiagnosticsError):
    """A plan could not be loaded or checked; carries every diagnostic found."""

    phase = "plan"


class ToolError(PlanfileError):
    """A tool refused its arguments or its job (outside the workspace, host not allowed).

    Raised inside a step: the step fails with this message, and so does the run.
    """

    phase = "tool"
    exit_code = ExitCode.FAILED


class InputError(_DiagnosticsError, ValueError):
    """Run inputs do not fit the plan's declared inputs (located at each declaration).

    A `ValueError` too, as it was before the error tree, for callers of the API.
    """

    phase = "input"


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: d.location.sort_key())


# How many `collector_frozen` blocks are open: while one is, objects are frozen and
# `gc_paused` knows it without `gc.get_freeze_count()`, which walks every frozen object
# (a run freezes everything it holds: ~3 ms at 10k steps, per call).
_frozen_blocks = 0


@contextlib.contextmanager
def collector_frozen() -> Iterator[None]:
    """Freeze what exists now (the collector's scans skip it) and unfreeze on the way
    out; `gc_paused` inside leaves the freeze alone."""
    global _frozen_blocks
    gc.freeze()
    _frozen_blocks += 1
    try:
        yield
    finally:
        _frozen_blocks -= 1
        if not _frozen_blocks:
            gc.unfreeze()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building large acyclic structures.

    Parsing and checking allocate many small objects and no reference cycles; the
    collector's generation scans were 40% of the time on 10,000-step plans. On the way
    out what survived (the plan: ~10 objects a step) moves to the oldest generation
    unscanned (`freeze` then `unfreeze` splices the lists), rather than being walked by
    the young collection the next allocation starts (~1.5 µs a step). Skipped when
    something else froze objects: `unfreeze` would release them too.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if not _frozen_blocks and gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest known name, if one is close enough."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None

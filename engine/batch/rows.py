"""Reading a batch's rows (JSONL or CSV): each one located by its line and typed by the plan.

A row is one JSON object per line (`.jsonl`, `.ndjson`) or one CSV record under a header
line (`.csv`); its fields are the plan's inputs. `scan` reads the whole file once before
anything runs: every row is typed with the engine's own input check (`resolve_inputs`),
and a bad one becomes a located diagnostic (`rows.csv:7:3: error: input `salary` must be
`float` ...`), skipped by the batch and counted, never dropped silently. `rows` reads the
file again as runs start, so the batch holds no row it is not running; the file's digest
from the first pass makes a file changed between the passes an error, not a silent mix.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsl.errors import Diagnostic, InputError, Location, PlanfileError
from dsl.strict_json import strict_json, typed_input

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan

# One row may hold this many bytes: a row is a handful of inputs, not a document store;
# a larger one is a located error instead of a memory spike.
MAX_ROW_BYTES = 1 << 20
# Rows reported in full; the rest are counted (a file of 100,000 bad rows is one mistake).
MAX_REPORTED = 50
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class RowsError(PlanfileError):
    """The inputs file as a whole cannot be read (exit 2): missing, no header, changed."""


@dataclass
class Scan:
    """What the first pass found: rows, the bad ones (located), and the file's digest."""

    path: Path
    format: str
    rows: int = 0
    bad: set[int] = field(default_factory=set)  # line numbers of rows that are skipped
    problems: list[Diagnostic] = field(default_factory=list)  # the first MAX_REPORTED
    digest: str = ""

    @property
    def good(self) -> int:
        return self.rows - len(self.bad)


@dataclass(frozen=True, slots=True)
class Record:
    """One row as read: its line, its fields (None when it could not be read) and why."""

    line: int
    values: dict[str, Any] | None
    problem: Diagnostic | None = None
    columns: dict[str, int] | None = None  # CSV: field -> column, to locate type errors


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise RowsError(
            f"--inputs {path}: unknown format `{path.suffix or '(no suffix)'}`",
            hint="give a .jsonl (one JSON object per line) or a .csv file with a header line",
        )
    return fmt


def scan(path: Path, checked: CheckedPlan) -> Scan:
    """Read and type every row now (before anything runs); the bad ones are located."""
    result = Scan(path, file_format(path))
    digest = hashlib.sha256()
    for record in _records(path, result.format, digest, checked):
        result.rows += 1
        problems = [record.problem] if record.problem is not None else []
        if record.values is not None:
            problems = _type_problems(checked, record, str(path))
        if problems:
            result.bad.add(record.line)
            room = MAX_REPORTED - len(result.problems)
            result.problems.extend(problems[: max(room, 0)])
    result.digest = digest.hexdigest()
    return result


def rows(found: Scan, checked: CheckedPlan) -> Iterator[tuple[int, dict[str, Any]]]:
    """The good rows again, as (line, fields), read as they are needed. Raises
    `RowsError` at the end if the file is not the one `scan` read."""
    digest = hashlib.sha256()
    for record in _records(found.path, found.format, digest, checked):
        if record.line not in found.bad and record.values is not None:
            yield record.line, record.values
    if digest.hexdigest() != found.digest:
        raise RowsError(
            f"--inputs {found.path} changed while the batch read it",
            hint="leave the inputs file alone while a batch runs; run the command again "
            "to continue from the rows that finished",
        )


def _type_problems(checked: CheckedPlan, record: Record, file: str) -> list[Diagnostic]:
    """The engine's own input check on one row, each problem moved to the row's field."""
    from engine.api import resolve_inputs

    try:
        resolve_inputs(checked, record.values)
    except InputError as err:
        located = []
        for problem in err.diagnostics:
            name = problem.subject
            column = (record.columns or {}).get(name or "", 1) if record.columns else 1
            where = f"field `{name}` of the row" if name else "the row"
            hint = problem.hint
            if problem.code == "missing-input":  # its hint names the --input flag
                hint = f"add `{name}` to the row" if name else None
            located.append(
                Diagnostic(
                    f"{problem.message} ({where})",
                    Location(file, record.line, column),
                    hint=hint,
                )
            )
        return located
    return []


def _records(path: Path, fmt: str, digest: Any, checked: CheckedPlan) -> Iterator[Record]:
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by the generator's `with`
    except OSError as err:
        raise RowsError(f"--inputs {path}: {err.strerror or err}") from None
    with file:
        lines = _lines(file, digest)
        if fmt == "jsonl":
            yield from _jsonl(lines, str(path))
            return
        for record in _csv(lines, str(path)):
            if record.values is None:
                yield record
            else:
                typed = typed_cells(record.values, checked)
                yield Record(record.line, typed, columns=record.columns)


def _lines(file: Any, digest: Any) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of each line, None for one over MAX_ROW_BYTES; every byte
    is fed to the digest."""
    number = 0
    while True:
        line = file.readline(MAX_ROW_BYTES + 1)
        if not line:
            return
        number += 1
        digest.update(line)
        if len(line) > MAX_ROW_BYTES and not line.endswith(b"\n"):
            # Skip the rest of the over-long line (still digested), then report it.
            while line and not line.endswith(b"\n"):
                line = file.readline(MAX_ROW_BYTES)
                digest.update(line)
            yield number, None
            continue
        yield number, line


def _too_long(file: str, line: int) -> Diagnostic:
    return Diagnostic(
        f"the row is longer than {MAX_ROW_BYTES:,} bytes",
        Location(file, line, 1),
        hint="a row holds a plan's inputs; put large data in a file and pass its name",
    )


def _jsonl(lines: Iterator[tuple[int, bytes | None]], file: str) -> Iterator[Record]:
    for number, raw in lines:
        if raw is None:
            yield Record(number, None, _too_long(file, number))
            continue
        if not raw.strip():
            continue  # a blank line is not a row
        where = Location(file, number, 1)
        try:
            text = raw.decode("utf-8")
            value = strict_json(text)
        except UnicodeDecodeError as err:
            yield Record(number, None, Diagnostic(f"not UTF-8 text: {err.reason}", where))
            continue
        except json.JSONDecodeError as err:
            at = Location(file, number, err.colno)
            yield Record(number, None, Diagnostic(f"invalid JSON: {err.msg}", at))
            continue
        except RecursionError:
            yield Record(number, None, Diagnostic("the row's JSON nests too deeply", where))
            continue
        except ValueError as err:  # NotJSONNumber, or an integer over 4,300 digits
            yield Record(number, None, Diagnostic(f"invalid number: {err}", where))
            continue
        if not isinstance(value, dict):
            yield Record(
                number,
                None,
                Diagnostic(
                    f"a row must be a JSON object of inputs, not a {type(value).__name__}",
                    where,
                    hint='write {"input_name": value, ...} on each line',
                ),
            )
            continue
        columns = {name: text.find(json.dumps(name)) + 1 or 1 for name in value}
        yield Record(number, value, columns=columns)


def _csv(lines: Iterator[tuple[int, bytes | None]], file: str) -> Iterator[Record]:
    current = [0]  # the physical line the csv reader is on
    too_long: list[int] = []  # over-long lines read since the last row: that row is skipped
    # The documented cell limit is the row limit (Python's default is 128 KiB); the
    # setting is process-wide, and only ever raised to this.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW_BYTES))

    def text() -> Iterator[str]:
        for number, raw in lines:
            current[0] = number
            if raw is None:
                # Skip the line (as JSONL does): the reader sees an empty line, and the
                # row it belongs to is reported too long.
                too_long.append(number)
                yield "\n"
                continue
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise RowsError(f"{file}:{number}: not UTF-8 text ({err.reason})") from None

    reader = csv.reader(text(), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise RowsError(f"{file}:{current[0]}: the header line is not valid CSV: {err}") from None
    if header is None:
        return
    if too_long:
        raise RowsError(
            f"{file}:{too_long[0]}: the header line is longer than {MAX_ROW_BYTES:,} bytes"
        )
    names = [name.strip() for name in header]
    duplicate = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if duplicate is not None or any(not n for n in names):
        what = f"column `{duplicate}` twice" if duplicate is not None else "an unnamed column"
        raise RowsError(
            f"{file}:1: the header line names {what}",
            hint="the first line names each column once: the plan's inputs",
        )
    columns = {name: index + 1 for index, name in enumerate(names)}
    start = current[0] + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield Record(start, None, Diagnostic(f"invalid CSV: {err}", Location(file, start, 1)))
            start = current[0] + 1
            continue
        line, start = start, current[0] + 1
        if too_long:
            yield Record(line, None, _too_long(file, line))
            too_long.clear()
            continue
        if not any(cell.strip() for cell in cells):
            continue  # a blank line is not a row
        if len(cells) > len(names):
            yield Record(
                line,
                None,
                Diagnostic(
                    f"the row has {len(cells)} cells, the header names {len(names)} columns",
                    Location(file, line, len(names) + 1),
                ),
            )
            continue
        # An empty cell is an absent input: the plan's default applies (or it is required).
        values = {name: cell for name, cell in zip(names, cells, strict=False) if cell != ""}
        yield Record(line, values, columns=columns)


def typed_cells(values: dict[str, Any], checked: CheckedPlan) -> dict[str, Any]:
    """CSV cells as inputs: text for `str` inputs, JSON for the rest (as `--input` reads
    values); a cell that is not JSON stays text and the input's type check reports it."""
    out: dict[str, Any] = {}
    for name, cell in values.items():
        try:
            out[name] = typed_input(cell, checked.input_types.get(name))
        except (ValueError, RecursionError):  # NaN, 1e999, too deep: the type check says
            out[name] = cell
    return out

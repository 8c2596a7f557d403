"""A batch's results file: one JSON line per finished row, appended as each row ends.

The file is only ever appended to (one `write` per line, unbuffered, so each line is on
disk as its row ends). Each line names its batch and row, so the file itself says which
rows are done: re-running the command reads it back and skips them. A file written by
another batch, or with a line that is not a result, is a clear error, never overwritten.
The one repair: a last line cut short (the process was killed while writing it) is cut
off, with a warning; its row runs again from the journal, at no new cost for its steps.
Only a line that is the start of one of this batch's own result lines, in a file this
batch has written to before, is cut: any other line is an error and the file is left
untouched (it may be the user's). Lines are read at most MAX_LINE_BYTES at a time: a
longer line (or a device such as /dev/full that never ends) is an error, not a memory
blow-up; a result line over that size is written with its outputs left out (they stay in
the journal: `planfile show RUN --json`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engine.errors import UsageError


class ResultsFileError(UsageError):
    """The results file belongs to another batch, is not a results file, or cannot be
    read or written (exit 2)."""


_UNUSABLE_HINT = "give -o a file in a folder you can write to"
MAX_LINE_BYTES = 16 << 20  # a result line holds a run's outputs: bounded, generously
_CUT_ROW = re.compile(rb'"row":(\d+)[,}]')


def _unusable(path: Path, err: OSError) -> ResultsFileError:
    """An OSError on the results file as a user error: the path is the user's choice."""
    return ResultsFileError(f"-o {path}: {err.strerror or err}", hint=_UNUSABLE_HINT)


class ResultsFile:
    """The append-only results file of one batch."""

    def __init__(self, path: Path, batch_id: str):
        self.path = path
        self.batch_id = batch_id
        self._fd: int | None = None
        self._prefix = f'{{"batch":"{batch_id}","row":'.encode()
        self.cut_row: int | None = None  # the row of a cut-short last line that was removed
        self.cut = False  # whether a cut-short last line was removed

    def read_done(self, warn: Callable[[str], None], *, known: bool = False) -> set[int]:
        """The rows the file already holds results for (checking every line).

        `known`: this batch has written rows before (its store says so): only then may a
        cut-short last line be one of its own, and be removed.
        """
        self.check_path()
        try:
            return self._read_done(warn, known)
        except OSError as err:
            raise _unusable(self.path, err) from None

    def check_path(self) -> None:
        """Refuse a folder or a device (/dev/full, /dev/null) as the results file."""
        if str(self.path) in ("", ".") or self.path.is_dir():
            raise ResultsFileError(f"-o {self.path}: is a folder, not a file", hint=_UNUSABLE_HINT)
        with contextlib.suppress(OSError):  # a missing file is created; other errors later
            if not stat.S_ISREG(self.path.stat().st_mode):
                raise ResultsFileError(
                    f"-o {self.path}: not a regular file (a batch reads its results file back "
                    "to continue)",
                    hint=_UNUSABLE_HINT,
                )

    def _read_done(self, warn: Callable[[str], None], known: bool) -> set[int]:
        done: set[int] = set()
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return done
        if not stat.S_ISREG(info.st_mode):  # replaced since check_path: read nothing of it
            raise ResultsFileError(f"-o {self.path}: not a regular file", hint=_UNUSABLE_HINT)
        good_end = 0
        cut: bytes | None = None
        with open(self.path, "rb") as file:
            number = 0
            while line := file.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(line) > MAX_LINE_BYTES:
                    raise ResultsFileError(
                        f"{self.path}:{number}: the line is longer than {MAX_LINE_BYTES:,} "
                        f"bytes: {self.path} is not a results file of `planfile batch`; it "
                        "was not changed",
                        hint="write the results to another file with -o",
                    )
                if not line.endswith(b"\n"):
                    cut = line  # the last line, cut short: handled below
                    break
                good_end += len(line)
                if not line.strip():
                    continue
                row = self._row_of(line, number)
                done.add(row)
        if cut is not None:
            self._remove_cut(cut, number, good_end, known, warn)
        return done

    def _remove_cut(
        self, line: bytes, number: int, good_end: int, known: bool, warn: Callable[[str], None]
    ) -> None:
        """Remove a cut-short last line if it can only be the start of this batch's own
        result line; else refuse, leaving the file as it is."""
        ours = line.startswith(self._prefix) or self._prefix.startswith(line)
        if not (known and ours):
            raise ResultsFileError(
                f"{self.path}:{number}: not a batch result line (it does not end with a "
                f"newline, and is not the start of a result of this batch): {self.path} "
                "is not a results file of this batch, or was edited; it was not changed",
                hint="write the results to another file with -o (planfile never overwrites it)",
            )
        found = _CUT_ROW.search(line[: len(self._prefix) + 24])
        self.cut_row = int(found.group(1)) if found else None
        self.cut = True
        with open(self.path, "r+b") as file:
            file.truncate(good_end)
        which = f"row {self.cut_row}'s" if self.cut_row is not None else "its row's"
        warn(
            f"warning: {self.path}:{number}: the last line was cut short (the batch was "
            f"killed while writing it); removed it: {which} run is continued from its journal"
        )

    def _row_of(self, line: bytes, number: int) -> int:
        where = f"{self.path}:{number}"
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("row"), int):
            raise ResultsFileError(
                f"{where}: not a batch result line: {self.path} is not a results file of "
                "`planfile batch`, or was edited",
                hint="write the results to another file with -o (planfile never overwrites it)",
            )
        if doc.get("batch") != self.batch_id:
            raise ResultsFileError(
                f"{where}: the results file holds results of batch {doc.get('batch')!s:.40}, "
                f"not of this one ({self.batch_id}: another plan, inputs file or results file)",
                hint=f"write to another file with -o, or continue that batch with "
                f"`planfile batch --resume {doc.get('batch')!s:.40}`",
            )
        return int(doc["row"])

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise _unusable(self.path, err) from None

    def write(self, record: dict[str, Any]) -> None:
        """Append one result line: one `write` call, so a reader never sees half of it."""
        if self._fd is None:
            self.open()
        assert self._fd is not None
        data = _line(record)
        if len(data) > MAX_LINE_BYTES:  # a line the batch could not read back: outputs out
            size = len(data)
            record = {
                **record,
                "outputs": {},
                "outputs_omitted": f"{size:,} bytes, over {MAX_LINE_BYTES:,}: "
                f"`planfile show {record.get('run_id')} --json` has them",
            }
            data = _line(record)
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a short write (a full disk, a signal): the rest
                written += os.write(self._fd, data[written:])
        except OSError as err:  # a full disk, a quota: the batch stops, resumable
            raise _unusable(self.path, err) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _line(record: dict[str, Any]) -> bytes:
    """One result line; compact either way, so every line starts `{"batch":"ID","row":`."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # what orjson refuses (integers beyond 64 bits): the stdlib
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

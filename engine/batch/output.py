"""A batch's results file: one JSON line per finished row, appended as each row ends.

The file is only ever appended to (one `write` per line, unbuffered, so each line is on
disk as its row ends). Each line names its batch and row, so the file itself says which
rows are done: re-running the command reads it back and skips them. A file written by
another batch, or with a line that is not a result, is a clear error, never overwritten.
The one repair: a last line cut short (the process was killed while writing it) is cut
off, with a warning; its row runs again from the journal, at no new cost for its steps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engine.errors import UsageError


class ResultsFileError(UsageError):
    """The results file belongs to another batch, is not a results file, or cannot be
    read or written (exit 2)."""


_UNUSABLE_HINT = "give -o a file in a folder you can write to"


def _unusable(path: Path, err: OSError) -> ResultsFileError:
    """An OSError on the results file as a user error: the path is the user's choice."""
    return ResultsFileError(f"-o {path}: {err.strerror or err}", hint=_UNUSABLE_HINT)


class ResultsFile:
    """The append-only results file of one batch."""

    def __init__(self, path: Path, batch_id: str):
        self.path = path
        self.batch_id = batch_id
        self._fd: int | None = None

    def read_done(self, warn: Callable[[str], None]) -> set[int]:
        """The rows the file already holds results for (checking every line)."""
        try:
            return self._read_done(warn)
        except OSError as err:
            raise _unusable(self.path, err) from None

    def _read_done(self, warn: Callable[[str], None]) -> set[int]:
        done: set[int] = set()
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return done
        good_end = 0
        with open(self.path, "rb") as file:
            for number, line in enumerate(file, start=1):
                if not line.endswith(b"\n"):
                    break  # a last line cut short: handled below
                good_end += len(line)
                if not line.strip():
                    continue
                row = self._row_of(line, number)
                done.add(row)
        if good_end < size:
            with open(self.path, "r+b") as file:
                file.truncate(good_end)
            warn(
                f"warning: {self.path}: the last line was cut short (the batch was killed "
                "while writing it); removed it: its row is run again from its journal"
            )
        return done

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
        try:
            data = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # what orjson refuses (integers beyond 64 bits): the stdlib
            data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
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

"""Reading a user-named file without trusting its size: at most `limit` bytes, never endless.

`Path.read_bytes()` on `/dev/zero`, a FIFO or a huge file reads until memory runs out;
every file a user names (plans, config, ...) goes through `read_bounded` instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileTooLarge(Exception):
    """The file holds more than `limit` bytes (`size` is known for regular files only)."""

    def __init__(self, limit: int, size: int | None) -> None:
        self.limit = limit
        self.size = size
        super().__init__(f"more than {limit:,} bytes")


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of `path` if it holds at most `limit`; raise FileTooLarge or OSError.

    Reads at most limit + 1 bytes, so devices and pipes that never end stop at the limit."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
        if len(data) <= limit:
            return data
        size: int | None = None
        try:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode):
                size = info.st_size
        except OSError:
            pass
    raise FileTooLarge(limit, size)

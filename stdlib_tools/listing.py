"""`list_files` globbing: a bounded walk of the workspace, matched segment by segment.

`pathlib.Path.glob("**/**/**/...")` revisits the tree once per `**` combination, which is
exponential in the pattern, and follows symlinked folders. This walk visits each entry
once (never following a symlink), stops at an entry limit and at a deadline (the tool
runs in a thread the step's timeout cannot stop, so it must stop itself), and matches
each path against the pattern with a dynamic program over segments, so a pattern costs
at most segments x path depth per file.
"""

from __future__ import annotations

import os
import re
import time
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from .workspace import WorkspaceError

MAX_PATTERN_CHARS = 1_000
MAX_PATTERN_SEGMENTS = 32
MAX_VISITED = 200_000


def pattern_segments(pattern: str) -> tuple[str, ...]:
    """The segments of a workspace glob; consecutive `**` collapse into one."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise WorkspaceError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    text = pattern.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise WorkspaceError(f"`{pattern}`: patterns stay inside the workspace")
    segments: list[str] = []
    for part in PurePosixPath(text).parts:
        if part == "..":
            raise WorkspaceError(f"`{pattern}`: patterns stay inside the workspace")
        if part == "." or (part == "**" and segments and segments[-1] == "**"):
            continue
        segments.append(part)
    if not segments:
        raise WorkspaceError("empty pattern")
    if len(segments) > MAX_PATTERN_SEGMENTS:
        raise WorkspaceError(f"pattern has more than {MAX_PATTERN_SEGMENTS} segments")
    return tuple(segments)


def matches(segments: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether path `parts` match glob `segments` (`**` = zero or more folders)."""
    # reachable[i]: the pattern's first i segments can match the parts consumed so far.
    reachable = [False] * (len(segments) + 1)
    reachable[0] = True
    for i, segment in enumerate(segments):
        if segment == "**" and reachable[i]:
            reachable[i + 1] = True
    for part in parts:
        following = [False] * (len(segments) + 1)
        for i, segment in enumerate(segments):
            if not reachable[i]:
                continue
            if segment == "**":
                following[i] = True  # `**` absorbs this folder too
            elif fnmatchcase(part, segment):
                following[i + 1] = True
        for i, segment in enumerate(segments):
            if segment == "**" and following[i]:
                following[i + 1] = True
        reachable = following
        if not any(reachable):
            return False
    return reachable[-1]


def list_matching(root: Path, pattern: str, limit: int, deadline: float) -> list[str]:
    """Regular files under `root` matching `pattern`, sorted; at most `limit` of them.

    Symlinks (to files or folders) are never followed or listed; past `deadline`
    (a `time.monotonic()` instant) or MAX_VISITED entries the walk stops with an error.
    """
    segments = pattern_segments(pattern)
    deep = "**" in segments
    found: list[str] = []
    visited = 0
    stack: list[tuple[str, tuple[str, ...]]] = [(str(root.resolve()), ())]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            visited += 1
            if visited % 256 == 0 and time.monotonic() > deadline:
                raise TimeoutError(
                    f"list_files stopped after its time limit ({visited} entries seen); "
                    "use a narrower pattern"
                )
            if visited > MAX_VISITED:
                raise WorkspaceError(
                    f"list_files visits at most {MAX_VISITED:,} entries; use a narrower pattern"
                )
            parts = (*prefix, entry.name)
            if entry.is_dir(follow_symlinks=False):
                if deep or len(parts) < len(segments):
                    stack.append((entry.path, parts))
            elif entry.is_file(follow_symlinks=False) and matches(segments, parts):
                found.append("/".join(parts))
    found.sort()
    return found[:limit]

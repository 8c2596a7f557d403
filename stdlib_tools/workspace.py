"""Workspace confinement for the file tools: every path stays inside one root folder.

Absolute paths, `..` components and symlinks that lead out of the root are refused,
because plans (and the models that write them) are untrusted.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


class WorkspaceError(PermissionError):
    """A path would leave the workspace, or is otherwise not allowed."""


def confine(root: Path, relative: str) -> Path:
    """Resolve `relative` inside `root`; raise WorkspaceError if it would leave it."""
    if not relative or "\x00" in relative:
        raise WorkspaceError("empty or invalid path")
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute():
        raise WorkspaceError(
            f"`{relative}`: absolute paths are not allowed; use a path in the workspace"
        )
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if ".." in parts:
        raise WorkspaceError(f"`{relative}`: `..` is not allowed; paths stay inside the workspace")
    base = root.resolve()
    target = (base / Path(*parts)).resolve()  # follows symlinks
    if target != base and base not in target.parents:
        raise WorkspaceError(f"`{relative}` leads outside the workspace (through a symlink)")
    return target

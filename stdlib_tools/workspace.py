"""Workspace confinement for the file tools: every path stays inside one root folder.

Plans (and the models that write them) are untrusted, so paths are checked as text
(no absolute paths, no `..`) and then opened one component at a time with `O_NOFOLLOW`
relative to the folder above (`dir_fd`): no symlink is followed anywhere on the path,
and a symlink swapped in between a check and an open cannot redirect the open. Only the
workspace root itself, which the user chose, is resolved.

Writes go to a temp file created exclusively (`O_CREAT | O_EXCL`) under a unique name in
the target folder, then `os.replace` it over the target: a reader never sees half a file,
and concurrent writers to one path end with one complete file (the last one wins).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from dsl.errors import ToolError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class WorkspaceError(ToolError, PermissionError):
    """A path would leave the workspace, or is otherwise not allowed."""


def split_path(relative: str) -> tuple[str, ...]:
    """The components of a workspace path; raise WorkspaceError for ones that leave it."""
    if not relative or "\x00" in relative:
        raise WorkspaceError("empty or invalid path")
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute():
        raise WorkspaceError(
            f"`{relative}`: absolute paths are not allowed; use a path in the workspace"
        )
    parts = tuple(p for p in PurePosixPath(relative.replace("\\", "/")).parts if p != ".")
    if ".." in parts:
        raise WorkspaceError(f"`{relative}`: `..` is not allowed; paths stay inside the workspace")
    if not parts:
        raise WorkspaceError(f"`{relative}` names the workspace itself, not a file")
    return parts


def _symlink_error(relative: str, part: str) -> WorkspaceError:
    return WorkspaceError(
        f"`{relative}`: `{part}` is a symlink; file tools do not follow symlinks "
        "(one could lead outside the workspace)"
    )


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def open_folder(root: Path, relative: str, folders: tuple[str, ...], create: bool) -> Iterator[int]:
    """A descriptor of the folder `folders` under `root`, walked without following links."""
    fd = os.open(root.resolve(), os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in folders:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
            try:
                child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(part, fd):
                    raise _symlink_error(relative, part) from None
                if err.errno == errno.ENOENT:
                    raise FileNotFoundError(
                        f"`{relative}`: folder `{part}` does not exist"
                    ) from None
                if err.errno == errno.ENOTDIR:
                    raise NotADirectoryError(f"`{relative}`: `{part}` is not a folder") from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def read_bytes(root: Path, relative: str, limit: int) -> bytes:
    """The bytes of a regular file in the workspace, at most `limit` of them."""
    parts = split_path(relative)
    with open_folder(root, relative, parts[:-1], create=False) as folder:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=folder)
        except OSError as err:
            if err.errno == errno.ELOOP or _is_symlink(parts[-1], folder):
                raise _symlink_error(relative, parts[-1]) from None
            if err.errno == errno.ENOENT:
                raise FileNotFoundError(f"`{relative}` is not a file in the workspace") from None
            raise
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise FileNotFoundError(f"`{relative}` is not a file in the workspace")
            if info.st_size > limit:
                raise ValueError(f"`{relative}` is {info.st_size} bytes; the limit is {limit}")
            return handle.read(limit + 1)[:limit]


def write_bytes(root: Path, relative: str, data: bytes) -> None:
    """Write a file atomically: a unique exclusive temp file, then `os.replace`."""
    parts = split_path(relative)
    name = parts[-1]
    with open_folder(root, relative, parts[:-1], create=True) as folder:
        try:
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise _symlink_error(relative, name)
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(f"`{relative}` is a folder")
        temp = f".{name[:200]}.{secrets.token_hex(8)}.planfile-tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        fd = os.open(temp, flags, 0o644, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder)
            raise

"""Opening planfile's SQLite files (journal, ledger, caches): WAL mode, corruption checked.

Every store is checked when it is opened, before a run spends anything: a file that is
empty, is not SQLite, or fails `PRAGMA quick_check` is a `CorruptStore` naming the file
and what to do. A 0-byte file is never taken for a new, empty store: new files are
created complete (header written, WAL mode set) under a temporary name and linked into
place, so another process can never see a half-made one. The journal and the ledger
refuse a broken file (they hold what was run and what was spent); caches hold nothing
that costs money, so `open_store(..., rebuild=True)` moves a broken one aside and starts
a new one, with a warning.

Several processes may open one file at the same instant (two `planfile run`s on a new
`PLANFILE_HOME`). SQLite then answers "database is locked" to the switch to WAL at
once, without calling the busy handler, so the switch is retried here until the lock
timeout, like any other wait for a lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from engine.errors import StoreError

SQLITE_HEADER = b"SQLite format 3\x00"
# `PRAGMA quick_check` reads the whole file (about 3.5 ms per MB here): it runs on files
# up to this size; larger ones get the header and schema checks only, and a page found
# broken later is still a `CorruptStore` naming the file.
QUICK_CHECK_MAX_BYTES = 8 << 20


class CorruptStore(StoreError):
    """A store file is empty, not SQLite, or damaged (the message names it and the fix)."""

    detail: str = ""


def _corrupt(
    error: type[StoreError], what: str, path: Path, detail: str, hint: str | None
) -> StoreError:
    err = error(f"{what} {path} is unusable: {detail}", hint=hint or refuse_hint(path))
    err.detail = detail  # type: ignore[attr-defined]
    return err


def refuse_hint(path: Path, holds: str = "runs and spending") -> str:
    """What to do about a broken journal or ledger (they are never replaced silently)."""
    return (
        f"move it aside (mv {path} {path}.broken) to start a new one, or set "
        f"PLANFILE_HOME to use another folder; planfile does not replace it itself, "
        f"because it holds {holds}"
    )


E = TypeVar("E", bound=StoreError)


def store_error(cls: type[E], what: str, path: Path, err: sqlite3.Error, holds: str) -> E:
    """The error for a store's failed SQLite call: a lock held past the timeout (wait),
    or a file that cannot be used (move it aside)."""
    if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
        return cls(
            f"{what} {path} stayed locked by another process: {err}",
            hint="try again when it finishes, or set PLANFILE_HOME to use another folder",
        )
    return cls(f"{what} {path} is unusable: {err}", hint=refuse_hint(path, holds))


def _create(path: Path) -> None:
    """Make a new, complete SQLite file at `path` unless one exists (atomic: linked in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # writes page 1: the header
        finally:
            conn.close()
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs is kept
        except FileExistsError:
            pass
        except OSError:
            # A file system without hard links: a rename, which could replace a file
            # made in the instant since the check above (an empty store either way).
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def check_file(path: Path) -> str | None:
    """What is wrong with an existing store file's header, or None."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot read it ({err.strerror or err})"
    if not head:
        return "the file is empty (0 bytes), not a planfile store"
    if head != SQLITE_HEADER:
        return "the file is not an SQLite database"
    return None


def connect_wal(
    path: Path,
    timeout_s: float = 30.0,
    *,
    check_same_thread: bool = True,
    what: str = "store",
    hint: str | None = None,
    error: type[StoreError] = CorruptStore,
) -> sqlite3.Connection:
    """A checked connection to `path` (created with its folder if missing) in WAL mode.

    A broken file raises `error` (`CorruptStore`, or a store's own subclass of
    `StoreError`); `what` names the store in the message, `hint` says what to do.
    """
    try:
        _create(path)
    except (OSError, sqlite3.Error) as err:
        # A folder that cannot be written (permissions, a full disk): not a broken file,
        # so not a cache to rebuild either.
        cause = getattr(err, "strerror", None) or str(err)
        kind = StoreError if error is CorruptStore else error
        raise kind(
            f"{what} {path} cannot be created: {cause}",
            hint="check the folder's permissions and free space, or set PLANFILE_HOME "
            "to use another folder",
        ) from None
    problem = check_file(path)
    if problem is not None:
        raise _corrupt(error, what, path, problem, hint)
    conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=check_same_thread)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        _check_pages(conn, path)
        return conn
    except sqlite3.DatabaseError as err:
        conn.close()
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            raise
        raise _corrupt(error, what, path, str(err), hint) from None
    except BaseException:
        conn.close()
        raise


def connect_schema(
    path: Path,
    statements: Sequence[str],
    *,
    what: str,
    holds: str,
    error: type[E],
    timeout_s: float = 30.0,
) -> sqlite3.Connection:
    """`connect_wal` for a store shared across threads, with `synchronous=NORMAL` and the
    store's `CREATE ... IF NOT EXISTS` statements committed; any SQLite failure closes the
    connection and raises `error` naming the file and what it holds.

    NORMAL under WAL cannot corrupt a store; a power cut may lose the last commits, and it
    saves an fsync per commit.
    """
    conn = connect_wal(
        path,
        timeout_s,
        check_same_thread=False,
        what=what,
        hint=refuse_hint(path, holds),
        error=error,
    )
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    except sqlite3.Error as err:
        conn.close()
        raise store_error(error, what, path, err, holds) from None
    return conn


def _check_pages(conn: sqlite3.Connection, path: Path) -> None:
    """Read the schema (every store does at once), and quick-check a file of modest size."""
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size <= QUICK_CHECK_MAX_BYTES:
        rows = conn.execute("PRAGMA quick_check(3)").fetchall()
        if rows != [("ok",)]:
            found = "; ".join(str(row[0]) for row in rows)
            raise sqlite3.DatabaseError(f"integrity check failed: {found}")


def open_store(
    path: Path,
    what: str,
    *,
    rebuild: bool = False,
    warn: Callable[[str], None] | None = None,
    timeout_s: float = 30.0,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """`connect_wal`, and for a cache (`rebuild=True`) a broken file moved aside and
    replaced by a new one, with a warning (a cache holds nothing that cost money)."""
    try:
        return connect_wal(path, timeout_s, check_same_thread=check_same_thread, what=what)
    except CorruptStore as err:
        if not rebuild:
            raise
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        message = (
            f"warning: {what} {path} was unusable ({getattr(err, 'detail', err)}); moved it to {aside.name} "
            "and started a new one (it is only a cache: delete the old file when you like)"
        )
        (warn or _stderr)(message)
        return connect_wal(path, timeout_s, check_same_thread=check_same_thread, what=what)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)

"""Run leases: the one process that runs (or resumes) a journaled run owns it.

A lease is a row in the journal's `leases` table: the owner (a token per `Journal`
object), its pid and host, the pid's start time (so a reused pid is not mistaken for
the owner), when it was taken, and when it expires. The owner renews it every
`HEARTBEAT_S` from a thread (its own connection: renewing must not wait behind the
run's writes, nor stall the event loop); it is given back when the run ends.

Taking a lease is a compare-and-swap in one SQLite write transaction, so of two
processes racing to resume one run exactly one gets it; the other gets `RunLeased`,
naming the owner. A lease whose owner is gone can be taken over: on this host, when
its pid no longer runs (or runs another program); anywhere, once it has expired
(`TTL_S` after the last heartbeat: a process that stopped renewing).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from engine.errors import JournalError

TTL_S = 60.0  # a lease not renewed for this long is free to take
HEARTBEAT_S = 10.0  # how often the owner renews it

CREATE = (
    "CREATE TABLE IF NOT EXISTS leases (run_id TEXT PRIMARY KEY, owner TEXT, pid INTEGER, "
    "host TEXT, proc_start TEXT, acquired_at TEXT, heartbeat_at REAL, expires_at REAL)"
)


class RunLeased(JournalError):
    """Another live process owns the run (it is running or resuming it right now).

    The owner's fields (`pid`, `host`, `acquired_at`, `heartbeat_age_s`) let a caller name
    it in its own words (`holder`) without reading the message.
    """

    def __init__(
        self,
        *args: object,
        pid: int = 0,
        host: str = "",
        acquired_at: str = "",
        heartbeat_age_s: float = 0.0,
        hint: str | None = None,
    ) -> None:
        super().__init__(*args, hint=hint)
        self.pid = pid
        self.host = host
        self.acquired_at = acquired_at
        self.heartbeat_age_s = heartbeat_age_s

    @property
    def holder(self) -> str:
        """The owner, as a phrase: `process 123 on host (since ..., last heartbeat 3 s ago)`."""
        return (
            f"process {self.pid} on {self.host} (since {self.acquired_at}, "
            f"last heartbeat {self.heartbeat_age_s:.0f} s ago)"
        )


@dataclass(frozen=True)
class Owner:
    """Who holds a lease."""

    token: str
    pid: int
    host: str
    proc_start: str | None

    @classmethod
    def this_process(cls) -> Owner:
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:12], pid, socket.gethostname(), process_start(pid))


def process_start(pid: int) -> str | None:
    """The process's start time (Linux: clock ticks since boot), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its `)`.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def owner_alive(pid: int, host: str, proc_start: str | None, expires_at: float) -> bool:
    """Whether a lease's owner may still be running its run."""
    if time.time() > expires_at:
        return False
    if host != socket.gethostname():
        return True  # cannot look: trust the lease until it expires
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    started = process_start(pid)
    return proc_start is None or started is None or started == proc_start


def owners_gone(db: sqlite3.Connection, run_ids: list[str]) -> set[str]:
    """Of these runs (journaled as running), the ones no live process owns: their lease
    was given back without an end of run, or its owner died (SIGKILL, a crash, a reboot)."""
    if not run_ids:
        return set()
    try:
        rows = db.execute(
            "SELECT run_id, pid, host, proc_start, expires_at FROM leases "
            f"WHERE run_id IN ({', '.join('?' * len(run_ids))})",
            run_ids,
        ).fetchall()
    except sqlite3.OperationalError:
        rows = []  # a journal no lease was ever taken in (no `leases` table yet)
    alive = {row[0] for row in rows if owner_alive(*row[1:])}
    return set(run_ids) - alive


def acquire(db: sqlite3.Connection, run_id: str, owner: Owner, path: Path) -> str | None:
    """Take the run's lease for `owner` in the caller's transaction (committed by it).

    Returns a note when a dead owner's lease was taken over, else None; raises
    `RunLeased` when a live owner holds it.
    """
    now = time.time()
    db.execute(CREATE)
    row = (run_id, owner.token, owner.pid, owner.host, owner.proc_start, _stamp(), now, now + TTL_S)
    # The INSERT takes the write lock: the read after it sees the final state.
    db.execute(
        "INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO NOTHING", row
    )
    held = db.execute(
        "SELECT owner, pid, host, proc_start, acquired_at, heartbeat_at, expires_at "
        "FROM leases WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    token, pid, host, proc_start, acquired_at, heartbeat_at, expires_at = held
    if token == owner.token:
        db.execute(
            "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE run_id = ?",
            (now, now + TTL_S, run_id),
        )
        return None
    if owner_alive(pid, host, proc_start, expires_at):
        db.rollback()  # end the write transaction the INSERT opened: the lock goes too
        age = max(0.0, now - heartbeat_at)
        raise RunLeased(
            f"run {run_id} is already being run by process {pid} on {host} (since "
            f"{acquired_at}, last heartbeat {age:.0f} s ago); a run has one owner at a time",
            pid=pid,
            host=host,
            acquired_at=acquired_at,
            heartbeat_age_s=age,
            hint=(
                "wait for that process to finish, or stop it. Once it is gone, resume "
                "again: an owner on this host is taken over at once, one on another host "
                f"when its lease in {path} expires ({TTL_S:g} s after its last heartbeat)"
            ),
        )
    db.execute(
        "UPDATE leases SET owner = ?, pid = ?, host = ?, proc_start = ?, acquired_at = ?, "
        "heartbeat_at = ?, expires_at = ? WHERE run_id = ? AND owner = ?",
        (*row[1:], run_id, token),
    )
    reason = "has expired" if now > expires_at else "is no longer running"
    return f"took over run {run_id}: its owner (process {pid} on {host}) {reason}"


def release(db: sqlite3.Connection, run_ids: list[str], owner: Owner) -> None:
    """Give back the owner's leases on these runs (a lease it lost stays with the taker)."""
    db.execute(CREATE)
    db.executemany(
        "DELETE FROM leases WHERE run_id = ? AND owner = ?", [(r, owner.token) for r in run_ids]
    )


class Heartbeat:
    """Renews one owner's leases every `HEARTBEAT_S` from a daemon thread, while it has any."""

    def __init__(self, path: Path, owner: Owner, lock_timeout_s: float):
        self.path = path
        self.owner = owner
        self.lock_timeout_s = lock_timeout_s
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: str) -> None:
        with self._lock:
            self.held.add(run_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="planfile-lease", daemon=True
                )
                self._thread.start()

    def discard(self, run_id: str) -> None:
        with self._lock:
            self.held.discard(run_id)
            if not self.held:
                self._wake.set()  # the thread ends now, not at its next beat

    def _loop(self) -> None:
        while True:
            woken = self._wake.wait(HEARTBEAT_S)
            with self._lock:
                runs = sorted(self.held)
                if not runs:
                    self._thread = None
                    return
                self._wake.clear()
            if not woken:
                self.renew(runs)

    def renew(self, runs: list[str]) -> None:
        now = time.time()
        try:
            conn = sqlite3.connect(self.path, timeout=self.lock_timeout_s)
            try:
                with conn:
                    conn.executemany(
                        "UPDATE leases SET heartbeat_at = ?, expires_at = ? "
                        "WHERE run_id = ? AND owner = ?",
                        [(now, now + TTL_S, r, self.owner.token) for r in runs],
                    )
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # tried again at the next beat; the lease lasts TTL_S meanwhile


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

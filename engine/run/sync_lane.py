"""Sync tool calls off the event loop, cheaper than `loop.run_in_executor`.

`run_in_executor` pays per call for a `concurrent.futures.Future` (with its own
Condition), a work item, an asyncio future chained to it with two callbacks, and one
`call_soon_threadsafe` (a write to the loop's self-pipe) per result. A `SyncLane` keeps
its own worker threads: a call is a tuple on a deque and an asyncio future; finished
calls are handed back in batches, with one wake-up of the loop for every result that
finished while the loop was busy. A call takes the lane's lock twice (once to queue and
count it, once to count it out, decide the delivery and take the next call).

What a hand-off costs here is the wake-ups, not the instructions (README, "Sync tools in
a chain"), so both directions wake the other thread with the GIL released:
- An idle worker waits in `os.read` on the lane's pipe and the loop wakes it with a
  one-byte `os.write`, only when a worker is waiting and none is already on its way
  (a woken worker wakes the next if more calls are queued: a burst of calls costs the
  loop one write, and its GIL is not handed round per call). Python releases the GIL around
  both calls, so a worker woken on the loop's own CPU runs the call at once instead of
  waking only to wait for the GIL and be woken again (a `SimpleQueue` or `Lock` wakes
  it while the loop still holds the GIL: ~5.5 context switches per call, not ~2).
- The loop is woken through the lane's own `eventfd` (Linux; registered once with
  `loop.add_reader`), written by the worker as the last thing before it waits again:
  one 8-byte write and one read, the delivery being the reader's callback itself. The
  loop's self-pipe (`call_soon_threadsafe`, the fallback without eventfd or
  `add_reader`) costs a send, two receives, a handle and one more callback per wake-up
  (~20k instructions per round trip).

Semantics are the pool's: as many threads as the engine's pool allows (`max_workers`),
started when a call finds no idle thread, so blocking tools still run side by side; a
call that times out is abandoned (its thread finishes it, the result is dropped). The
threads are daemon threads: a lane's janitor thread (one while the lane has threads)
ends the threads that had nothing to do for `IDLE_S`, so a lane needs no closing and a
stuck tool never holds up the process's exit. A lane holds its loop weakly: an engine
that runs again and again (`Engine.run_sync`, a new loop each time) keeps no finished
loop alive. Each loop has its own lane (`lane_for`: the runs of one engine in several
threads run on several loops at once); the lane of a closed loop is closed when a new
lane is made for its pool, or by its janitor once idle, and its descriptors are closed
once its last thread has ended (a late result never writes to a reused descriptor).
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

IDLE_S = 2.0  # a worker with nothing to do for this long ends

_Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]
_EVENTFD = hasattr(os, "eventfd")  # Linux (Python 3.10+)


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


class SyncLane:
    """Worker threads running sync calls for one event loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_workers: int):
        self._loop = weakref.ref(loop)
        self.max_workers = max_workers
        # Calls not yet taken by a thread; None tells the thread that takes it to end.
        self._jobs: collections.deque[_Job | None] = collections.deque()
        self._done: collections.deque[tuple[asyncio.Future[Any], bool, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._posted = False  # the loop was woken for results and has not delivered yet
        self._threads = 0  # threads serving calls (not told to end)
        self._alive = 0  # threads not yet ended (told to end or not)
        self._waiting = 0  # threads waiting (or about to wait) for a wake-up byte
        self._rousing = False  # a thread was woken for a call and has not taken one yet
        # Calls submitted and not yet finished (queued or running). A call finds an idle
        # thread exactly when there are more threads than such calls before it.
        self._open = 0
        # The fewest threads waiting since the janitor's last look: that many waited
        # all along, and are ended at its next look.
        self._low = 0
        self._janitor = False
        self._closed = False
        self._gone = threading.Event()  # closed, and no thread left: the janitor ends
        self._wake_r, self._wake_w = os.pipe()  # a byte per waiting thread woken
        fds = [self._wake_r, self._wake_w]
        self._fd = -1  # the eventfd that wakes the loop; -1: call_soon_threadsafe
        if _EVENTFD:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            try:
                loop.add_reader(fd, self._on_wake)
            except (NotImplementedError, RuntimeError, OSError, ValueError):
                os.close(fd)  # a loop without add_reader (Proactor): the self-pipe
            else:
                self._fd = fd
                fds.append(fd)
        # Closed by `close` once no thread is left, or with the lane (a live loop's
        # reader, and every thread, holds the lane).
        self._close_fds = weakref.finalize(self, _close_all, tuple(fds))
        self._close_fds.atexit = False  # daemon threads may still wait on them at exit

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this lane delivers to (None once it is gone)."""
        return self._loop()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `fn(*args)` on a worker thread; the future is resolved on the loop. Called
        on the lane's loop (the lane's own reference: no running-loop lookup per call)."""
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the lane's event loop is gone")
        future = loop.create_future()
        with self._lock:
            self._jobs.append((future, fn, args))
            self._open += 1
            # One thread at a time is woken from here; it wakes the next one itself
            # if more calls are queued (a burst of calls costs the loop one write).
            wake = self._waiting > 0 and not self._rousing
            if wake:
                self._waiting -= 1
                self._rousing = True
                if self._waiting < self._low:
                    self._low = self._waiting
            spawn = self._open > self._threads and self._threads < self.max_workers
            if spawn:
                self._threads += 1
                self._alive += 1
                janitor = not self._janitor
                self._janitor = True
        if wake:
            os.write(self._wake_w, b"\0")  # the GIL is released around the write
        if spawn:
            if janitor:
                threading.Thread(
                    target=self._retire, name="planfile-tool-janitor", daemon=True
                ).start()
            threading.Thread(target=self._work, name="planfile-tool", daemon=True).start()
        return future

    def _work(self) -> None:
        jobs, done, lock = self._jobs, self._done, self._lock
        wake_r, wake_w = self._wake_r, self._wake_w
        post = False  # a call just finished: count it out and maybe wake the loop
        woken = False  # this thread was just woken
        job: _Job | None = None
        while True:
            with lock:
                if post:
                    self._open -= 1
                    post = not self._posted
                    self._posted = True
                if woken:
                    self._rousing = False
                wait = not jobs
                relay = False
                if wait and self._closed:  # the loop is gone: no call will come
                    self._threads -= 1
                    wait = False
                    job = None  # end, as told by an end marker
                elif wait:
                    self._waiting += 1
                else:
                    job = jobs.popleft()
                    relay = bool(jobs) and self._waiting > 0 and not self._rousing
                    if relay:  # more calls are queued: wake the next thread
                        self._waiting -= 1
                        self._rousing = True
                        if self._waiting < self._low:
                            self._low = self._waiting
            if relay:
                os.write(wake_w, b"\0")
            # The loop's wake-up is the last thing before this thread waits again: the
            # loop finds the GIL free when it wakes, rather than waking twice.
            if post:
                if self._fd >= 0:  # not closed while this thread lives (`_end`)
                    os.eventfd_write(self._fd, 1)
                else:
                    self._post()
            woken = wait
            if wait:
                os.read(wake_r, 1)  # a call is queued for a waiting thread, or an end
                post = False
                continue
            if job is None:  # told to end (idle, or the lane is closed)
                self._end()
                return
            future, fn, args = job
            try:
                done.append((future, True, fn(*args)))
            except BaseException as err:  # the caller's to see, as from the pool
                done.append((future, False, err))
            job = None  # nothing of a finished call stays alive in an idle thread
            del future, fn, args
            post = True

    def _end(self) -> None:
        """A thread ends; the last one of a closed lane closes its descriptors (no
        thread is left to write to them or wait on them)."""
        with self._lock:
            self._alive -= 1
            if self._alive == 0:
                self._release_if_done()

    def _retire(self) -> None:
        """The janitor: every `IDLE_S`, end the threads that waited all the time since
        its last look; it ends itself once no thread is left."""
        while True:
            self._gone.wait(IDLE_S)  # a closed lane's janitor ends with its last thread
            with self._lock:
                self._end_waiting(self._waiting if self._closed else self._low)
                self._low = self._waiting
                if self._alive == 0 or self._threads == 0:
                    self._janitor = False  # a new thread starts a new janitor
                    if self._alive == 0:
                        self._release_if_done()
                    return

    def _end_waiting(self, count: int) -> None:
        # Under the lock: `count` waiting threads take an end marker each and end. The
        # descriptors stay open: they are closed only once no thread is alive.
        count = min(count, self._waiting)
        if count > 0:
            self._waiting -= count
            self._low = min(self._low, self._waiting)
            self._threads -= count
            self._jobs.extend([None] * count)
            os.write(self._wake_w, b"\0" * count)

    def _release_if_done(self) -> None:
        # Under the lock, with no thread left: a lane closed, or whose loop is closed or
        # gone (it is closed, not yet replaced: no call will come), frees its descriptors.
        loop = self._loop()
        if self._closed or loop is None or loop.is_closed():
            self._closed = True
            self._done.clear()  # undelivered: their futures would keep the loop alive
            self._release()

    def _release(self) -> None:
        # Under the lock, with no thread left to write to or wait on the descriptors.
        self._fd = -1
        self._close_fds()  # at most once, also for the finaliser
        self._gone.set()

    def close(self) -> None:
        """Called when the lane's loop is closed or gone: drop undelivered results and
        end the waiting threads now; the descriptors are closed now, or by the last
        thread as it ends (one may be running an abandoned call that will still post
        its result)."""
        with self._lock:
            self._closed = True
            self._done.clear()
            self._end_waiting(self._waiting)
            if self._alive == 0:
                self._release()

    def _post(self) -> None:
        """Have the loop deliver the finished calls (its own frame: an idle thread keeps
        no reference to the loop)."""
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits for these results
            self._done.clear()
            with self._lock:
                self._posted = False

    def _on_wake(self) -> None:
        """On the loop, when the eventfd is readable: reset it, then deliver (reset
        first: a result posted after the reset writes again and is seen next time)."""
        try:  # noqa: SIM105 (a `suppress` object per wake-up costs more than this)
            os.eventfd_read(self._fd)
        except BlockingIOError:  # already reset by an earlier wake-up
            pass
        self._deliver()

    def _deliver(self) -> None:
        """On the loop: resolve every call finished so far."""
        # Results appended from now on post another delivery. No lock: a worker appends
        # before it reads the flag, so one that still sees it set appended before this
        # line, and the loop below takes that result (one attribute store is atomic).
        self._posted = False
        done = self._done
        while done:
            future, ok, value = done.popleft()
            if future.cancelled():  # timed out or cancelled: the late result is dropped
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


# The lanes of each engine pool, one per loop (`Engine.run_sync` starts a new loop per
# run, and runs of one engine in several threads run on several loops at once); a lane
# of a closed or gone loop is closed when a new lane is made for its pool (its
# descriptors are closed once its last thread has ended).
_LANES: weakref.WeakKeyDictionary[Executor, list[SyncLane]] = weakref.WeakKeyDictionary()
_LANES_LOCK = threading.Lock()  # loops in several threads look up lanes at once


def lane_for(pool: Executor, loop: asyncio.AbstractEventLoop) -> SyncLane | None:
    """The lane standing in for `pool` on `loop`, or None when `pool` is not a thread
    pool (a caller's own executor is used as it is)."""
    with _LANES_LOCK:
        return _lane_for(pool, loop)


def _lane_for(pool: Executor, loop: asyncio.AbstractEventLoop) -> SyncLane | None:
    lanes = _LANES.get(pool)
    if lanes is not None:
        for lane in lanes:
            if lane.loop is loop:
                return lane
    if type(pool) is not ThreadPoolExecutor:
        return None
    if lanes is None:
        lanes = _LANES[pool] = []
    # A finished run's lane is closed here; the lane of a loop still running in another
    # thread stays (replacing it, rather than keeping one lane per loop, left its
    # descriptors open until its threads idled out: a shared engine run from several
    # threads ran out of descriptors).
    live = []
    for lane in lanes:
        old = lane.loop
        if old is None or old.is_closed():
            lane.close()
        else:
            live.append(lane)
    lane = SyncLane(loop, pool._max_workers)
    live.append(lane)
    lanes[:] = live
    return lane

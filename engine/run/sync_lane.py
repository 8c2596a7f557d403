"""Sync tool calls off the event loop, cheaper than `loop.run_in_executor`.

`run_in_executor` pays per call for a `concurrent.futures.Future` (with its own
Condition), a work item, an asyncio future chained to it with two callbacks, and one
`call_soon_threadsafe` (a write to the loop's self-pipe) per result. A `SyncLane` keeps
its own worker threads fed from one `SimpleQueue`: a call is a tuple put on the queue
and an asyncio future; finished calls are handed back in batches, with one
`call_soon_threadsafe` for every result that finished while the loop was busy. A call
takes the lane's lock twice (once to count it in, once to count it out and decide the
delivery) and makes no system call of its own besides waking a worker and, for a batch,
the loop (a `loop.run_in_executor` chain of no-ops costs ~1.6x the CPU of a lane chain
here; benchmarks/test_user_path.py reports the sync figures against it).

Semantics are the pool's: as many threads as the engine's pool allows (`max_workers`),
started when a call finds no idle thread, so blocking tools still run side by side; a
call that times out is abandoned (its thread finishes it, the result is dropped). The
threads are daemon threads and end after `IDLE_S` without work, so a lane needs no
closing and a stuck tool never holds up the process's exit. A lane holds its loop
weakly: an engine that runs again and again (`Engine.run_sync`, a new loop each time)
keeps no finished loop alive.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

IDLE_S = 2.0  # a worker with nothing to do for this long ends

_Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


class SyncLane:
    """Worker threads running sync calls for one event loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_workers: int):
        self._loop = weakref.ref(loop)
        self.max_workers = max_workers
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._done: collections.deque[tuple[asyncio.Future[Any], bool, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._posted = False  # a `_deliver` is scheduled on the loop and has not started
        self._threads = 0
        # Calls submitted and not yet finished (queued or running). A call finds an idle
        # thread exactly when there are more threads than such calls before it.
        self._open = 0

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
        self._jobs.put((future, fn, args))
        with self._lock:
            self._open += 1
            spawn = self._open > self._threads and self._threads < self.max_workers
            if spawn:
                self._threads += 1
        if spawn:
            threading.Thread(target=self._work, name="planfile-tool", daemon=True).start()
        return future

    def _work(self) -> None:
        jobs, done, lock = self._jobs, self._done, self._lock
        while True:
            try:
                future, fn, args = jobs.get(timeout=IDLE_S)
            except queue.Empty:
                with lock:
                    # A job put after the timeout counted this thread as idle: take it.
                    # (`submit` puts before it counts, so the job is seen here.)
                    if not jobs.empty():
                        continue
                    self._threads -= 1
                    return
            try:
                done.append((future, True, fn(*args)))
            except BaseException as err:  # the caller's to see, as from the pool
                done.append((future, False, err))
            del future, fn, args  # nothing of a finished call stays alive in an idle thread
            with lock:
                self._open -= 1
                post = not self._posted
                self._posted = True
            if post:
                self._post()

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


# One lane per engine pool, for the loop that runs it (`Engine.run_sync` starts a new
# loop per run; a lane of a finished loop is replaced, its threads end when idle).
_LANES: weakref.WeakKeyDictionary[Executor, SyncLane] = weakref.WeakKeyDictionary()


def lane_for(pool: Executor, loop: asyncio.AbstractEventLoop) -> SyncLane | None:
    """The lane standing in for `pool` on `loop`, or None when `pool` is not a thread
    pool (a caller's own executor is used as it is)."""
    lane = _LANES.get(pool)
    if lane is not None and lane.loop is loop:
        return lane
    if type(pool) is not ThreadPoolExecutor:
        return None
    lane = _LANES[pool] = SyncLane(loop, pool._max_workers)
    return lane

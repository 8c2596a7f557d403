"""The event loop of one CLI command, and a process exit that does not wait for stuck threads.

Python cannot stop a thread. A template render stuck in one C call, or a sync tool that
ignores cancellation, keeps its worker thread busy after its step has timed out.
`asyncio.run` would wait for it when it closes the loop, and the interpreter again at
exit (it joins every thread-pool worker), so `planfile run` printed its summary and
returned only when the thread was done: minutes, for a step with `timeout 2s`. Here the
loop's default executor is not waited for, and `exit_now_if_threads_linger` ends the
process once the command is done; the abandoned threads die with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _NoWaitExecutor(concurrent.futures.ThreadPoolExecutor):
    """asyncio's default executor for one command: shutting it down never waits."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(work)` (Ctrl-C handling included), with a default executor
    (`asyncio.to_thread`) that closing the loop does not wait for."""

    async def main() -> T:
        asyncio.get_running_loop().set_default_executor(
            _NoWaitExecutor(thread_name_prefix="planfile-worker")
        )
        return await work

    return asyncio.run(main())


def lingering_threads() -> list[threading.Thread]:
    """Threads the interpreter would wait for at exit (daemon threads it does not)."""
    return [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]


def exit_now_if_threads_linger(code: int) -> None:
    """End the process with `code` now if a worker thread is still busy: the command is
    done (its results journaled, its output printed), so nothing waits for that thread.
    Exit handlers still run; only the interpreter's join of the workers is skipped."""
    if not lingering_threads():
        return
    import atexit

    for stream in (sys.stdout, sys.stderr):
        # A closed pipe or stream: nothing left to say.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)

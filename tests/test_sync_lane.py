"""The lane that runs sync tools off the event loop (engine/run/sync_lane.py): results
and errors reach the caller, blocking calls still run side by side up to the pool's
size, a timed-out call is abandoned, and idle threads end by themselves."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from engine.run import sync_lane
from engine.run.sync_lane import SyncLane, lane_for


def _boom() -> None:
    raise ValueError("from the tool")


def test_results_and_errors_reach_the_caller_off_the_loop_thread() -> None:
    async def main() -> tuple[list[bool], str]:
        lane = SyncLane(asyncio.get_running_loop(), max_workers=4)
        on_loop = [
            await lane.submit(lambda: threading.current_thread() is threading.main_thread())
            for _ in range(3)
        ]
        with pytest.raises(ValueError, match="from the tool") as err:
            await lane.submit(_boom)
        return on_loop, str(err.value)

    on_loop, error = asyncio.run(main())
    assert on_loop == [False, False, False] and error == "from the tool"


def test_many_calls_at_once_all_complete_in_batches() -> None:
    async def main() -> list[int]:
        lane = SyncLane(asyncio.get_running_loop(), max_workers=4)
        return list(await asyncio.gather(*(lane.submit(int, str(i)) for i in range(2000))))

    assert asyncio.run(main()) == list(range(2000))


def test_blocking_calls_run_side_by_side_up_to_the_pool_size() -> None:
    running, most = [0], [0]
    lock = threading.Lock()

    def block() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    async def main() -> float:
        lane = SyncLane(asyncio.get_running_loop(), max_workers=3)
        started = time.perf_counter()
        await asyncio.gather(*(lane.submit(block) for _ in range(6)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    assert most[0] == 3  # never more threads than the pool allows, and all of them used
    assert 0.35 < elapsed < 1.5  # two waves of 0.2 s, not six


def test_a_timed_out_call_is_abandoned_and_its_late_result_dropped() -> None:
    release = threading.Event()

    async def main() -> int:
        lane = SyncLane(asyncio.get_running_loop(), max_workers=2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lane.submit(release.wait, 5), 0.05)
        release.set()  # the abandoned call returns now: nothing may break for it
        await asyncio.sleep(0.05)
        return int(await lane.submit(int, "7"))

    assert asyncio.run(main()) == 7


def test_idle_threads_end_by_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_lane, "IDLE_S", 0.05)

    async def main() -> SyncLane:
        lane = SyncLane(asyncio.get_running_loop(), max_workers=4)
        await asyncio.gather(*(lane.submit(time.sleep, 0.02) for _ in range(4)))
        return lane

    lane = asyncio.run(main())
    deadline = time.monotonic() + 5
    while lane._threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lane._threads == 0


def test_one_lane_per_thread_pool_and_loop_other_executors_used_as_they_are() -> None:
    pool = ThreadPoolExecutor(max_workers=5)

    async def lanes() -> tuple[SyncLane | None, SyncLane | None]:
        loop = asyncio.get_running_loop()
        return lane_for(pool, loop), lane_for(pool, loop)

    first, again = asyncio.run(lanes())
    assert first is not None and first is again and first.max_workers == 5
    second, _ = asyncio.run(lanes())
    assert second is not first  # a new loop (`Engine.run_sync`): a new lane

    async def other() -> SyncLane | None:
        with ProcessPoolExecutor(max_workers=1) as processes:
            return lane_for(processes, asyncio.get_running_loop())

    assert asyncio.run(other()) is None
    pool.shutdown()

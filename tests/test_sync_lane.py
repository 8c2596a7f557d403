"""The lane that runs sync tools off the event loop (engine/run/sync_lane.py): results
and errors reach the caller, blocking calls still run side by side up to the pool's
size, a timed-out call is abandoned, and idle threads end by themselves."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

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


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux-only")
def test_the_descriptors_of_a_finished_loop_are_closed_once_its_last_thread_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_lane, "IDLE_S", 0.05)
    pool = ThreadPoolExecutor(max_workers=2)
    release = threading.Event()

    async def first() -> SyncLane:
        lane = lane_for(pool, asyncio.get_running_loop())
        assert lane is not None and lane._fd >= 0
        assert await lane.submit(int, "3") == 3
        with pytest.raises(TimeoutError):  # a call still running when the loop closes
            await asyncio.wait_for(lane.submit(release.wait, 5), 0.05)
        return lane

    old = asyncio.run(first())
    fd = old._fd

    async def second() -> int:
        lane = lane_for(pool, asyncio.get_running_loop())
        assert lane is not None and lane is not old
        return int(await lane.submit(int, "4"))

    assert asyncio.run(second()) == 4
    # Replaced, but a thread of the old lane still runs the abandoned call: the
    # descriptor stays open for its late wake-up, then closes when the thread ends.
    assert _fd_open(fd) and old._fd == fd
    release.set()
    deadline = time.monotonic() + 5
    while old._fd != -1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert old._fd == -1 and old._alive == 0
    pool.shutdown()


def test_a_loop_without_add_reader_is_woken_through_its_self_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any) -> None:
        raise NotImplementedError  # as a Proactor loop (Windows) does

    loop = asyncio.new_event_loop()
    monkeypatch.setattr(loop, "add_reader", refuse)
    try:

        async def main() -> list[int]:
            lane = SyncLane(asyncio.get_running_loop(), max_workers=3)
            assert lane._fd == -1
            chain = [await lane.submit(int, str(i)) for i in range(50)]
            return chain + list(await asyncio.gather(*(lane.submit(int, "9") for _ in range(50))))

        assert loop.run_until_complete(main()) == list(range(50)) + [9] * 50
    finally:
        loop.close()


def test_threads_no_longer_needed_end_while_calls_still_trickle_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_lane, "IDLE_S", 0.05)

    async def main() -> tuple[int, int]:
        lane = SyncLane(asyncio.get_running_loop(), max_workers=4)
        await asyncio.gather(*(lane.submit(time.sleep, 0.02) for _ in range(4)))
        most = lane._threads
        deadline = time.monotonic() + 5
        while lane._threads > 1 and time.monotonic() < deadline:
            await lane.submit(int, "1")  # one call at a time needs one thread
            await asyncio.sleep(0.01)
        return most, lane._threads

    most, left = asyncio.run(main())
    assert most == 4 and left <= 1


def test_a_burst_of_calls_wakes_every_waiting_thread() -> None:
    """The loop wakes one waiting thread per burst; each woken thread wakes the next
    while calls are queued, so idle threads still run a burst side by side."""

    async def main() -> tuple[int, float]:
        lane = SyncLane(asyncio.get_running_loop(), max_workers=3)
        await asyncio.gather(*(lane.submit(time.sleep, 0.05) for _ in range(3)))
        deadline = time.monotonic() + 5
        while lane._waiting < 3 and time.monotonic() < deadline:  # all three idle
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        await asyncio.gather(*(lane.submit(time.sleep, 0.3) for _ in range(3)))
        return lane._threads, time.perf_counter() - started

    threads, elapsed = asyncio.run(main())
    assert threads == 3 and elapsed < 0.8  # one wave of 0.3 s, not three


def test_one_pool_on_loops_in_several_threads_keeps_a_lane_per_loop() -> None:
    # One engine's `run_sync` from several threads: each running loop keeps its lane
    # (replacing it left its descriptors open until its threads idled out, so a shared
    # engine ran out of descriptors), and a closed loop's lane and its threads end at
    # once, janitor included.
    pool = ThreadPoolExecutor(max_workers=2)
    ready, go = threading.Barrier(2), threading.Event()
    seen: dict[int, tuple[SyncLane, SyncLane | None, int]] = {}

    async def run(k: int) -> None:
        loop = asyncio.get_running_loop()
        first = lane_for(pool, loop)
        assert first is not None
        value = await first.submit(int, str(k))
        ready.wait(5)  # both loops have their lanes now
        go.wait(5)
        seen[k] = (first, lane_for(pool, loop), value)

    threads = [threading.Thread(target=asyncio.run, args=(run(k),)) for k in range(2)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(10)
    assert {k: (a is b, v) for k, (a, b, v) in seen.items()} == {0: (True, 0), 1: (True, 1)}
    old = [lane for lane, _, _ in seen.values()]
    assert old[0] is not old[1]

    async def later() -> None:
        lane_for(pool, asyncio.get_running_loop())

    asyncio.run(later())  # both old loops are closed: their lanes are closed
    deadline = time.monotonic() + 1  # well before the janitor's IDLE_S
    while any(lane._fd != -1 for lane in old) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(lane._fd, lane._alive) for lane in old] == [(-1, 0), (-1, 0)]
    while any(lane._janitor for lane in old) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(lane._janitor for lane in old)
    pool.shutdown()


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux-only")
def test_the_lane_of_a_closed_loop_frees_its_descriptors_once_idle_unreplaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The last run of an engine (or of one of its threads): no new lane replaces it.
    monkeypatch.setattr(sync_lane, "IDLE_S", 0.05)
    pool = ThreadPoolExecutor(max_workers=2)

    async def run() -> tuple[SyncLane, int]:
        lane = lane_for(pool, asyncio.get_running_loop())
        assert lane is not None and lane._fd >= 0
        return lane, int(await lane.submit(int, "5"))

    lane, value = asyncio.run(run())
    assert value == 5
    deadline = time.monotonic() + 5
    while lane._fd != -1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lane._fd == -1 and lane._alive == 0 and not lane._janitor
    pool.shutdown()

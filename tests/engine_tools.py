"""Tools for engine tests: sleeps, failures, flakiness, wrong types, concurrency gauges."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from stdlib_tools import ToolContext, tool


class Gauge:
    """Counts how many calls run at once, and the most ever at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.calls: list[str] = []

    def enter(self, name: str) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.calls.append(name)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


GAUGE = Gauge()
FLAKY: dict[str, int] = {}


@tool
async def sleep(seconds: float, ctx: ToolContext, value: Any = None) -> Any:
    """Sleep, then return `value` (or the seconds)."""
    GAUGE.enter(ctx.step_id)
    try:
        await asyncio.sleep(seconds)
    finally:
        GAUGE.leave()
    return seconds if value is None else value


@tool
def block(seconds: float, ctx: ToolContext) -> float:
    """A sync tool: blocks its thread."""
    GAUGE.enter(ctx.step_id)
    try:
        time.sleep(seconds)
    finally:
        GAUGE.leave()
    return seconds


@tool
def boom(message: str = "boom") -> str:
    """Always raises a RuntimeError (worth retrying)."""
    raise RuntimeError(message)


@tool
def bad_input(message: str = "bad") -> str:
    """Always raises a ValueError (not worth retrying)."""
    raise ValueError(message)


@tool
def flaky(key: str, failures: int) -> str:
    """Fails `failures` times per key, then succeeds."""
    FLAKY[key] = FLAKY.get(key, 0) + 1
    if FLAKY[key] <= failures:
        raise ConnectionError(f"transient failure {FLAKY[key]}")
    return f"ok after {FLAKY[key]}"


@tool
def wrong_type() -> Any:
    """Returns a string whatever the step declares."""
    return "not a number"


@tool
def huge(megabytes: int) -> str:
    """Returns a very large string."""
    return "x" * (megabytes * 1024 * 1024)


@tool
def echo(value: Any) -> Any:
    """Returns its argument."""
    return value


@tool
async def noop() -> None:
    """Does nothing."""


TEST_TOOLS = [sleep, block, boom, bad_input, flaky, wrong_type, huge, echo, noop]

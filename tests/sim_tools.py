"""Sleep-style tools for `planfile bench` validation: each declares the latency it sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

from stdlib_tools import tool


@tool(latency_s=0.05)
async def nap50(x: Any = None) -> int:
    """Sleep 50 ms."""
    await asyncio.sleep(0.05)
    return 1


@tool(latency_s=0.1)
async def nap100(x: Any = None) -> int:
    """Sleep 100 ms."""
    await asyncio.sleep(0.1)
    return 1


@tool(latency_s=0.2)
async def nap200(x: Any = None) -> int:
    """Sleep 200 ms."""
    await asyncio.sleep(0.2)
    return 1


@tool
async def nap(seconds: float, x: Any = None) -> int:
    """Sleep the given seconds (its latency comes from `--latency nap=S`)."""
    await asyncio.sleep(seconds)
    return 1


SIM_TOOLS = [nap50, nap100, nap200, nap]

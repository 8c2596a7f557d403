"""A tool for the crash test: appends its key to a log, so re-executions are countable."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stdlib_tools import ToolContext, tool


@tool
async def tick(key: str, ctx: ToolContext, seconds: float = 0.05) -> str:
    """Record one execution of `key` (with its idempotency key), then wait."""
    log = Path(ctx.settings["workspace_path"]) / "ticks.log"
    with log.open("a") as handle:
        handle.write(f"{key} {ctx.idempotency_key}\n")
    await asyncio.sleep(seconds)
    return key

"""Tools for the agent-step crash tests: one with a countable side effect, one that waits.

Loaded with `--tools` by a `planfile run` subprocess that the test kills mid-loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from stdlib_tools import ToolContext, tool


@tool
def append_line(text: str, ctx: ToolContext) -> str:
    """Append a line to `appended.log` in the workspace (a side effect a resume must not repeat)."""
    log = Path(ctx.settings["workspace_path"]) / "appended.log"
    with log.open("a") as handle:
        handle.write(f"{text} {ctx.idempotency_key}\n")
    return f"appended {text}"


@tool
async def slow(seconds: float, ctx: ToolContext) -> str:
    """Mark `slow.started`, then wait `seconds` (no wait once the test made `fast` exist)."""
    workspace = Path(ctx.settings["workspace_path"])
    (workspace / "slow.started").touch()
    if not (workspace / "fast").exists():
        await asyncio.sleep(seconds)
    return f"waited {seconds:g}s"

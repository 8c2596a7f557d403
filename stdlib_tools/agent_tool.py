"""The `agent` tool: one step's task done by a model that calls tools in a bounded loop.

The loop itself lives in the engine (engine.agent.loop); this module only declares the
plan-facing signature and hands the call to the engine's agent service in
`ctx.services["agent"]` (stdlib_tools must not import engine). The step's declared
type is the agent's final answer: a record or list type gets validated structured
output, anything else a string.
"""

from __future__ import annotations

from typing import Any, Protocol

from dsl.agent_steps import DEFAULT_MAX_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS

from .registry import ToolContext, tool


class AgentService(Protocol):
    """What the `agent` tool needs from the engine (engine.agent.loop implements it)."""

    async def run(
        self,
        ctx: ToolContext,
        task: str,
        *,
        tools: list[str],
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
        max_cost_usd: float | None = None,
    ) -> Any: ...


@tool(uses_model=True, latency_s=6.0)
async def agent(
    task: str,
    ctx: ToolContext,
    tools: list[str],
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    max_cost_usd: float | None = None,
) -> Any:
    """Do a task with a model that calls the listed tools until it has the answer.

    Args:
        task: what the agent must find out or do (a jinja2 template over the step's inputs)
        tools: the names of the tools the agent may call (nothing else is offered)
        max_iterations: the most model calls before the step fails (1-50)
        max_cost_usd: the most this step may spend on model calls, in dollars
    """
    if not MIN_ITERATIONS <= max_iterations <= MAX_ITERATIONS:
        raise ValueError(f"max_iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    if max_cost_usd is not None and max_cost_usd <= 0:
        raise ValueError("max_cost_usd must be more than 0")
    service = ctx.services.get("agent")
    if service is None:
        raise RuntimeError("no agent service: the agent tool runs inside the planfile engine")
    result = await service.run(
        ctx, task, tools=list(tools), max_iterations=max_iterations, max_cost_usd=max_cost_usd
    )
    return result

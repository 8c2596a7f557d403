"""The LLM tools: `llm`, `summarize`, `extract`, all through the engine's model gateway.

A tool never picks its model: the engine resolves the step's tier or model and passes
a gateway in `ctx.services["models"]`. When the step declares a record or list type,
the gateway asks for structured output against that type's JSON schema and validates
the reply (one repair attempt with the validation error).
"""

from __future__ import annotations

from typing import Any, Protocol

from .registry import ToolContext, tool


class ModelGateway(Protocol):
    """What the LLM tools need from the engine (engine.models.gateway implements it)."""

    async def complete(
        self,
        ctx: ToolContext,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        structured: bool = True,
    ) -> Any: ...


def _gateway(ctx: ToolContext) -> ModelGateway:
    gateway = ctx.services.get("models")
    if gateway is None:
        raise RuntimeError(
            "no model gateway: LLM tools run inside the planfile engine (Engine.run)"
        )
    return gateway


@tool(uses_model=True, latency_s=2.0)
async def llm(
    prompt: str,
    ctx: ToolContext,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> Any:
    """Ask a model; a step with a record or list type gets validated structured output.

    Args:
        prompt: the prompt (a jinja2 template over the step's inputs)
        system: an optional system message
        temperature: sampling temperature (0-2)
        max_tokens: the most tokens the reply may have
    """
    if temperature is not None and not 0 <= temperature <= 2:
        raise ValueError("temperature must be between 0 and 2")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    return await _gateway(ctx).complete(
        ctx, prompt, system=system, temperature=temperature, max_tokens=max_tokens
    )


@tool(uses_model=True, latency_s=1.5)
async def summarize(text: str, ctx: ToolContext, words: int = 100) -> str:
    """Summarize text in about the given number of words.

    Args:
        text: the text to summarize
        words: about how long the summary should be
    """
    if not 5 <= words <= 2000:
        raise ValueError("words must be between 5 and 2000")
    prompt = (
        f"Summarize the following text in about {words} words. Keep facts, numbers and "
        f"names exact; add nothing that is not in the text.\n\n{text}"
    )
    result = await _gateway(ctx).complete(
        ctx,
        prompt,
        system="You write faithful, concise summaries.",
        max_tokens=max(64, words * 3),
        structured=False,
    )
    return str(result).strip()


@tool(uses_model=True, latency_s=1.5)
async def extract(text: str, ctx: ToolContext, into: str = "the key facts") -> Any:
    """Extract structured data from text into the step's declared type.

    Args:
        text: the text to read
        into: what to extract, in words (the step's type gives the shape)
    """
    prompt = (
        f"Extract {into} from the text below. Use only what the text says; use null for "
        f"anything it does not say.\n\nText:\n{text}"
    )
    return await _gateway(ctx).complete(
        ctx, prompt, system="You extract data precisely and output only JSON.", temperature=0
    )

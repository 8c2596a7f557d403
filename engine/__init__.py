"""planfile's engine: the Plan IR, graph compile, scheduler, models, CLI.

`from engine import Engine, load_plan` is the embedding API; the heavy parts are
imported on first use so that `planfile check` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api import Engine, load_plan

__all__ = ["Engine", "load_plan"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "load_plan"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")

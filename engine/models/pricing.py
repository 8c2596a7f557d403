"""Per-token prices of models: the config's, else litellm's price table, else 0 (warned)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.models.local_model import PROVIDER
from engine.models.provider import litellm_module


@dataclass(frozen=True)
class Price:
    input_per_token: float
    output_per_token: float
    known: bool

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_per_token + output_tokens * self.output_per_token


class Pricing:
    """Per-token prices: the config's, else litellm's table; unknown models are 0 (warned)."""

    def __init__(self, config: Config):
        self.config = config
        self._cache: dict[str, Price] = {}

    def price(self, model: str) -> Price:
        if model not in self._cache:
            self._cache[model] = self._lookup(model)
        return self._cache[model]

    def _lookup(self, model: str) -> Price:
        settings = self.config.models.get(model)
        if (
            settings
            and settings.input_cost_per_million is not None
            and settings.output_cost_per_million is not None
        ):
            return Price(
                settings.input_cost_per_million / 1e6, settings.output_cost_per_million / 1e6, True
            )
        if model.startswith(PROVIDER + "/"):
            return Price(0.0, 0.0, True)  # the embedded model costs nothing per token
        table = _price_table()
        bare = model.split("/", 1)[1] if "/" in model else model
        for key in (model, bare):
            entry = table.get(key)
            if entry and entry.get("input_cost_per_token") is not None:
                return Price(
                    float(entry.get("input_cost_per_token") or 0.0),
                    float(entry.get("output_cost_per_token") or 0.0),
                    True,
                )
        return Price(0.0, 0.0, False)


def _price_table() -> dict[str, Any]:
    """litellm's price table. planfile always uses the copy litellm ships
    (engine/models/provider.py sets LITELLM_LOCAL_MODEL_COST_MAP), so when litellm is
    not loaded yet the file is read directly: pricing a plan (`planfile bench`) then
    costs milliseconds, not litellm's 1-2 s import."""
    if "litellm" in sys.modules:  # loaded: its table, with any models registered since
        return litellm_module().model_cost
    shipped = _shipped_table()
    return shipped if shipped is not None else litellm_module().model_cost


@cache
def _shipped_table() -> dict[str, Any] | None:
    spec = importlib.util.find_spec("litellm")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model_prices_and_context_window_backup.json"
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(table, dict):
            return table
    return None

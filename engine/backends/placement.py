"""Placement on a cluster: which Dask worker resources a tool call or a model call needs.

`[cluster.resources]` in planfile.toml maps `tool:NAME`, `tier:NAME` or `model:NAME`
to the resources a worker must offer to run that call, e.g. `"tier:local" = {GPU = 1}`
with workers started as `dask worker ADDRESS --resources GPU=1`. A model call is
placed by its model string (`model:...`), else by the tier that maps to that model;
a tier that maps to no model runs on the embedded local model, so `"tier:local"` places
that model's calls when no `local` tier is mapped; a call that names nothing runs on
any worker. Dask holds a call whose resources no
worker offers until one joins: the call's deadline bounds that wait.
"""

from __future__ import annotations

from collections.abc import Mapping

Resources = dict[str, float]


class Placement:
    """Resources per tool and per model (`[cluster.resources]`)."""

    def __init__(self, resources: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.resources = {key: dict(value) for key, value in (resources or {}).items()}

    def tool(self, name: str) -> Resources | None:
        """What a call of tool `name` needs (None: any worker)."""
        return self.resources.get(f"tool:{name}")

    def for_models(self, tiers: Mapping[str, str], fallback: str) -> dict[str, Resources]:
        """model string -> what its calls need, for a run whose tiers are `tiers`
        (tier -> model); a tier mapped to no model runs on `fallback` (the embedded
        model); `model:NAME` wins over a tier that maps to NAME."""
        found: dict[str, Resources] = {}
        for key, needs in self.resources.items():
            if key.startswith("tier:"):
                found.setdefault(tiers.get(key[len("tier:") :], fallback), needs)
        for key, needs in self.resources.items():
            if key.startswith("model:"):
                found[key[len("model:") :]] = needs
        return found

"""Where planfile keeps caches it can rebuild (parser tables, converted model weights).

One rule for every such cache, in the lowest layer so the front end (`dsl/lark_cache.py`)
and the engine (`engine/models/local_model.py`, through `engine/store/home.py`) share it.
It follows `data_home()`'s precedence: with `PLANFILE_HOME` set, everything planfile
writes stays under it (tests and sandboxes never touch ~).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """`$PLANFILE_HOME/cache`, else `$XDG_CACHE_HOME/planfile`, else ~/.cache/planfile."""
    configured = os.environ.get("PLANFILE_HOME")
    if configured:
        return Path(configured) / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "planfile"

"""Where planfile keeps user data: the journal, the ledger, caches and audit logs.

`data_home()` holds what must be kept; `cache_home()` (dsl/user_cache.py, shared with the
front end) what can be rebuilt: parser tables, the embedded model's converted weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from dsl.user_cache import cache_home

__all__ = ["cache_home", "data_home"]


def data_home() -> Path:
    """`PLANFILE_HOME`, else `$XDG_DATA_HOME/planfile`, else ~/.local/share/planfile."""
    configured = os.environ.get("PLANFILE_HOME")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "planfile"

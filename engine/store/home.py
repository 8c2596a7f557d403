"""Where planfile keeps user data: the journal, the ledger, caches and audit logs."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """`PLANFILE_HOME`, else `$XDG_DATA_HOME/planfile`, else ~/.local/share/planfile."""
    configured = os.environ.get("PLANFILE_HOME")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "planfile"

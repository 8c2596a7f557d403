"""Summary statistics shared by the evaluation harness and the bench simulator.

A leaf module: it imports nothing from planfile, so every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100) of `values`; None for no values.

    Nearest rank, not interpolated: the figure reported is one that was measured.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]

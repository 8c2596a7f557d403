"""Journal overhead per step: the same no-op plans with and without the run journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from peers import chain, fan_out, plan_text

from engine import Engine, load_plan
from engine.journal import Journal
from stdlib_tools import tool


@tool
async def noop_step() -> None:
    """Does nothing."""


@pytest.mark.parametrize("shape", ["chain", "fanout"])
def test_journal_overhead(benchmark: Any, shape: str, tmp_path: Path) -> None:
    size = 2_000
    dag = chain(size) if shape == "chain" else fan_out(size)
    checked = load_plan(plan_text(dag, "noop_step()"), tools=[noop_step])
    plain = Engine(tools=[noop_step], max_parallel=1 << 20)
    journaled = Engine(
        tools=[noop_step], max_parallel=1 << 20, journal=Journal(tmp_path / "journal.sqlite")
    )
    plain.run_sync(checked)
    journaled.run_sync(checked)
    import time

    def once(engine: Engine) -> float:
        start = time.perf_counter()
        assert engine.run_sync(checked).status == "succeeded"
        return time.perf_counter() - start

    rounds = [(once(plain), once(journaled)) for _ in range(5)]
    ratios = sorted(j / p for p, j in rounds)
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(
        {
            "plain_us_per_step": round(sorted(p for p, _ in rounds)[2] / size * 1e6, 2),
            "journal_us_per_step": round(sorted(j for _, j in rounds)[2] / size * 1e6, 2),
            "overhead": round(ratios[2] - 1, 4),
        }
    )

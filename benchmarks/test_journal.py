"""Journal overhead per step: the same plans with and without the run journal.

No-op steps show the journal's whole cost (target: under 20%); model steps (litellm mock
responses, ~1-2 ms each) show what a real run pays. Rounds are interleaved (plain,
journaled, plain, ...) after a garbage collection each, and the figure is the median of
the per-round ratios, which resists this shared machine's noise.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from peers import chain, fan_out, plan_text

from dsl.checker import CheckedPlan
from engine import Engine, load_plan
from engine.config import Config, ModelSettings
from engine.models.ledger import Ledger
from engine.store.journal import Journal
from stdlib_tools import tool

ROUNDS = 15


@tool
async def noop_step() -> None:
    """Does nothing."""


def _compare(
    plain: Engine, journaled: Engine, plan: Callable[[], CheckedPlan], steps: int
) -> dict[str, float]:
    def once(engine: Engine) -> float:
        checked = plan()
        gc.collect()
        start = time.perf_counter()
        assert engine.run_sync(checked).status == "succeeded"
        return time.perf_counter() - start

    once(plain), once(journaled)  # warm-up: imports, the journal's tables, first-use caches
    rounds = [(once(plain), once(journaled)) for _ in range(ROUNDS)]
    return {
        "plain_us_per_step": round(statistics.median(p for p, _ in rounds) / steps * 1e6, 2),
        "journal_us_per_step": round(statistics.median(j for _, j in rounds) / steps * 1e6, 2),
        "overhead": round(statistics.median(j / p for p, j in rounds) - 1, 4),
    }


@pytest.mark.parametrize("first_run", [True, False], ids=["first-run", "repeat"])
@pytest.mark.parametrize("shape", ["chain", "fanout"])
def test_journal_overhead(benchmark: Any, shape: str, first_run: bool, tmp_path: Path) -> None:
    """2,000 no-op steps. `first-run`: a new checked plan each round, so the journal also
    serialises and stores the plan (what `planfile run` pays); `repeat`: one checked plan
    run again and again (an embedding loop), stored once."""
    size = 2_000
    dag = chain(size) if shape == "chain" else fan_out(size)
    checked = load_plan(plan_text(dag, "noop_step()"), tools=[noop_step])
    plain = Engine(tools=[noop_step], max_parallel=1 << 20)
    journaled = Engine(
        tools=[noop_step], max_parallel=1 << 20, journal=Journal(tmp_path / "journal.sqlite")
    )
    plan = (lambda: dataclasses.replace(checked)) if first_run else (lambda: checked)
    figures = _compare(plain, journaled, plan, size)
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(figures)


def test_journal_overhead_on_model_steps(benchmark: Any, tmp_path: Path) -> None:
    """A chain of 100 llm steps (litellm mock responses) with and without the journal."""
    size = 100
    model = "openai/gpt-4o-mini"
    checked = load_plan(
        "\n".join(
            f'step s{i} = llm(model: "{model}", prompt: "step {i}", max_tokens: 16)'
            + (f" after s{i - 1}" if i else "")
            for i in range(size)
        )
    )
    common: dict[str, Any] = {
        "config": Config(models={model: ModelSettings(api_key="sk-mock")}),
        "settings": {"mock_response": "ok"},
        "ledger": Ledger(tmp_path / "ledger.sqlite"),
    }
    plain = Engine(**common)
    journaled = Engine(**common, journal=Journal(tmp_path / "journal.sqlite"))
    figures = _compare(plain, journaled, lambda: dataclasses.replace(checked), size)
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(figures)

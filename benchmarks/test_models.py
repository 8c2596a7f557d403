"""Model benchmarks: the tiering cost case, gateway overhead, the local model's speed.

Costs are exact: an in-process provider reports the token counts of the published case
and prices come from the config, so the tables below are arithmetic on real runs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import Engine, load_plan
from engine.config import Config, ModelSettings
from engine.models.ledger import Ledger
from engine.models.local_model import available
from engine.models.gateway import litellm_module
from tests.scripted_provider import Reply, registered

PROVIDER = registered()
PRICES = {"fast": 0.80, "standard": 3.0, "frontier": 15.0}
CONFIG = Config(
    tiers={tier: f"pftest/{tier}" for tier in PRICES},
    models={
        f"pftest/{tier}": ModelSettings(input_cost_per_million=price, output_cost_per_million=price)
        for tier, price in PRICES.items()
    },
)


def run_case(steps: list[tuple[str, str, int]], tmp: Path) -> float:
    """Run one llm step per (name, tier, tokens); return the run's cost."""
    PROVIDER.reset()
    lines = []
    for name, tier, tokens in steps:
        PROVIDER.add(tier, Reply("ok", tokens, 0))
        lines.append(f'step {name} = llm(tier: {tier}, prompt: "{name}", max_tokens: 16)')
    engine = Engine(config=CONFIG, ledger=Ledger(tmp / "ledger.sqlite"), max_parallel=1)
    result = engine.run_sync(load_plan("\n".join(lines)))
    assert result.status == "succeeded"
    return result.cost_usd


def test_published_cost_case(benchmark: Any, tmp_path: Path) -> None:
    """800 tokens on fast, 1,000 and 1,200 on standard; against all-frontier; plus planning."""
    tiered = [("lookup", "fast", 800), ("analyze", "standard", 1000), ("write", "standard", 1200)]
    frontier = [(name, "frontier", tokens) for name, _, tokens in tiered]
    planning = [("planning", "frontier", 2000)]

    def measure() -> dict[str, float]:
        return {
            "tiered": run_case(tiered, tmp_path),
            "all_frontier": run_case(frontier, tmp_path),
            "tiered_with_planning": run_case(planning + tiered, tmp_path),
            "frontier_with_planning": run_case(planning + frontier, tmp_path),
        }

    costs = benchmark.pedantic(measure, rounds=1, iterations=1)
    assert costs["tiered"] == pytest.approx(0.00724)
    assert costs["all_frontier"] == pytest.approx(0.045)
    assert costs["tiered_with_planning"] == pytest.approx(0.03724)
    assert costs["frontier_with_planning"] == pytest.approx(0.075)
    benchmark.extra_info.update({k: round(v, 6) for k, v in costs.items()})
    print("\ncase                      cost")
    for name, cost in costs.items():
        print(f"{name:24}  ${cost:.5f}")


def test_ten_step_plan_saves_by_tiering(benchmark: Any, tmp_path: Path) -> None:
    """6 search steps (fast), 3 analysis (standard), 1 reasoning (frontier), 1,000 tokens each."""
    tiers = ["fast"] * 6 + ["standard"] * 3 + ["frontier"]
    tiered = [(f"s{i}", tier, 1000) for i, tier in enumerate(tiers)]
    frontier = [(f"s{i}", "frontier", 1000) for i in range(10)]

    def measure() -> tuple[float, float]:
        return run_case(tiered, tmp_path), run_case(frontier, tmp_path)

    cheap, dear = benchmark.pedantic(measure, rounds=1, iterations=1)
    saved = 1 - cheap / dear
    benchmark.extra_info.update(
        {"tiered": round(cheap, 6), "all_frontier": round(dear, 6), "saved": round(saved, 4)}
    )
    assert saved >= 0.60


N_CALLS = 300


def test_gateway_overhead_against_bare_litellm(benchmark: Any, tmp_path: Path) -> None:
    """A chain of N llm steps through the engine against N sequential litellm.acompletion
    calls, both with litellm's mock_response (target: under 10% extra)."""
    litellm = litellm_module()
    model = "openai/gpt-4o-mini"

    async def bare() -> None:
        for i in range(N_CALLS):
            await litellm.acompletion(
                model=model,
                messages=[{"role": "user", "content": f"step {i}"}],
                mock_response="ok",
                max_tokens=16,
            )

    config = Config(models={model: ModelSettings(api_key="sk-mock")})
    plan = load_plan(
        "\n".join(
            f'step s{i} = llm(model: "{model}", prompt: "step {i}", max_tokens: 16)'
            + (f" after s{i - 1}" if i else "")
            for i in range(N_CALLS)
        )
    )
    engine = Engine(
        config=config, settings={"mock_response": "ok"}, ledger=Ledger(tmp_path / "l.sqlite")
    )
    engine.run_sync(plan)
    asyncio.run(bare())

    def measure() -> tuple[float, float]:
        start = time.perf_counter()
        asyncio.run(bare())
        bare_s = time.perf_counter() - start
        start = time.perf_counter()
        result = engine.run_sync(plan)
        engine_s = time.perf_counter() - start
        assert result.status == "succeeded"
        return bare_s, engine_s

    # Interleaved rounds; the median of per-round ratios resists the machine's noise.
    rounds = [measure() for _ in range(7)]
    ratios = sorted(engine / bare for bare, engine in rounds)
    bare_s = sorted(r[0] for r in rounds)[3]
    engine_s = sorted(r[1] for r in rounds)[3]
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(
        {
            "bare_ms_per_call": round(bare_s / N_CALLS * 1000, 3),
            "engine_ms_per_call": round(engine_s / N_CALLS * 1000, 3),
            "overhead": round(ratios[3] - 1, 4),
        }
    )


@pytest.mark.skipif(not available(), reason="embedded model not installed")
def test_local_model_speed(benchmark: Any) -> None:
    """Tokens per second and first-token latency of the embedded model on this machine."""
    from engine.models.local_model import _Engine

    llama = _Engine.get().llama
    subjects = iter(["the sea", "mountains", "a city at night", "rain", "a library"])

    def measure() -> tuple[float, float, int]:
        # A new prompt each round, so llama.cpp cannot reuse a cached prompt.
        messages = [{"role": "user", "content": f"Write three sentences about {next(subjects)}."}]
        start = time.perf_counter()
        first = None
        tokens = 0
        for chunk in llama.create_chat_completion(
            messages=messages, max_tokens=128, temperature=0, stream=True
        ):
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                tokens += 1
                if first is None:
                    first = time.perf_counter() - start
        total = time.perf_counter() - start
        assert first is not None
        return first, tokens / (total - first), tokens

    results = [measure() for _ in range(3)]
    first_token = sorted(r[0] for r in results)[1]
    tokens_per_s = sorted(r[1] for r in results)[1]
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(
        {
            "first_token_s": round(first_token, 4),
            "tokens_per_s": round(tokens_per_s, 1),
            "tokens": results[0][2],
        }
    )

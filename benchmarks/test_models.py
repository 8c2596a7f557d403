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
from engine.models.provider import litellm_module
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


def _read_and_generate(llama: Any, content: str, max_tokens: int) -> tuple[int, float, int, float]:
    """(prompt tokens, prompt tokens/s, generated tokens, generated tokens/s) of one chat call,
    from llama.cpp's own timings (so reading and generating are measured apart)."""
    import llama_cpp

    # llama-cpp-python exposes the context pointer only through its private `_ctx`.
    ctx = llama._ctx.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    llama.create_chat_completion(
        messages=[{"role": "user", "content": content}], max_tokens=max_tokens, temperature=0
    )
    perf = llama_cpp.llama_perf_context(ctx)
    read_s = perf.t_p_eval_ms / 1000
    gen_s = perf.t_eval_ms / 1000
    return (
        perf.n_p_eval,
        perf.n_p_eval / read_s if read_s else 0.0,
        perf.n_eval,
        perf.n_eval / gen_s if gen_s else 0.0,
    )


@pytest.mark.skipif(not available(), reason="embedded model not installed")
def test_local_model_speed(benchmark: Any) -> None:
    """The embedded model on this machine: prompt reading and generation in tokens/s
    (separately), on a prompt the size of its prompt budget, against the shipped Q4_1 file
    read the way it was before (`local_model`'s docstring says what changed and why); and
    the first-token latency of a short prompt."""
    from llama_cpp import Llama

    from engine.models.local_model import CONTEXT_TOKENS, _Engine, gguf_path, prompt_budget

    llama = _Engine.get().llama
    fact = "The survey lists rents, taxes and transport costs for each city in the region. "
    words = len(llama.tokenize(fact.encode()))
    body = fact * max(1, (prompt_budget() - 64) // words)

    def prompt(round_: int) -> str:
        # A new first line each round, so llama.cpp cannot reuse the previous prompt's cache.
        return f"Round {round_}. Summarise the notes in one sentence.\n{body}"

    rounds = [_read_and_generate(llama, prompt(r), 64) for r in range(3)]
    read_tps = sorted(r[1] for r in rounds)[1]
    gen_tps = sorted(r[3] for r in rounds)[1]

    # Before: the shipped Q4_1 weights, llama-cpp-python's default micro-batch (threads as now;
    # OMP_WAIT_POLICY is process-wide, so the before case shares the passive wait).
    shipped = Llama(
        model_path=str(gguf_path()),
        n_ctx=CONTEXT_TOKENS,
        n_threads=llama.n_threads,
        n_threads_batch=llama.n_threads_batch,
        verbose=False,
    )
    before = [_read_and_generate(shipped, prompt(10 + r), 1) for r in range(2)]
    read_tps_before = max(r[1] for r in before)
    del shipped

    subjects = iter(["the sea", "mountains", "a city at night"])

    def first_token() -> float:
        messages = [{"role": "user", "content": f"Write three sentences about {next(subjects)}."}]
        start = time.perf_counter()
        for chunk in llama.create_chat_completion(
            messages=messages, max_tokens=8, temperature=0, stream=True
        ):
            if chunk["choices"][0]["delta"].get("content"):
                return time.perf_counter() - start
        raise AssertionError("no token")

    first = sorted(first_token() for _ in range(3))[1]
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(
        {
            "prompt_tokens": rounds[0][0],
            "prompt_tokens_per_s": round(read_tps, 1),
            "prompt_tokens_per_s_q4_1": round(read_tps_before, 1),
            "tokens_per_s": round(gen_tps, 1),
            "first_token_s": round(first, 4),
            "threads": llama.n_threads,
        }
    )
    print(
        f"\nembedded model: reads {read_tps:.0f} prompt tokens/s ({rounds[0][0]}-token prompt; "
        f"shipped Q4_1: {read_tps_before:.0f}), generates {gen_tps:.1f} tokens/s, "
        f"first token after {first * 1000:.0f} ms"
    )

"""The step cache: identical calls reuse stored results across runs, priced at 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Engine, load_plan
from engine.cli.main import main
from engine.config import Config, ModelSettings
from engine.store.step_cache import StepCache

from .scripted_provider import Reply, registered

PROVIDER = registered()
CONFIG = Config(
    tiers={"standard": "pftest/standard"},
    models={
        "pftest/standard": ModelSettings(input_cost_per_million=3.0, output_cost_per_million=3.0)
    },
)


@pytest.fixture(autouse=True)
def fresh() -> None:
    PROVIDER.reset()


def test_cached_step_is_reused_and_free(tmp_path: Path) -> None:
    """A `cache` step's second identical call is served from the cache at $0."""
    PROVIDER.default["standard"] = Reply("a summary", 1000, 100)
    engine = Engine(config=CONFIG, step_cache=StepCache(tmp_path / "cache.sqlite"))
    plan = load_plan(
        'input topic: str = "tides"\nstep s: str = llm(prompt: "Explain {{ topic }}") cache\noutput s'
    )
    first = engine.run_sync(plan)
    second = engine.run_sync(plan)
    assert first.outputs == second.outputs == {"s": "a summary"}
    assert first.cost_usd == pytest.approx(1100 * 3e-6) and second.cost_usd == 0
    assert second.steps["s"].cache_hits == 1 and len(PROVIDER.calls) == 1
    third = engine.run_sync(plan, {"topic": "waves"})  # a different rendered prompt: a miss
    assert third.cost_usd > 0 and len(PROVIDER.calls) == 2


def test_uncached_steps_always_run(tmp_path: Path) -> None:
    """Without `cache` (or --cache), nothing is stored or reused."""
    PROVIDER.default["standard"] = Reply("x")
    engine = Engine(config=CONFIG, step_cache=StepCache(tmp_path / "cache.sqlite"))
    plan = load_plan('step s: str = llm(prompt: "hello")')
    engine.run_sync(plan)
    engine.run_sync(plan)
    assert len(PROVIDER.calls) == 2


def test_run_cache_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run --cache` caches every step; the plain log marks hits."""
    plan = tmp_path / "p.plan"
    plan.write_text('step a: float = calculate(expression: "6 * 7")\noutput a')
    assert main(["run", str(plan), "--cache"]) == 0
    capsys.readouterr()
    assert main(["run", str(plan), "--cache"]) == 0
    err = capsys.readouterr().err
    assert "cached" in err and "served from the step cache" in err
    assert main(["run", str(plan), "--cache", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == {"a": 42.0}

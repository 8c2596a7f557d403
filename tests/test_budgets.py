"""Budgets that cannot be bypassed: bad amounts are refused; a provider billing past
`max_tokens` stops the run with `budget_exceeded`, never `succeeded` (issue 11, item 6)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine import Engine, load_plan
from engine.config import Config, ConfigError, ModelSettings, load_config
from engine.errors import RunSetupError
from engine.models.ledger import Ledger
from engine.run.executor import RetryPolicy

from .scripted_provider import Reply, registered

PROVIDER = registered()
PRICED = {"pftest/standard": ModelSettings(input_cost_per_million=3.0, output_cost_per_million=3.0)}
TIERS = {"standard": "pftest/standard"}
TOML = (
    '[tiers]\nstandard = "pftest/standard"\n[models."pftest/standard"]\n'
    "input_cost_per_million = 3.0\noutput_cost_per_million = 3.0\n"
)


@pytest.fixture(autouse=True)
def fresh_provider() -> None:
    PROVIDER.reset()


@pytest.mark.parametrize("amount", ["nan", "inf", "-inf", "-1", "abc", "1e999", ""])
def test_cli_refuses_a_budget_that_is_not_a_finite_amount(
    amount: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--budget nan` once switched the budget off (it compares false with every cost)."""
    from engine.cli.main import main

    plan = tmp_path / "p.plan"
    plan.write_text('step a = llm(tier: standard, prompt: "x", max_tokens: 10)')
    try:
        code = main(["run", str(plan), "--budget", amount])
    except SystemExit as exit_:
        code = exit_.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert "--budget" in err and "Traceback" not in err
    assert not PROVIDER.calls


@pytest.mark.parametrize("value", ["nan", "inf", "-0.5", '"lots"'])
def test_config_refuses_a_budget_that_is_not_a_finite_amount(tmp_path: Path, value: str) -> None:
    path = tmp_path / "planfile.toml"
    path.write_text(f"[budget]\nrun_usd = {value}\n")
    with pytest.raises(ConfigError, match=r"budget\.run_usd"):
        load_config(path)
    path.write_text(f"[budget]\ndaily_usd = {value}\n")
    with pytest.raises(ConfigError, match=r"budget\.daily_usd"):
        load_config(path)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, "1", True])
def test_engine_refuses_a_budget_that_is_not_a_finite_amount(value: object) -> None:
    with pytest.raises(RunSetupError, match="budget_usd"):
        Engine(budget_usd=value)  # type: ignore[arg-type]


def overbilled_run(tmp_path: Path, run_usd: float, **config: object) -> tuple[object, Ledger]:
    """One call whose provider reports 1,000,000 output tokens against max_tokens 10
    ($3 at $3/M), in a run with a budget of `run_usd`."""
    PROVIDER.default["standard"] = Reply("done", 10, 1_000_000)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    engine = Engine(
        config=Config(tiers=TIERS, models=PRICED, **config),  # type: ignore[arg-type]
        budget_usd=run_usd,
        ledger=ledger,
        retry=RetryPolicy(base_s=0.001, cap_s=0.002),
    )
    try:
        checked = load_plan(
            'step a = llm(tier: standard, prompt: "x", max_tokens: 10)\n'
            'step b = llm(tier: standard, prompt: "{{ a }}", max_tokens: 10)',
            tiers=["standard"],
        )
        return engine.run_sync(checked), ledger
    finally:
        engine.close()


def test_a_provider_overbilling_stops_the_run_at_its_real_cost(tmp_path: Path) -> None:
    """The overshooting call is recorded at its real cost (ledger and step), the run stops
    at once with budget_exceeded, and no further call is made."""
    result, ledger = overbilled_run(tmp_path, 0.5)
    assert result.status == "budget_exceeded"  # type: ignore[attr-defined]
    step = result.steps["a"]  # type: ignore[attr-defined]
    assert step.status == "failed" and "budget passed" in step.error
    assert step.cost_usd == pytest.approx(3.0 + 10 * 3e-6)
    assert result.cost_usd == pytest.approx(step.cost_usd)  # type: ignore[attr-defined]
    assert ledger.spent_by_run(result.run_id) == pytest.approx(step.cost_usd)  # type: ignore[attr-defined]
    assert len(PROVIDER.calls) == 1  # step b never called


def test_daily_budget_overbilled_is_not_succeeded(tmp_path: Path) -> None:
    result, _ = overbilled_run(tmp_path, 100.0, budget={"daily_usd": 1.0})
    assert result.status == "budget_exceeded"  # type: ignore[attr-defined]
    assert "daily budget passed" in result.steps["a"].error  # type: ignore[attr-defined]


def test_cli_overbilled_run_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from engine.cli.main import main

    PROVIDER.default["standard"] = Reply("done", 10, 1_000_000)
    (tmp_path / "planfile.toml").write_text(TOML)
    plan = tmp_path / "p.plan"
    plan.write_text('step a = llm(tier: standard, prompt: "x", max_tokens: 10)')
    code = main(
        ["run", str(plan), "--json", "--budget", "0.5", "--config", str(tmp_path / "planfile.toml")]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 3 and doc["status"] == "budget_exceeded"
    assert doc["cost_usd"] > 0.5


def test_a_resumed_run_counts_what_it_spent_before(tmp_path: Path) -> None:
    """The run budget is the run's: resuming does not hand out a fresh one."""
    import asyncio

    from engine.store.journal import Journal

    PROVIDER.default["standard"] = Reply("x", 10, 100_000)  # $0.30003 a call
    plan = load_plan(
        'step a = llm(tier: standard, prompt: "x", max_tokens: 100000)\n'
        'step b = llm(tier: standard, prompt: "{{ a }}", max_tokens: 100000)',
        tiers=["standard"],
    )

    def engine(budget: float) -> Engine:
        return Engine(
            config=Config(tiers=TIERS, models=PRICED),
            budget_usd=budget,
            ledger=Ledger(tmp_path / "ledger.sqlite"),
            journal=Journal(tmp_path / "journal.sqlite"),
        )

    first = engine(0.5).run_sync(plan)
    assert first.status == "budget_exceeded" and first.steps["a"].status == "succeeded"
    again = asyncio.run(engine(0.5).resume(first.run_id))
    assert again.status == "budget_exceeded"  # $0.30 spent + $0.30 worst case > $0.50
    assert len(PROVIDER.calls) == 1
    done = asyncio.run(engine(1.0).resume(first.run_id))
    assert done.status == "succeeded" and len(PROVIDER.calls) == 2


def test_replanning_rounds_share_the_run_budget(tmp_path: Path) -> None:
    """Each replanning round once got a fresh budget guard: a policy asked after every
    step let a run spend its budget once per round."""
    from engine.agent.replan import Decision, ReplanRequest

    class GoOn:
        def wants(self, trigger: str, finished_steps: int) -> bool:
            return trigger == "step"

        async def decide(self, request: ReplanRequest) -> Decision:
            return Decision("continue")

    PROVIDER.default["standard"] = Reply("x", 10, 100_000)  # $0.30003 a call
    engine = Engine(
        config=Config(tiers=TIERS, models=PRICED),
        budget_usd=0.7,
        ledger=Ledger(tmp_path / "ledger.sqlite"),
    )
    plan = load_plan(  # a chain: one step per round
        'step s0 = llm(tier: standard, prompt: "0", max_tokens: 100000)\n'
        'step s1 = llm(tier: standard, prompt: "{{ s0 }}", max_tokens: 100000)\n'
        'step s2 = llm(tier: standard, prompt: "{{ s1 }}", max_tokens: 100000)',
        tiers=["standard"],
    )
    import asyncio

    result = asyncio.run(engine.run(plan, replan=GoOn()))
    assert result.status == "budget_exceeded"
    assert len(PROVIDER.calls) == 2 and result.cost_usd <= 0.7

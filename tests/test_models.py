"""Models, tiers and cost: selection, escalation, budgets, faults, structured output.

Offline and exact: an in-process provider (`pftest/...`) reports chosen token counts, and
prices come from the config, so every cost below is arithmetic, not an estimate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dsl.ir import Step
from engine import Engine, load_plan
from engine.config import Config, ConfigError, ModelSettings, load_config
from engine.models.ledger import Ledger
from engine.models.selection import TierSelector
from engine.models.structured import parse_reply
from engine.run.executor import RetryPolicy
from engine.run.result import RunResult

from .scripted_provider import Reply, bad_key, rate_limited, registered, server_error, timeout

PROVIDER = registered()

PRICED = {
    "pftest/fast": ModelSettings(input_cost_per_million=0.80, output_cost_per_million=0.80),
    "pftest/standard": ModelSettings(input_cost_per_million=3.0, output_cost_per_million=3.0),
    "pftest/frontier": ModelSettings(input_cost_per_million=15.0, output_cost_per_million=15.0),
}
TIERS = {"fast": "pftest/fast", "standard": "pftest/standard", "frontier": "pftest/frontier"}


@pytest.fixture(autouse=True)
def fresh_provider() -> None:
    PROVIDER.reset()


def config(**kwargs: Any) -> Config:
    models = {**PRICED, **kwargs.pop("models", {})}
    return Config(tiers=kwargs.pop("tiers", TIERS), models=models, **kwargs)


def run(
    text: str, *, inputs: dict[str, Any] | None = None, home: Path | None = None, **kwargs: Any
) -> RunResult:
    kwargs.setdefault("config", config())
    kwargs.setdefault("retry", RetryPolicy(base_s=0.001, cap_s=0.002))
    ledger = Ledger(home / "ledger.sqlite") if home else None
    engine = Engine(ledger=ledger, **kwargs)
    try:
        checked = load_plan(text, tiers=["fast", "standard", "frontier", "planner"])
        return engine.run_sync(checked, inputs)
    finally:
        engine.close()


def models_called() -> list[str]:
    return [call["model"] for call in PROVIDER.calls]


# --- selection ------------------------------------------------------------------------


def step(**fields: Any) -> Step:
    return Step(id="s", tool="llm", **fields)


def test_selection_precedence() -> None:
    """Explicit model > step tier > task type > default tier."""
    selector = TierSelector(TIERS, default_tier="standard")
    always = lambda model: True  # noqa: E731
    assert selector.choose(step(model="x/y", tier="fast"), 1, always).model == "x/y"
    assert (
        selector.choose(step(tier="frontier", task="search"), 1, always).model == "pftest/frontier"
    )
    assert selector.choose(step(task="search"), 1, always).model == "pftest/fast"
    assert selector.choose(step(task="code"), 1, always).model == "pftest/frontier"
    assert selector.choose(step(task="writing"), 1, always).model == "pftest/standard"
    assert selector.choose(step(), 1, always).model == "pftest/standard"


def test_escalation_and_downgrade_policies() -> None:
    """A retry goes one tier up; an unaffordable tier is downgraded unless pinned."""
    selector = TierSelector(TIERS)
    always = lambda model: True  # noqa: E731
    assert selector.choose(step(task="search"), 2, always).model == "pftest/standard"
    assert selector.choose(step(task="search"), 3, always).model == "pftest/frontier"
    only_fast = lambda model: model == "pftest/fast"  # noqa: E731
    choice = selector.choose(step(task="code"), 1, only_fast)
    assert choice.model == "pftest/fast" and "downgraded" in choice.reason
    assert selector.choose(step(tier="frontier"), 1, only_fast).model == "pftest/frontier"


def test_tier_precedence_plan_config_cli() -> None:
    """--tier beats planfile.toml, which beats the plan's own tier declarations."""
    plan = 'tier fast = "pftest/from-plan"\nstep a = llm(tier: fast, prompt: "hi")'
    run(plan, config=config(tiers={}))
    run(plan, config=config(tiers={"fast": "pftest/from-config"}))
    run(
        plan, config=config(tiers={"fast": "pftest/from-config"}), tiers={"fast": "pftest/from-cli"}
    )
    assert models_called() == ["from-plan", "from-config", "from-cli"]


# --- cost -------------------------------------------------------------------------------


def test_cost_is_exact_from_reported_usage() -> None:
    """Cost = reported tokens x the config's prices, per step and for the run."""
    PROVIDER.add("fast", Reply("a", 800, 0))
    PROVIDER.add("standard", Reply("b", 1000, 200))
    result = run(
        'step a = llm(tier: fast, prompt: "x")\nstep b = llm(tier: standard, prompt: "{{ a }}")'
    )
    assert result.steps["a"].cost_usd == pytest.approx(800 * 0.80e-6)
    assert result.steps["b"].cost_usd == pytest.approx(1200 * 3e-6)
    assert result.cost_usd == pytest.approx(0.00064 + 0.0036)
    doc = result.to_json()["steps"]["b"]
    assert (doc["model"], doc["input_tokens"], doc["output_tokens"]) == (
        "pftest/standard",
        1000,
        200,
    )


def test_mock_response_uses_litellm_price_table() -> None:
    """litellm's mock_response (10 in / 20 out tokens) is priced from litellm's table."""
    result = run(
        'step a = llm(model: "openai/gpt-4o-mini", prompt: "hi")',
        config=config(models={"openai/gpt-4o-mini": ModelSettings(api_key="sk-test")}),
        settings={"mock_response": "hello"},
    )
    assert result.outputs == {"a": "hello"}
    assert result.steps["a"].cost_usd == pytest.approx(10 * 0.15e-6 + 20 * 0.60e-6)


def test_missing_price_warns_and_counts_zero() -> None:
    """A model with no known price costs $0 and says so once."""
    warnings: list[str] = []
    result = run(
        'step a = llm(model: "pftest/unpriced", prompt: "x")\nstep b = llm(model: "pftest/unpriced", prompt: "y")',
        on_warning=warnings.append,
    )
    assert result.cost_usd == 0
    assert len(warnings) == 1 and "no price known for `pftest/unpriced`" in warnings[0]


def test_keys_never_appear_in_results() -> None:
    """An api_key from the config is passed to the provider, never into results."""
    secret = "sk-secret-123456"
    result = run(
        'step a = llm(model: "pftest/keyed", prompt: "x")',
        config=config(models={"pftest/keyed": ModelSettings(api_key=secret)}),
    )
    assert secret not in result.dumps()


# --- budgets -------------------------------------------------------------------------------


def test_budget_stops_before_an_overrun() -> None:
    """A call whose worst case exceeds what remains is not made; the run ends budget_exceeded."""
    PROVIDER.default["standard"] = Reply("done", 1000, 1000)
    result = run(
        'step a = llm(tier: standard, prompt: "x", max_tokens: 1000)\n'
        'step b = llm(tier: standard, prompt: "{{ a }}", max_tokens: 1000)\n'
        'step c: float = calculate(expression: "1 + 1")',
        budget_usd=0.008,
    )
    assert result.status == "budget_exceeded"
    assert result.steps["a"].status == "succeeded" and result.steps["c"].status == "succeeded"
    assert result.steps["b"].status == "failed" and "budget exhausted" in result.steps["b"].error
    assert len(PROVIDER.calls) == 1
    assert result.cost_usd <= 0.008


def test_budget_downgrades_to_a_cheaper_tier() -> None:
    """An unpinned step drops to the strongest tier the budget can pay for."""
    # task code -> frontier: ~108 tokens x $15/M = $0.0016 > $0.001; standard: $0.0003 fits.
    result = run('step a = llm(prompt: "x", max_tokens: 100) task code', budget_usd=0.001)
    assert result.status == "succeeded" and models_called() == ["standard"]
    assert run(
        'step a = llm(prompt: "x", max_tokens: 100) task code', budget_usd=0.0002
    ).status == ("succeeded")
    assert models_called()[-1] == "fast"


def test_daily_budget_holds_across_runs(tmp_path: Path) -> None:
    """The daily budget counts earlier runs' spending (ledger in PLANFILE_HOME)."""
    # Each call's worst case: ~8 prompt + 1000 max tokens at $3/M = ~$0.003.
    PROVIDER.default["standard"] = Reply("ok", 1000, 0)
    daily = config(budget={"daily_usd": 0.005})
    plan = 'step a = llm(tier: standard, prompt: "x", max_tokens: 1000)'
    first = run(plan, config=daily, home=tmp_path)
    assert first.status == "succeeded" and first.cost_usd == pytest.approx(0.003)
    second = run(plan, config=daily, home=tmp_path)  # $0.002 left < $0.003 worst case
    assert second.status == "budget_exceeded" and "daily budget" in second.steps["a"].error
    assert len(PROVIDER.calls) == 1
    assert Ledger(tmp_path / "ledger.sqlite").spent_by_run(first.run_id) == pytest.approx(0.003)


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [rate_limited, server_error, timeout])
def test_transient_faults_are_retried(fault: Any) -> None:
    """429 (honouring Retry-After), 5xx and timeouts are retried inside the gateway."""
    PROVIDER.add("fast", fault(), fault(), Reply("finally"))
    result = run('step a = llm(tier: fast, prompt: "x")')
    assert result.outputs == {"a": "finally"} and len(PROVIDER.calls) == 3


def test_bad_key_fails_at_once_with_the_fix() -> None:
    """An auth error is not retried and names the model and the setting."""
    PROVIDER.add("fast", bad_key())
    result = run('step a = llm(tier: fast, prompt: "x") retry 3')
    record = result.steps["a"]
    assert record.attempts == 1 and len(PROVIDER.calls) == 1
    assert "`pftest/fast` rejected the API key" in record.error and "api_key_env" in record.error


def test_unknown_model_fails_clearly() -> None:
    """An unknown provider/model fails at once, naming the model and where to fix it."""
    result = run('step a = llm(model: "nosuchprovider/model-x", prompt: "x") retry 2')
    record = result.steps["a"]
    assert record.attempts == 1
    assert "unknown model `nosuchprovider/model-x`" in record.error and "--tier" in record.error


def test_a_provider_crash_shows_its_first_line_not_a_traceback() -> None:
    """A custom provider that raises (litellm puts the whole traceback and its bug-report
    banner into the message) fails the step with the first meaningful line only."""
    PROVIDER.add("fast", *[AssertionError("Unrecognized schema: {'description': 'x'}")] * 20)
    PROVIDER.default["fast"] = Reply("never")
    result = run('step a = llm(model: "pftest/fast", prompt: "x")')
    error = result.steps["a"].error or ""
    assert "Unrecognized schema" in error and "`pftest/fast` failed" in error
    assert "Traceback" not in error and "github.com/BerriAI" not in error
    assert "\n" not in error


def test_provider_message_skips_tracebacks_and_banners() -> None:
    from engine.models.gateway import provider_message

    text = (
        "\x1b[1;31mGive Feedback / Get Help: https://github.com/BerriAI/litellm/issues/new\x1b[0m\n"
        "litellm.APIConnectionError: Unrecognized schema: {}\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\nAssertionError'
    )
    assert provider_message(RuntimeError(text)) == "Unrecognized schema: {}"
    assert provider_message(RuntimeError("")) == "RuntimeError"


def test_missing_key_env_is_named() -> None:
    """api_key_env pointing at an unset variable names the variable."""
    result = run(
        'step a = llm(model: "pftest/env", prompt: "x")',
        config=config(models={"pftest/env": ModelSettings(api_key_env="PLANFILE_TEST_UNSET_KEY")}),
    )
    assert "PLANFILE_TEST_UNSET_KEY is not set" in result.steps["a"].error


# --- structured output ----------------------------------------------------------------------------

VERDICT = "type Verdict { city: str, disposable: float }\n"


def test_structured_output_valid() -> None:
    """A record-typed step sends the schema and gets a validated record."""
    PROVIDER.add("standard", Reply({"city": "Austin", "disposable": 80000}))
    result = run(VERDICT + 'step v: Verdict = llm(prompt: "which?")\noutput v')
    assert result.outputs == {"v": {"city": "Austin", "disposable": 80000.0}}
    params = PROVIDER.calls[0]["params"]
    schema = params["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == {"city", "disposable"}


def test_structured_output_repaired_once() -> None:
    """An invalid reply is retried once with the validation error in the prompt."""
    PROVIDER.add(
        "standard",
        Reply('```json\n{"city": "Austin"}\n```'),
        Reply({"city": "Austin", "disposable": 1.5}),
    )
    result = run(VERDICT + 'step v: Verdict = llm(prompt: "which?")\noutput v')
    assert result.outputs["v"]["disposable"] == 1.5
    repair = PROVIDER.calls[1]["messages"][-1]["content"]
    assert "not valid" in repair and "disposable" in repair


def test_structured_output_never_valid_fails_then_escalates() -> None:
    """Two invalid replies fail the attempt; a retry escalates to a stronger tier."""
    PROVIDER.add("standard", Reply("nonsense"), Reply('{"city": 3}'))
    PROVIDER.add("frontier", Reply({"city": "Austin", "disposable": 2}))
    result = run(VERDICT + 'step v: Verdict = llm(prompt: "which?") retry 1\noutput v')
    assert result.status == "succeeded" and models_called() == ["standard", "standard", "frontier"]
    failed = run(VERDICT + 'step v: Verdict = llm(prompt: "which?")')
    assert "does not fit `Verdict`" in failed.steps["v"].error


def test_list_and_number_types_are_wrapped() -> None:
    """Non-object types travel as {"value": ...} and come back unwrapped."""
    PROVIDER.add("standard", Reply({"value": ["a", "b"]}), Reply({"value": 0.5}))
    result = run(
        'step xs: list[str] = llm(prompt: "list")\nstep n: float = llm(prompt: "n")\noutput xs, n'
    )
    assert result.outputs == {"xs": ["a", "b"], "n": 0.5}


def test_parse_reply_tolerates_fences_and_prose() -> None:
    """JSON inside code fences or surrounded by text is found."""
    assert parse_reply('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_reply('Sure! {"a": [1, 2]} Hope that helps.') == {"a": [1, 2]}
    with pytest.raises(ValueError):
        parse_reply("no json here")


# --- config ------------------------------------------------------------------------------------------


def test_config_file(tmp_path: Path) -> None:
    """planfile.toml loads tiers, model settings, budgets; unknown keys get a hint."""
    path = tmp_path / "planfile.toml"
    path.write_text(
        '[tiers]\nfast = "openai/gpt-4o-mini"\n'
        '[models."openai/gpt-4o-mini"]\napi_base = "http://127.0.0.1:8000/v1"\ninput_cost_per_million = 0.15\n'
        "[budget]\ndaily_usd = 5.0\n"
    )
    loaded = load_config(path)
    assert loaded.tiers == {"fast": "openai/gpt-4o-mini"} and loaded.budget.daily_usd == 5.0
    assert loaded.models["openai/gpt-4o-mini"].api_base == "http://127.0.0.1:8000/v1"
    path.write_text('[models."m"]\napi_bas = "x"\n')
    with pytest.raises(ConfigError, match="did you mean `api_base`"):
        load_config(path)
    path.write_text("[tiers\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_run_cli_budget_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`planfile run --budget` exits 3 when the budget stops the run."""
    from engine.cli.main import main

    (tmp_path / "planfile.toml").write_text(
        '[tiers]\nstandard = "pftest/standard"\n[models."pftest/standard"]\n'
        "input_cost_per_million = 3.0\noutput_cost_per_million = 3.0\n"
    )
    plan = tmp_path / "p.plan"
    plan.write_text('step a = llm(tier: standard, prompt: "x", max_tokens: 1000)')
    code = main(
        [
            "run",
            str(plan),
            "--json",
            "--budget",
            "0.001",
            "--config",
            str(tmp_path / "planfile.toml"),
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 3 and doc["status"] == "budget_exceeded"

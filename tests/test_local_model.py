"""The embedded local model and a real OpenAI-compatible server (llama.cpp's), offline.

Slow: they run the real 135M model on the CPU. Marked `slow`; CI runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, load_plan
from engine.config import Config, ModelSettings
from engine.models.local_model import LOCAL_MODEL, available

from .conftest import EXAMPLES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="embedded model not installed (see README)"),
]


def test_local_model_answers_and_reports_tokens() -> None:
    """With nothing configured, an llm step runs on the embedded model, priced at 0."""
    engine = Engine()
    result = engine.run_sync(
        load_plan('step a: str = llm(prompt: "Name one primary colour.", max_tokens: 16)')
    )
    record = result.steps["a"]
    assert result.status == "succeeded", record.error
    assert record.model == LOCAL_MODEL and record.output
    assert record.input_tokens > 0 and record.output_tokens > 0 and record.cost_usd == 0


def test_local_structured_output_always_parses() -> None:
    """Grammar-constrained decoding: a record-typed step always gets a valid record."""
    text = (
        "type City { name: str, country: str, population: int }\n"
        'step c: City = llm(prompt: "Describe Paris as data.", max_tokens: 80)\noutput c'
    )
    result = Engine().run_sync(load_plan(text))
    assert result.status == "succeeded", result.steps["c"].error
    assert set(result.outputs["c"]) == {"name", "country", "population"}
    assert isinstance(result.outputs["c"]["population"], int)


def test_long_inputs_are_cut_to_the_prompt_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step whose inputs exceed the embedded model's prompt budget is sent a prompt cut to
    it (the question kept); the step record and a warning say how many tokens went."""
    monkeypatch.setenv("PLANFILE_LOCAL_PROMPT_TOKENS", "256")
    notes = " ".join(f"Fact {i}: the river is {i} metres deep at mile {i}." for i in range(200))
    plan = load_plan(
        "input notes: str\n"
        'step a: str = llm(prompt: "Notes: {{ notes }}\\nHow deep is the river? One line.", '
        "max_tokens: 16)\noutput a"
    )
    result = Engine().run_sync(plan, inputs={"notes": notes})
    record = result.steps["a"]
    assert result.status == "succeeded", record.error
    assert record.prompt_tokens_trimmed > 2000
    assert record.input_tokens <= 256
    assert result.to_json()["steps"]["a"]["prompt_tokens_trimmed"] == record.prompt_tokens_trimmed
    assert any("prompt tokens cut" in warning for warning in result.warnings)


def test_fitting_keeps_the_schema_request_and_instructions() -> None:
    """The local glue: the reply's schema and the system message are never cut."""
    from engine.models.local_model import fit_messages, prompt_budget, tokenizer

    request = '\n\nReply with only a JSON value matching this JSON schema:\n{"type":"object"}'
    prompt = "Question: which is deeper? Facts: " + "the river is deep. " * 2000
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": prompt + request},
    ]
    fitted, cut = fit_messages(
        messages, prompt, request, "Question: which is deeper? Facts: {{ f }}"
    )
    words = tokenizer()
    sent = sum(len(words.encode(m["content"])) for m in fitted)
    assert cut > 0 and sent <= prompt_budget()
    assert fitted[0] == messages[0]
    assert fitted[1]["content"].startswith("Question: which is deeper? Facts: the river")
    assert fitted[1]["content"].endswith(request)


def test_the_shipped_weights_are_converted_once_to_a_fast_format(tmp_path: Path) -> None:
    """Q4_1 has no fast CPU matrix kernel in llama.cpp; the cached Q8_0 copy is used instead."""
    from engine.models.local_model import fast_gguf

    # PLANFILE_HOME's cache folder wins over XDG_CACHE_HOME (dsl/user_cache.py).
    env = dict(os.environ, PLANFILE_HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path))
    code = (
        "from engine.models.local_model import fast_gguf, gguf_path; print(fast_gguf(gguf_path()))"
    )
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    converted = Path(first.stdout.strip())
    assert converted.parent == tmp_path / "home" / "cache" / "models"
    assert ".Q8_0." in converted.name and not (tmp_path / "planfile").exists()
    assert converted.read_bytes()[:4] == b"GGUF"
    assert not first.stderr  # llama.cpp's conversion log is kept quiet
    assert not list(converted.parent.glob("*.partial"))
    stamp = converted.stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert Path(again.stdout.strip()) == converted and converted.stat().st_mtime_ns == stamp
    assert fast_gguf(tmp_path / "mine.gguf") == tmp_path / "mine.gguf"


def test_a_timed_out_call_stops_and_frees_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step timeout stops the in-process model at once (llama.cpp's abort callback), so
    the next call does not wait for the abandoned one to read the rest of its prompt."""
    from engine.models.local_model import _Engine

    monkeypatch.setenv("PLANFILE_LOCAL_PROMPT_TOKENS", "0")  # a prompt of ~7,000 tokens
    notes = " ".join(f"Fact {i}: the river is {i} metres deep." for i in range(700))
    plan = load_plan(
        'input notes: str\nstep a: str = llm(prompt: "{{ notes }} How deep?", max_tokens: 8)\n'
        "    timeout 1s\noutput a"
    )
    # litellm and the model loaded before the clock starts (both take seconds the first time).
    warm = Engine().run_sync(load_plan('step w: str = llm(prompt: "Hi", max_tokens: 1)'))
    assert warm.status == "succeeded", warm.steps["w"].error
    calls: list[float] = []
    chat = _Engine.chat

    def counted(self: _Engine, *args: Any) -> dict[str, Any]:
        calls.append(time.monotonic())
        return chat(self, *args)

    monkeypatch.setattr(_Engine, "chat", counted)
    result = Engine().run_sync(plan, inputs={"notes": notes})
    assert result.steps["a"].status == "failed"
    assert calls, "the model call had not started when the step timed out"
    lock = _Engine.get().lock
    start = time.monotonic()
    assert lock.acquire(timeout=20)
    lock.release()
    # Reading 7,000 tokens takes tens of seconds here; the abandoned call stops in well under 2 s.
    assert time.monotonic() - start < 2


def test_main_example_runs_offline(tmp_path: Path) -> None:
    """The README's first command: cost_of_living runs with no keys, on the local model."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "run",
            str(EXAMPLES / "cost_of_living.plan"),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=EXAMPLES / "workspace",
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "using the embedded local model" in proc.stderr
    import json

    doc = json.loads(proc.stdout)
    assert doc["steps"]["verdict"]["model"] == LOCAL_MODEL
    assert set(doc["outputs"]["verdict"]) == {"city", "disposable", "reasoning"}


def test_plan_runs_against_an_openai_compatible_server(llama_server: str) -> None:
    """A tier pointing at a server (`openai/...` + api_base) runs, structured output included."""
    config = Config(
        tiers={"standard": "openai/smollm2"},
        models={
            "openai/smollm2": ModelSettings(
                api_base=llama_server,
                api_key="local",
                input_cost_per_million=0.1,
                output_cost_per_million=0.2,
            )
        },
    )
    text = (
        "type Answer { city: str, reason: str }\n"
        'step a: str = llm(prompt: "Say hello.", max_tokens: 12)\n'
        'step b: Answer = llm(prompt: "Which city is the capital of France? Answer as data.", max_tokens: 60)\n'
        "output a, b"
    )
    engine = Engine(config=config)
    result = engine.run_sync(load_plan(text))
    assert result.status == "succeeded", {k: v.error for k, v in result.steps.items()}
    assert result.steps["a"].model == "openai/smollm2"
    assert set(result.outputs["b"]) == {"city", "reason"}
    tokens_in = sum(r.input_tokens for r in result.steps.values())
    tokens_out = sum(r.output_tokens for r in result.steps.values())
    assert result.cost_usd == pytest.approx(tokens_in * 0.1e-6 + tokens_out * 0.2e-6)


def test_planner_runs_offline_on_the_local_model() -> None:
    """With nothing configured the planner runs on the embedded model, grammar-constrained
    to the plan schema: every reply parses; the checker and repair loop judge the rest."""
    import asyncio

    from engine.agent.planner import Planner, allowed_tools

    engine = Engine()
    planner = Planner(
        engine.model_gateway(),
        allowed_tools(engine.registry),
        tiers=engine.tier_map(),
        max_repairs=1,
    )
    planned = asyncio.run(planner.plan("What is 15% of 2400?"))
    assert planned.usage.model == LOCAL_MODEL and planned.usage.cost_usd == 0
    assert 1 <= len(planned.attempts) <= 2
    for attempt in planned.attempts:
        assert not any("not JSON" in error for error in attempt.errors), attempt.reply[:300]
    if planned.ok:
        assert planned.checked is not None and planned.checked.plan.steps

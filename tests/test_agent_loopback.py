"""Agent steps against the loopback OpenAI-compatible server (tests/loopback_openai.py):
scripted tool calls through litellm's real `openai/` provider and HTTP client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import Engine, load_plan
from engine.config import Config, ModelSettings

from .conftest import EXAMPLES
from .loopback_openai import Call, LoopbackServer, Reply, Rule, Script, loopback_server  # noqa: F401

PLANFILE = str(Path(sys.executable).parent / "planfile")

HOUSING = Script(
    rules=(
        Rule(
            contains="housing",
            turns=(
                Reply(
                    tool_calls=(
                        Call("search", {"query": "share of income for housing"}),
                        Call("calculate", {"expression": "150000 * 0.30"}),
                    ),
                    prompt_tokens=300,
                    completion_tokens=40,
                ),
                Reply(
                    content="$45,000 a year (HUD's 30% rule)",
                    prompt_tokens=700,
                    completion_tokens=20,
                ),
            ),
        ),
    )
)


def _loopback_config(server: LoopbackServer) -> Config:
    settings = ModelSettings(
        api_base=server.api_base,
        api_key="loopback",
        input_cost_per_million=1.0,
        output_cost_per_million=2.0,
    )
    return Config(tiers={"fast": "openai/scripted"}, models={"openai/scripted": settings})


def test_an_agent_step_runs_against_the_loopback_server(loopback: LoopbackServer) -> None:
    """Through litellm's real openai provider: the scripted parallel tool calls run, their
    results go back as `tool` messages, the answer is the step's output, and the step's
    cost is exactly its calls' reported usage, priced."""
    loopback.script = HOUSING
    plan = load_plan((EXAMPLES / "agent_housing.plan").read_text())
    result = Engine(config=_loopback_config(loopback)).run_sync(plan)
    record = result.steps["budget"]
    assert result.status == "succeeded", record.error
    assert result.outputs["budget"] == "$45,000 a year (HUD's 30% rule)"
    assert record.iterations == 2 and record.model == "openai/scripted"
    assert [call["tool"] for call in record.tool_calls or []] == ["search", "calculate"]
    assert (record.tool_calls or [])[1]["output"] == 45000.0
    assert record.input_tokens == 1000 and record.output_tokens == 60
    assert record.cost_usd == pytest.approx(1000 * 1e-6 + 60 * 2e-6)
    first, second = loopback.requests
    assert {t["function"]["name"] for t in first["tools"]} == {"search", "calculate"}
    results = {m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"}
    assert set(results) == {"call_0_0", "call_0_1"} and "45000" in results["call_0_1"]


def test_the_example_agent_plan_runs_against_the_loopback_server_from_the_cli(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    """The user's path: `planfile run ../agent_housing.plan` in examples/workspace, with a
    planfile.toml sending the fast tier to the server."""
    loopback.script = HOUSING
    config = tmp_path / "planfile.toml"
    config.write_text(loopback.config_toml())
    done = subprocess.run(
        [PLANFILE, "run", "../agent_housing.plan", "--config", str(config), "--json"],
        cwd=EXAMPLES / "workspace",
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["outputs"]["budget"] == "$45,000 a year (HUD's 30% rule)"
    assert document["steps"]["budget"]["iterations"] == 2
    assert len(loopback.requests) == 2


def test_a_script_file_serves_another_process(tmp_path: Path) -> None:
    """`python tests/loopback_openai.py SCRIPT.json` prints its api_base and serves the
    script until it is stopped (a server that outlives a killed `planfile run`)."""
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "turns": [
                            {
                                "tool_calls": [
                                    {"name": "calculate", "arguments": {"expression": "2+2"}}
                                ]
                            },
                            {"content": "4", "prompt_tokens": 9, "completion_tokens": 1},
                        ]
                    }
                ]
            }
        )
    )
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("loopback_openai.py")), str(script)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        api_base = server.stdout.readline().strip()
        assert api_base.startswith("http://127.0.0.1:")
        body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "2+2?"}]}
        first = httpx.post(f"{api_base}/chat/completions", json=body, timeout=10).json()
        call = first["choices"][0]["message"]["tool_calls"][0]
        assert call["function"] == {"name": "calculate", "arguments": '{"expression": "2+2"}'}
        body["messages"] += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "4"},
        ]
        second = httpx.post(f"{api_base}/chat/completions", json=body, timeout=10).json()
        assert second["choices"][0]["message"]["content"] == "4"
        assert second["usage"] == {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_json_twin_of_the_example_is_the_same_plan() -> None:
    """examples/agent_housing.json is the canonical JSON form of the .plan example."""
    text = (EXAMPLES / "agent_housing.json").read_text()
    assert load_plan(text).plan == load_plan(EXAMPLES / "agent_housing.plan").plan

"""Plan-and-execute against a ReAct-style loop on parallelisable goals (simulated models).

Each goal needs k independent lookups and an answer. ReAct: one strong-model call per
action, sequential, each seeing the growing history, then one for the answer. planfile:
one planner call, the k lookups in parallel with no model call, one joiner on the
standard tier. Model latency and token counts are simulated by an in-process provider
(frontier call 0.30 s, standard 0.15 s; a lookup 0.10 s), prices fast $0.80/M, standard
$3/M, frontier $15/M. Reported: wall time, model calls, tokens and cost, as ratios.
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
from stdlib_tools import tool
from tests.scripted_provider import Reply, registered

PROVIDER = registered()
FRONTIER_S, STANDARD_S, LOOKUP_S = 0.30, 0.15, 0.10
BASE_PROMPT, OBSERVATION, THOUGHT = 600, 250, 60
CONFIG = Config(
    tiers={
        "frontier": "pftest/frontier",
        "standard": "pftest/standard",
        "planner": "pftest/frontier",
    },
    models={
        "pftest/frontier": ModelSettings(input_cost_per_million=15, output_cost_per_million=15),
        "pftest/standard": ModelSettings(input_cost_per_million=3, output_cost_per_million=3),
    },
)


@tool
async def lookup(query: str) -> str:
    """A simulated search: 0.1 s."""
    await asyncio.sleep(LOOKUP_S)
    return f"facts about {query}"


def react_plan(k: int) -> str:
    """ReAct as a chain: think (frontier) -> act -> think -> act ... -> answer."""
    lines = []
    previous = None
    for i in range(k):
        after = f" after {previous}" if previous else ""
        lines.append(
            f'step think{i} = llm(tier: frontier, prompt: "decide next action {i}"){after}'
        )
        lines.append(f'step act{i} = lookup(query: "topic {i}") after think{i}')
        previous = f"act{i}"
    lines.append(f'step answer = llm(tier: frontier, prompt: "answer") after {previous}')
    return "\n".join(lines)


def plan_execute_plan(k: int) -> str:
    """What the planner returns: k parallel lookups and a joiner on standard."""
    lines = [f'step act{i} = lookup(query: "topic {i}")' for i in range(k)]
    refs = " ".join(f"{{{{ act{i} }}}}" for i in range(k))
    lines.append(f'step answer = llm(tier: standard, prompt: "answer from {refs}")')
    return "\n".join(lines) + "\noutput answer"


def script_react(k: int) -> None:
    for i in range(k + 1):  # every call sees the whole history so far
        prompt = BASE_PROMPT + i * (OBSERVATION + THOUGHT)
        PROVIDER.add("frontier", Reply("next", prompt, THOUGHT, FRONTIER_S))


def script_plan_execute(k: int) -> None:
    PROVIDER.add(
        "frontier", Reply("plan", BASE_PROMPT + 200, 80 * k + 60, FRONTIER_S)
    )  # the planner
    PROVIDER.add("standard", Reply("answer", BASE_PROMPT + k * OBSERVATION, THOUGHT, STANDARD_S))


def measure(text: str, planner_call: bool, tmp: Path) -> dict[str, float]:
    engine = Engine(
        tools=[lookup], config=CONFIG, ledger=Ledger(tmp / "ledger.sqlite"), max_parallel=16
    )
    checked = load_plan(text, tools=[lookup])
    gateway = engine.model_gateway()
    start = time.perf_counter()
    from engine.agent.planner import Usage

    usage = Usage()
    if planner_call:
        asyncio.run(
            gateway.call(
                "pftest/frontier",
                [{"role": "user", "content": "plan"}],
                usage=usage,
                run_id="b",
                step_id="planning",
            )
        )
    result = engine.run_sync(checked)
    wall = time.perf_counter() - start
    assert result.status == "succeeded"
    return {
        "wall_s": wall,
        "calls": len(PROVIDER.calls),
        "tokens": sum(r.input_tokens + r.output_tokens for r in result.steps.values())
        + usage.input_tokens
        + usage.output_tokens,
        "cost_usd": result.cost_usd + usage.cost_usd,
    }


@pytest.mark.parametrize("k", [3, 5, 8])
def test_plan_and_execute_against_react(benchmark: Any, k: int, tmp_path: Path) -> None:
    def run_both() -> tuple[dict[str, float], dict[str, float]]:
        PROVIDER.reset()
        script_react(k)
        react = measure(react_plan(k), False, tmp_path)
        PROVIDER.reset()
        script_plan_execute(k)
        ours = measure(plan_execute_plan(k), True, tmp_path)
        return react, ours

    react, ours = benchmark.pedantic(run_both, rounds=1, iterations=1)
    info = {
        "react_wall_s": round(react["wall_s"], 3),
        "planfile_wall_s": round(ours["wall_s"], 3),
        "latency_ratio": round(react["wall_s"] / ours["wall_s"], 2),
        "react_calls": react["calls"],
        "planfile_calls": ours["calls"],
        "react_tokens": react["tokens"],
        "planfile_tokens": ours["tokens"],
        "react_cost": round(react["cost_usd"], 6),
        "planfile_cost": round(ours["cost_usd"], 6),
        "cost_ratio": round(react["cost_usd"] / ours["cost_usd"], 2),
    }
    benchmark.extra_info.update(info)
    assert info["latency_ratio"] > 1 and info["cost_ratio"] > 1

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


def _compare(react: dict[str, float], ours: dict[str, float]) -> dict[str, float]:
    """The figures a benchmark reports for ReAct against planfile, with their ratios."""
    return {
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
    info = _compare(react, ours)
    benchmark.extra_info.update(info)
    assert info["latency_ratio"] > 1 and info["cost_ratio"] > 1


# --- agent executors against a ReAct single loop (issue 13) -------------------------------
# The same goal, k independent lookups and a calculation, run two ways by the agent loop:
# ReAct: one agent step on the frontier tier, one tool call per model call (k lookups, the
# calculation, then the answer: k + 2 calls, each reading the whole history so far).
# Plan-and-execute: one planner call, then k agent steps on the fast tier in parallel (a
# lookup and an answer each), the calculation as a plain step (no model), and a joiner
# on the standard tier. Fast calls take 0.10 s; prices as above.
FAST_S = 0.10
AGENT_PROMPT, AGENT_ANSWER = 250, 10
AGENT_CONFIG = Config(
    tiers={
        "frontier": "pftest/frontier",
        "standard": "pftest/standard",
        "fast": "pftest/fast",
        "planner": "pftest/frontier",
    },
    models={
        **CONFIG.models,
        "pftest/fast": ModelSettings(input_cost_per_million=0.8, output_cost_per_million=0.8),
    },
)


@tool
async def calculate_sum(numbers: list[float]) -> float:
    """A simulated calculation (no latency): the sum."""
    return float(sum(numbers))


def react_agent_plan(k: int) -> str:
    return (
        f'step answer: str = agent(task: "Look up {k} figures and add them up.", '
        f"tools: [lookup, calculate_sum], max_iterations: {k + 2}, tier: frontier)\n"
        "output answer"
    )


def agent_executor_plan(k: int) -> str:
    """What the planner returns: k parallel agent steps, a calculation, a joiner."""
    lines = [
        f'step a{i}: float = agent(task: "Look up figure {i}.", tools: [lookup], '
        "max_iterations: 3, tier: fast)"
        for i in range(k)
    ]
    numbers = ", ".join(f"a{i}" for i in range(k))
    lines.append(f"step total: float = calculate_sum(numbers: [{numbers}])")
    lines.append('step answer = llm(tier: standard, prompt: "The total is {{ total }}. Answer.")')
    return "\n".join(lines) + "\noutput answer"


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def script_react_agent(k: int) -> None:
    for i in range(k + 2):  # every call reads the whole history so far
        prompt = BASE_PROMPT + i * (OBSERVATION + THOUGHT)
        if i < k:
            calls = [_call("lookup", query=f"figure {i}")]
        elif i == k:
            calls = [_call("calculate_sum", numbers=[42.0] * k)]
        else:
            calls = None
        PROVIDER.add(
            "frontier", Reply("42" if calls is None else "", prompt, THOUGHT, FRONTIER_S, calls)
        )


def script_agent_executors(k: int) -> None:
    PROVIDER.add("frontier", Reply("plan", BASE_PROMPT + 200, 80 * k + 60, FRONTIER_S))
    # The k steps start together: their first calls all come before any second call.
    for _ in range(k):
        PROVIDER.add(
            "fast", Reply("", AGENT_PROMPT, THOUGHT // 2, FAST_S, [_call("lookup", query="x")])
        )
    for _ in range(k):
        prompt = AGENT_PROMPT + OBSERVATION + THOUGHT // 2
        PROVIDER.add("fast", Reply("42", prompt, AGENT_ANSWER, FAST_S))
    PROVIDER.add("standard", Reply("answer", BASE_PROMPT + k * 20, THOUGHT, STANDARD_S))


def measure_agents(text: str, planner_call: bool, tmp: Path) -> dict[str, float]:
    tools = [lookup, calculate_sum]
    engine = Engine(
        tools=tools, config=AGENT_CONFIG, ledger=Ledger(tmp / "ledger.sqlite"), max_parallel=16
    )
    checked = load_plan(text, tools=tools)
    from engine.agent.planner import Usage

    usage = Usage()
    start = time.perf_counter()
    if planner_call:
        asyncio.run(
            engine.model_gateway().call(
                "pftest/frontier",
                [{"role": "user", "content": "plan"}],
                usage=usage,
                run_id="b",
                step_id="planning",
            )
        )
    result = engine.run_sync(checked)
    wall = time.perf_counter() - start
    assert result.status == "succeeded", {s: r.error for s, r in result.steps.items()}
    return {
        "wall_s": wall,
        "calls": len(PROVIDER.calls),
        "tokens": sum(r.input_tokens + r.output_tokens for r in result.steps.values())
        + usage.input_tokens
        + usage.output_tokens,
        "cost_usd": result.cost_usd + usage.cost_usd,
    }


@pytest.mark.parametrize("k", [3, 5, 8])
def test_agent_executors_against_a_react_loop(benchmark: Any, k: int, tmp_path: Path) -> None:
    # Untimed: the first agent run in a process imports the loop and litellm's tool paths.
    PROVIDER.reset()
    script_react_agent(1)
    measure_agents(react_agent_plan(1), False, tmp_path)

    def run_both() -> tuple[dict[str, float], dict[str, float]]:
        PROVIDER.reset()
        script_react_agent(k)
        react = measure_agents(react_agent_plan(k), False, tmp_path)
        PROVIDER.reset()
        script_agent_executors(k)
        ours = measure_agents(agent_executor_plan(k), True, tmp_path)
        return react, ours

    react, ours = benchmark.pedantic(run_both, rounds=1, iterations=1)
    info = _compare(react, ours)
    benchmark.extra_info.update(info)
    print(f"\nk={k}: {info}")
    # LLMCompiler's published ratios on parallel tasks: 1.8-3.7x faster, 3.4-6.7x cheaper.
    assert info["latency_ratio"] >= 1.8 and info["cost_ratio"] >= 3.4

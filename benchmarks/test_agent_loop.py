"""Agent steps: the loop's own cost per tool call, and the embedded model as an agent.

1. Overhead per tool call (component figure): an agent step whose model asks for n tool
   calls, one per reply, then answers, against the same n + 1 replies fetched with bare
   `litellm.acompletion` (sent the very messages the step sent, with the max_tokens and
   timeout the gateway sends) in a minimal loop that awaits the tool function directly. Both use the same in-process scripted provider (litellm's custom-provider
   path, replies in microseconds), so the difference is what planfile adds per call:
   the gateway (pricing, budget, rate limits, ledger row), argument validation, the
   step record, events. Per tool call = (time(n=20) - time(n=0)) / 20 for each side,
   which removes the run's fixed set-up; each time the least of 7 interleaved rounds.
2. The embedded model as an agent (user's path: `planfile run` in a fresh process per
   task, examples/workspace as the working folder): 8 simple tasks over search and
   calculate; how many end with an answer (the step succeeds) rather than a cap, and how
   many answers hold the expected figure.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import Engine, load_plan
from engine.agent.loop import function_spec
from engine.config import Config, ModelSettings
from engine.models.ledger import Ledger
from engine.models.local_model import available
from engine.models.provider import litellm_module
from stdlib_tools import tool
from tests.scripted_provider import Reply, registered

PROVIDER = registered()
ROOT = Path(__file__).resolve().parent.parent
CALLS = 20
ROUNDS = 7


@tool
async def note(text: str) -> str:
    """A tool that costs nothing: echoes its text (async: a sync tool adds the hop to a
    worker thread that any engine makes to keep its event loop free)."""
    return text


def _script(n: int) -> None:
    PROVIDER.reset()
    for i in range(n):
        call = {"id": f"c{i}", "name": "note", "arguments": {"text": f"fact {i}"}}
        PROVIDER.add("bench", Reply("", 200, 20, 0.0, [call]))
    PROVIDER.add("bench", Reply("done", 200, 5))


async def _bare(n: int, conversations: list[list[dict[str, Any]]]) -> float:
    """n tool calls by a minimal loop over bare litellm, sending the very messages the
    agent step sent (`conversations`, one per model call); seconds."""
    litellm = litellm_module()
    specs = [function_spec(note)]
    _script(n)
    start = time.perf_counter()
    for messages in conversations:
        response = await litellm.acompletion(
            model="pftest/bench",
            messages=messages,
            tools=specs,
            _skip_mcp_handler=True,
            max_tokens=1024,
            timeout=600.0,
        )
        for call in response.choices[0].message.tool_calls or []:
            await note(**json.loads(call.function.arguments))
    return time.perf_counter() - start


def _sent() -> list[list[dict[str, Any]]]:
    """The messages of each model call the provider saw since its last reset."""
    return [list(call["messages"]) for call in PROVIDER.calls]


def _loop(engine: Engine, n: int) -> float:
    """n tool calls by an agent step; seconds (the run's set-up included)."""
    plan = load_plan(
        f'step a: str = agent(task: "take notes", tools: [note], max_iterations: {n + 1}, '
        "tier: fast)\noutput a",
        tools=[note],
    )
    _script(n)
    start = time.perf_counter()
    result = engine.run_sync(plan)
    elapsed = time.perf_counter() - start
    assert result.status == "succeeded", result.steps["a"].error
    assert len(result.steps["a"].tool_calls or []) == n
    return elapsed


def test_loop_overhead_per_tool_call(benchmark: Any, tmp_path: Path) -> None:
    config = Config(
        tiers={"fast": "pftest/bench"},
        models={"pftest/bench": ModelSettings(input_cost_per_million=1, output_cost_per_million=1)},
    )
    engine = Engine(tools=[note], config=config, ledger=Ledger(tmp_path / "ledger.sqlite"))
    # Untimed: imports and first-use caches, and the conversations the bare loop replays.
    _loop(engine, CALLS)
    long = _sent()
    _loop(engine, 0)
    short = _sent()
    asyncio.run(_bare(CALLS, long))

    def measure() -> dict[str, float]:
        times: dict[str, list[float]] = {"loop": [], "loop0": [], "bare": [], "bare0": []}
        for _ in range(ROUNDS):
            times["loop"].append(_loop(engine, CALLS))
            times["loop0"].append(_loop(engine, 0))
            times["bare"].append(asyncio.run(_bare(CALLS, long)))
            times["bare0"].append(asyncio.run(_bare(0, short)))
        # The least of each: on a shared machine the noise only ever adds time.
        least = {name: min(values) for name, values in times.items()}
        return {
            "loop": (least["loop"] - least["loop0"]) / CALLS,
            "bare": (least["bare"] - least["bare0"]) / CALLS,
        }

    figures = benchmark.pedantic(measure, rounds=1, iterations=1)
    info = {
        "bare_ms_per_tool_call": round(figures["bare"] * 1000, 3),
        "loop_ms_per_tool_call": round(figures["loop"] * 1000, 3),
        "overhead_pct": round((figures["loop"] / figures["bare"] - 1) * 100, 1),
    }
    benchmark.extra_info.update(info)
    print(f"\n{info}")
    assert info["loop_ms_per_tool_call"] > 0


# (task, a string the answer should contain)
LOCAL_TASKS = [
    ("What is 17 * 23? Use the calculate tool.", "391"),
    ("Calculate 150000 * 0.30.", "45000"),
    ("Compute (1200 - 200) / 4.", "250"),
    ("What is 2 ** 10?", "1024"),
    ("Search the notes: what share of gross income should housing take?", "30"),
    ("Search: how many times CAC should customer lifetime value be?", "three"),
    ("Search: within how many months should CAC be paid back?", "12"),
    ("Search: what does HUD call households paying over 30% of income for housing?", "burden"),
]


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="embedded model not installed")
def test_local_model_agent_steps_end_with_an_answer(benchmark: Any, tmp_path: Path) -> None:
    planfile = str(Path(sys.executable).parent / "planfile")

    def run_all() -> list[dict[str, Any]]:
        rows = []
        for i, (task, expected) in enumerate(LOCAL_TASKS):
            plan = tmp_path / f"task{i}.plan"
            plan.write_text(
                f"step a: str = agent(task: {json.dumps(task)}, tools: [search, calculate], "
                "max_iterations: 4)\noutput a\n"
            )
            start = time.perf_counter()
            done = subprocess.run(
                [planfile, "run", str(plan), "--json"],
                cwd=ROOT / "examples" / "workspace",
                capture_output=True,
                text=True,
                timeout=600,
            )
            record = json.loads(done.stdout)["steps"]["a"]
            answer = record.get("output")
            rows.append(
                {
                    "answered": record["status"] == "succeeded",
                    "correct": isinstance(answer, str) and expected in answer.replace(",", ""),
                    "tool_calls": len(record.get("tool_calls") or []),
                    "iterations": record.get("iterations", 0),
                    "wall_s": time.perf_counter() - start,
                    "error": record.get("error"),
                    "answer": str(answer)[:80],
                }
            )
        return rows

    rows = benchmark.pedantic(run_all, rounds=1, iterations=1)
    info = {
        "tasks": len(rows),
        "answered": sum(r["answered"] for r in rows),
        "correct": sum(r["correct"] for r in rows),
        "mean_tool_calls": round(statistics.mean(r["tool_calls"] for r in rows), 2),
        "mean_model_calls": round(statistics.mean(r["iterations"] for r in rows), 2),
        "mean_wall_s": round(statistics.mean(r["wall_s"] for r in rows), 1),
        "errors": sorted({r["error"] for r in rows if r["error"]}),
        "answers": [r["answer"] for r in rows],
    }
    benchmark.extra_info.update(info)
    print(f"\n{info}")
    assert info["tasks"] == len(LOCAL_TASKS)

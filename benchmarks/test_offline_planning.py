"""Offline planning with the embedded model: the share of 20 goals that yield a plan that
checks, on the first try and after up to two repairs. Slow (minutes): the real model.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.agent.planner import Planner, allowed_tools
from engine.api import Engine
from engine.models.local_model import available

GOALS = [
    "What is 15% of 2400?",
    "Add 1250 and 3780, then divide the sum by 4.",
    "What does the corpus say about Texas state income tax?",
    "Summarize what the corpus says about ReWOO.",
    "Find the SaaS rule of thumb for LTV to CAC and explain it in one sentence.",
    "Compute the monthly payment share: 2500 rent on a 9000 monthly income, as a percentage.",
    "Search for the duplicate charge refund policy and draft a short reply to a customer.",
    "How many days are in 7 weeks?",
    "Compare housing costs in San Francisco and Austin using the corpus.",
    "Read orders.json from the workspace and count the paid orders.",
    "List the files in the workspace.",
    "What is the square root of 1764?",
    "Find what LLMCompiler reports about latency and summarize it.",
    "Write a two-sentence note about California's top income tax rate to a file called note.md.",
    "Calculate 12 * 37 and 48 / 6, then add the results.",
    "What does HUD call households paying more than 30% of income for housing?",
    "Explain plan-and-execute agents in three sentences using the corpus.",
    "What is 2 to the power of 16?",
    "Search the corpus for Acme Robotics and extract its number of employees.",
    "Convert 72 degrees Fahrenheit to Celsius.",
]


@pytest.mark.skipif(not available(), reason="embedded model not installed")
def test_offline_planning_success_rate(benchmark: Any) -> None:
    engine = Engine()
    tools = allowed_tools(engine.registry)
    planner = Planner(engine.model_gateway(), tools, tiers=engine.tier_map(), max_repairs=2)

    def run_all() -> list[tuple[bool, int]]:
        outcomes = []
        for goal in GOALS:
            planned = asyncio.run(planner.plan(goal))
            outcomes.append((planned.ok, len(planned.attempts)))
        return outcomes

    outcomes = benchmark.pedantic(run_all, rounds=1, iterations=1)
    first = sum(1 for ok, attempts in outcomes if ok and attempts == 1)
    repaired = sum(1 for ok, _ in outcomes if ok)
    benchmark.extra_info.update(
        {
            "goals": len(GOALS),
            "first_try": first,
            "after_repair": repaired,
            "first_try_share": first / len(GOALS),
            "after_repair_share": repaired / len(GOALS),
        }
    )

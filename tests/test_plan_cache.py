"""The plan cache: abstraction of goals, safe reuse, hits and misses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.ir import Plan, Step
from engine.api import Engine
from engine.store.plan_cache import PlanCache, abstract_goal
from stdlib_tools import ToolRegistry

from .scripted_provider import Reply, registered

PROVIDER = registered()


def test_goal_abstraction() -> None:
    """Numbers, quoted strings and names become slots; a first word is not a name."""
    template, slots = abstract_goal('Compare "rent" in San Francisco and Austin on 150000 a year')
    assert template == "Compare {s1} in {e1} and {e2} on {n1} a year"
    assert [(s.name, s.text) for s in slots] == [
        ("s1", "rent"),
        ("e1", "San Francisco"),
        ("e2", "Austin"),
        ("n1", "150000"),
    ]


def plan_for(number: str) -> Plan:
    return Plan(
        name="p",
        steps=(
            Step(id="share", tool="calculate", args={"expression": f"{number} * 0.15"}),
            Step(id="k", tool="search", args={"query": "tax", "k": 2}),
        ),
        outputs=("share",),
    )


def test_hit_reuses_the_plan_with_new_values(tmp_path: Path, registry: ToolRegistry) -> None:
    """A recurring goal with a new number reuses the plan, the number as an input."""
    cache = PlanCache(tmp_path / "cache.sqlite")
    used = cache.store("What is 15% of 2400?", plan_for("2400"), registry, "m", 0.01)
    assert used == ["n2"]
    hit = cache.lookup("What is 15% of 3000?", registry, "m")
    assert hit is not None and hit.inputs == {"n2": "3000"} and hit.saved_usd == 0.01
    result = Engine().run_sync(hit.plan, hit.inputs)
    assert result.outputs == {"share": 450.0}
    assert hit.plan.steps[1].args == {"query": "tax", "k": 2}  # numbers outside strings untouched


def test_miss_when_an_unmentioned_part_changes(tmp_path: Path, registry: ToolRegistry) -> None:
    """15% is baked into the plan as 0.15, so 20% must not reuse it."""
    cache = PlanCache(tmp_path / "cache.sqlite")
    cache.store("What is 15% of 2400?", plan_for("2400"), registry, "m", 0.01)
    assert cache.lookup("What is 20% of 2400?", registry, "m") is None
    assert cache.lookup("What is 15% of 2400?", registry, "other-model") is None
    assert cache.lookup("Explain 15% of 2400", registry, "m") is None


def test_ask_uses_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The second `ask` of a recurring goal skips the planner call."""
    from engine.cli.main import main

    config = tmp_path / "planfile.toml"
    config.write_text('[tiers]\nplanner = "pftest/planner"\n')
    plan = {
        "goal": "g",
        "steps": [
            {
                "id": "share",
                "tool": "calculate",
                "args": {"expression": "2400 * 0.15"},
                "depends_on": [],
                "description": "d",
            },
            {
                "id": "answer",
                "tool": "summarize",
                "args": {"text": "{{ share }}", "words": 10},
                "depends_on": ["share"],
                "description": "d",
            },
        ],
        "outputs": ["answer"],
    }
    PROVIDER.reset()
    PROVIDER.add("planner", Reply(plan))
    PROVIDER.default["standard"] = Reply("an answer")
    args = ["ask", "--config", str(config), "--tier", "standard=pftest/standard", "--json"]
    assert main([*args, "What is 15% of 2400?"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*args, "What is 15% of 3000?"]) == 0
    captured = capsys.readouterr()
    second = json.loads(captured.out)
    assert "plan from the cache" in captured.err
    assert (
        first["steps"]["share"]["output"] == 360.0 and second["steps"]["share"]["output"] == 450.0
    )
    assert [c["model"] for c in PROVIDER.calls].count("planner") == 1
    assert main([*args, "--no-cache", "What is 15% of 3000?"]) == 1  # planner has no more replies

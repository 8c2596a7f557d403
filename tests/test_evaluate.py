"""The planner evaluation: TaskBench-style scores, goal files, and `planfile eval-planner`
against a scripted planner that returns the reference plans (it must score 1.0)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsl.checker import check
from dsl.json_loader import load_json
from engine.agent.evaluate import (
    Goal,
    Shape,
    copied_phrase,
    from_counts,
    micro,
    percentile,
    prf,
    score,
    shape_of,
    shingles,
    written_steps,
)
from engine.agent.goal_file import GoalFileError, load_goals
from engine.agent.planner import SAFE_TOOLS, add_joiner
from engine.cli.main import main
from stdlib_tools import ToolRegistry

from .scripted_provider import Reply, registered

PROVIDER = registered()
ROOT = Path(__file__).resolve().parent.parent
GOALS = ROOT / "benchmarks" / "planner_goals"
TOOL_NAMES = ["calculate", "search", "llm", "summarize", "extract", "read_file"]

tool_lists = st.lists(st.sampled_from(TOOL_NAMES), max_size=8)


@pytest.fixture(autouse=True)
def fresh() -> None:
    PROVIDER.reset()


# --- the scores -------------------------------------------------------------------------


@given(tool_lists, tool_lists)
def test_scores_are_within_0_and_1(predicted: list[str], expected: list[str]) -> None:
    s = prf(predicted, expected)
    assert 0 <= s.precision <= 1 and 0 <= s.recall <= 1 and 0 <= s.f1 <= 1
    # F1 is the harmonic mean of precision and recall.
    assert min(s.precision, s.recall) - 1e-12 <= s.f1 <= max(s.precision, s.recall) + 1e-12


@given(tool_lists)
def test_identical_lists_score_1(items: list[str]) -> None:
    assert prf(items, list(reversed(items))).f1 == 1.0


@given(tool_lists, tool_lists)
def test_swapping_prediction_and_reference_swaps_precision_and_recall(
    a: list[str], b: list[str]
) -> None:
    forward, backward = prf(a, b), prf(b, a)
    assert forward.precision == backward.recall and forward.recall == backward.precision
    assert forward.f1 == pytest.approx(backward.f1)


def test_multisets_count_repeats() -> None:
    """Two searches where the reference has one: half the searches are extra."""
    s = prf(["search", "search", "llm"], ["search", "llm"])
    assert (s.hits, s.predicted, s.expected) == (2, 3, 2)
    assert s.precision == pytest.approx(2 / 3) and s.recall == 1.0
    assert prf([], ["llm"]).f1 == 0.0 and prf(["llm"], []).f1 == 0.0


@given(st.lists(st.tuples(tool_lists, tool_lists), min_size=1, max_size=5))
def test_micro_average_sums_the_counts(pairs: list[tuple[list[str], list[str]]]) -> None:
    scores = [prf(a, b) for a, b in pairs]
    total = micro(scores)
    assert total.hits == sum(s.hits for s in scores)
    assert 0 <= total.f1 <= 1
    assert micro(scores[:1]) == from_counts(scores[0].hits, scores[0].predicted, scores[0].expected)


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=30), st.floats(0, 100))
def test_percentile_is_one_of_the_values(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values and min(values) <= p <= max(values)
    assert percentile(values, 100) == max(values) and percentile(values, 0) == min(values)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.0 and percentile(values, 90) == 9.0
    assert percentile([], 50) is None


@st.composite
def plan_docs(draw: st.DrawFn) -> dict[str, Any]:
    """Random plans over safe tools: each step may use any earlier step's result."""
    steps: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 6))):
        deps = sorted(draw(st.sets(st.integers(0, index - 1), max_size=3))) if index else []
        refs = " ".join(f"{{{{ s{d + 1} }}}}" for d in deps)
        tool = draw(st.sampled_from(["calculate", "search", "llm", "summarize"]))
        args = {
            "calculate": {"expression": " + ".join([*(f"{{{{ s{d + 1} }}}}" for d in deps), "1"])},
            "search": {"query": f"facts {refs}"},
            "llm": {"prompt": f"answer {refs}"},
            "summarize": {"text": f"text {refs}"},
        }[tool]
        steps.append({"id": f"s{index + 1}", "tool": tool, "args": args})
    return {"goal": "g", "steps": steps}


@given(plan_docs())
def test_a_plan_scored_against_itself_scores_1(doc: dict[str, Any]) -> None:
    registry = ToolRegistry.standard()
    plan, smap = load_json(doc, "p.json", registry)
    checked = check(plan, registry, smap)
    shape = shape_of(checked)
    assert shape.nodes == tuple(s["tool"] for s in doc["steps"])
    assert len(shape.edges) == sum(len(d) for d in checked.deps.values())
    goal = Goal("g", "g", shape.tools, "t", shape)
    tools, nodes, edges = score(goal, shape)
    assert tools.f1 == 1.0 and nodes is not None and nodes.f1 == 1.0
    assert edges is not None and edges.f1 == 1.0
    # The joiner planning appends is not the planner's choice: it is not scored.
    joined = check(add_joiner(plan, registry), registry)
    assert shape_of(joined, registry) == shape


def test_a_final_llm_step_the_model_wrote_is_kept(registry: ToolRegistry) -> None:
    doc = {
        "steps": [
            {"id": "a", "tool": "search", "args": {"query": "x"}},
            {"id": "answer", "tool": "llm", "args": {"prompt": "{{ a }}"}},
        ],
        "outputs": ["answer"],
    }
    plan, _ = load_json(doc, "p.json", registry)
    assert [s.id for s in written_steps(plan, registry)] == ["a", "answer"]


def test_a_failed_plan_scores_0() -> None:
    goal = Goal("g", "g", frozenset({"calculate"}), "t", Shape(("calculate",), ()))
    tools, nodes, edges = score(goal, None)
    assert tools.f1 == 0 and nodes is not None and nodes.f1 == 0
    # No edges expected and none written: nothing to get wrong.
    assert edges is not None and edges.f1 == 1.0


def test_text_copied_from_an_example_is_found_unless_the_goal_has_it() -> None:
    example = "Draft a polite reply to a customer asking for a refund after 45 days"
    examples = shingles([example])
    copied = ["Draft a polite reply to a customer asking for a refund. Policy: {{ s1 }}"]
    phrase = copied_phrase(copied, examples, "Compare rents in two cities")
    assert phrase is not None and len(phrase.split()) == 4 and phrase in example.lower()
    goal = "Draft a polite reply to a customer asking for a refund"
    assert copied_phrase(copied, examples, goal) is None
    # Step ids are positional, not text: `{{ s1 }}` never makes a run match.
    ids = "{{ s1 }} {{ s2 }} {{ s3 }} {{ s4 }} {{ s5 }}"
    assert copied_phrase([ids], shingles(["s1 s2 s3 s4 s5"]), "g") is None


@given(st.lists(st.text(max_size=60), max_size=4), st.text(max_size=60))
def test_text_the_examples_do_not_have_is_never_a_copy(texts: list[str], goal: str) -> None:
    assert copied_phrase(texts, frozenset(), goal) is None
    # The goal's own words are never a copy, whatever the examples hold.
    assert copied_phrase([goal], shingles([goal]), goal) is None


# --- goal files -------------------------------------------------------------------------


def test_the_shipped_goal_set(registry: ToolRegistry) -> None:
    """At least 40 goals, 20 of them held out, each with expected tools and a reference
    plan that checks; no held-out goal is shown to the planner."""
    tuned = load_goals(GOALS / "tuned.jsonl", registry)
    heldout = load_goals(GOALS / "heldout.jsonl", registry)
    assert len(tuned) + len(heldout) >= 40 and len(heldout) >= 20
    assert {g.split for g in tuned} == {"tuned"} and {g.split for g in heldout} == {"heldout"}
    assert all(g.reference is not None and g.tools <= set(SAFE_TOOLS) for g in tuned + heldout)
    assert len({g.goal for g in tuned + heldout}) == len(tuned) + len(heldout)
    prompts = ROOT / "engine" / "agent" / "prompts"
    shown = " ".join(p.read_text(encoding="utf-8") for p in prompts.rglob("*") if p.is_file())
    examples = [
        text for p in prompts.rglob("*.json") for text in _goals_in(json.loads(p.read_text()))
    ]
    for goal in heldout:
        assert goal.goal[:40] not in shown, goal.id
        # Not a paraphrase of an example either (word overlap; today's closest is 0.29).
        near = max(examples, key=lambda e: _overlap(goal.goal, e), default="")
        assert _overlap(goal.goal, near) < 0.5, (goal.id, near)


def _goals_in(doc: Any) -> list[str]:
    """Every `goal` text anywhere in a JSON document (the prompt's example files)."""
    if isinstance(doc, dict):
        found = [doc["goal"]] if isinstance(doc.get("goal"), str) else []
        return found + [g for value in doc.values() for g in _goals_in(value)]
    if isinstance(doc, list):
        return [g for item in doc for g in _goals_in(item)]
    return []


def _overlap(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' content words."""
    stop = {"the", "a", "of", "and", "to", "in", "on", "is", "what", "for", "my", "our", "it"}
    wa, wb = (set(re.findall(r"[a-z0-9]+", t.lower())) - stop for t in (a, b))
    return len(wa & wb) / len(wa | wb) if wa | wb else 0.0


def test_bad_goal_lines_are_reported_with_their_line(
    tmp_path: Path, registry: ToolRegistry
) -> None:
    path = tmp_path / "goals.jsonl"
    bad_reference = {"steps": [{"id": "a", "tool": "calculate", "args": {"expresion": "1"}}]}
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "ok", "goal": "What is 2+2?", "tools": ["calculate"]}),
                "{not json",
                json.dumps({"goal": "g", "tools": ["teleport"]}),
                json.dumps({"goal": "g", "tools": ["llm"], "reference": bad_reference}),
                json.dumps({"goal": "", "tool": ["llm"]}),
                json.dumps({"id": "ok", "goal": "again", "tools": ["llm"]}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(GoalFileError) as caught:
        load_goals(path, registry)
    text = caught.value.render()
    assert f"{path}:2:2: error: not JSON" in text
    assert f"{path}:3:1: error: unknown tool `teleport`" in text
    assert f"{path}:4:1: error: the reference plan does not check" in text and "expresion" in text
    assert f"{path}:5:1: error: unknown key `tool`" in text
    assert f"{path}:5:1: error: `goal` must be a non-empty string" in text
    assert f"{path}:6:1: error: goal id `ok` is also on line 1" in text


def test_the_command_reports_a_bad_goal_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "goals.jsonl"
    path.write_text('{"goal": "x", "tools": []}\n', encoding="utf-8")
    assert main(["eval-planner", str(path)]) == 2
    assert f"{path}:1:1: error: `tools` must be a non-empty list" in capsys.readouterr().err
    assert not PROVIDER.calls


# --- the command, against a scripted planner --------------------------------------------


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "planfile.toml"
    path.write_text(
        '[tiers]\nplanner = "pftest/planner"\n\n[models."pftest/planner"]\n'
        "input_cost_per_million = 1.0\noutput_cost_per_million = 2.0\n",
        encoding="utf-8",
    )
    return path


def test_a_planner_that_writes_the_references_scores_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stronger model (scripted: it answers each goal with its reference plan) checks
    every goal first try and scores 1.0; the llm-only baseline scores less."""
    registry = ToolRegistry.standard()
    files = [GOALS / "tuned.jsonl", GOALS / "heldout.jsonl"]
    goals = [g for f in files for g in load_goals(f, registry)[:6]]
    for lines in (f.read_text(encoding="utf-8").splitlines()[:6] for f in files):
        for raw in lines:
            PROVIDER.add("planner", Reply(json.loads(raw)["reference"], 1000, 200))
    report_path = tmp_path / "report.json"
    code = main(
        [
            "eval-planner",
            *map(str, files),
            "--config",
            str(_config(tmp_path)),
            "--limit",
            "6",
            "--baseline",
            "llm-only",
            "-o",
            str(report_path),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["planner"] == "pftest/planner" and len(report["goals"]) == len(goals)
    for split in ("tuned", "heldout", "all"):
        s = report["splits"][split]
        assert s["checks_first_try"] == s["checks"] == s["goals"]
        assert s["tool_f1"] == s["node_f1"] == s["edge_f1"] == 1.0
        assert s["cost_usd_total"] == pytest.approx(s["goals"] * (1000 * 1e-6 + 200 * 2e-6))
        assert s["seconds_p90"] >= s["seconds_median"] > 0
        assert report["baseline"]["splits"][split]["tool_f1"] < 1.0
    assert [g["id"] for g in report["goals"]] == [g.id for g in goals]
    # The table: one row per split and planner, the baseline beside the planner.
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:3] == ["split", "planner", "goals"]
    assert [r[:2] for r in rows[1:]] == [
        [split, who]
        for split in ("tuned", "heldout", "all")
        for who in ("pftest/planner", "llm-only")
    ]
    assert "[12/12] heldout" in err


def test_a_goal_past_its_deadline_fails_and_the_rest_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    goals = tmp_path / "goals.jsonl"
    goals.write_text(
        '{"id": "slow", "goal": "What is 2+2?", "tools": ["calculate"]}\n'
        '{"id": "fast", "goal": "What is 3+3?", "tools": ["calculate"]}\n',
        encoding="utf-8",
    )
    plan = {"steps": [{"id": "s1", "tool": "calculate", "args": {"expression": "3+3"}}]}
    PROVIDER.add("planner", Reply(plan, delay_s=30), Reply(plan))
    config = str(_config(tmp_path))
    code = main(["eval-planner", str(goals), "--config", config, "--timeout", "0.5", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)
    slow, fast = report["goals"]
    assert not slow["checks"] and "longer than 0.5 s" in slow["error"]
    assert slow["seconds"] < 5
    assert fast["checks"] and fast["tools"]["f1"] == 1.0
    assert report["splits"]["goals"]["errors"] == 1


@pytest.mark.slow
def test_the_evaluation_runs_against_an_openai_compatible_server(
    llama_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The planner tier on llama.cpp's server (the embedded model behind HTTP, priced):
    the same command, the same code path as with any provider."""
    config = tmp_path / "planfile.toml"
    config.write_text(
        '[tiers]\nplanner = "openai/smollm2"\n\n[models."openai/smollm2"]\n'
        f'api_base = "{llama_server}"\napi_key = "local"\n'
        "input_cost_per_million = 0.1\noutput_cost_per_million = 0.2\n",
        encoding="utf-8",
    )
    goals = [str(GOALS / "heldout.jsonl")]
    options = ["--config", str(config), "--limit", "2", "--max-repairs", "1", "--json"]
    assert main(["eval-planner", *goals, *options, "--timeout", "300"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["planner"] == "openai/smollm2" and len(report["goals"]) == 2
    for goal in report["goals"]:
        assert goal["error"] is None and 1 <= goal["attempts"] <= 2
        assert goal["input_tokens"] > 0 and 0 <= goal["tools"]["f1"] <= 1
        expected = goal["input_tokens"] * 0.1e-6 + goal["output_tokens"] * 0.2e-6
        assert goal["cost_usd"] == pytest.approx(expected)
    s = report["splits"]["heldout"]
    assert s["goals"] == 2 and 0 <= s["checks"] <= 2 and s["seconds_median"] > 0


def test_a_budget_stops_the_evaluation_with_the_goals_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    goals = tmp_path / "goals.jsonl"
    goals.write_text('{"goal": "What is 2+2?", "tools": ["calculate"]}\n', encoding="utf-8")
    config = str(_config(tmp_path))
    report = tmp_path / "report.json"
    options = ["--config", config, "--budget", "0.0001", "-o", str(report)]
    code = main(["eval-planner", str(goals), *options])
    assert code == 3
    assert "stopped early" in capsys.readouterr().err and not PROVIDER.calls
    assert "budget" in json.loads(report.read_text(encoding="utf-8"))["stopped"]

"""`planfile bench`: the virtual-clock simulation, its figures, its errors, and reality.

The validation tests run sleep tools for real through the Engine and compare the wall
time with the simulated makespan of the same plan and settings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, load_plan
from engine.cli.main import main
from engine.errors import UsageError
from engine.sim.bench import Bench, BenchSpec
from engine.sim.estimates import Estimator, Latency, parse_latency, resolve_keys
from engine.sim.report import run_all
from stdlib_tools import tool

from .sim_tools import SIM_TOOLS

SIM_TOOLS_FILE = str(Path(__file__).parent / "sim_tools.py")


def bench(
    text: str,
    slots: int = 16,
    limits: dict[str, int] | None = None,
    latency: dict[str, str] | None = None,
    tools: list[Any] = SIM_TOOLS,
    **spec: Any,
) -> tuple[Bench, Any]:
    engine = Engine(tools=tools)
    checked = load_plan(text, tools=tools)
    overrides = dict(parse_latency(f"{k}={v}") for k, v in (latency or {}).items())
    estimator = Estimator(engine.registry, resolve_keys(overrides, engine.registry, []))
    b = Bench(
        checked,
        engine.registry,
        estimator,
        BenchSpec(max_parallel=[slots], limits=limits or {}, **spec),
    )
    return b, run_all(b)[slots]


def makespan(text: str, slots: int = 16, **kwargs: Any) -> float:
    return bench(text, slots, **kwargs)[1][0].makespan


CHAIN = "step a = nap50()\nstep b = nap100(x: a)\nstep c = nap200(x: b)\nstep d = nap50(x: c)\n"
DIAMOND = (
    "step a = nap50()\nstep b = nap200(x: a)\nstep c = nap100(x: a)\nstep d = nap100(x: a)\n"
    "step e = nap50(x: a)\nstep z = nap50(x: [b, c, d, e])\n"
)
FAN = (
    "input items: list[int] = [1, 2, 3, 4, 5, 6, 7]\n"
    "step f: list[int] = for i in items: nap100(x: i)\nstep g = nap50(x: f)\n"
)


def test_chain_takes_the_sum_of_its_steps() -> None:
    assert makespan(CHAIN) == pytest.approx(0.4)


def test_fan_out_runs_its_items_at_once_or_within_the_limit() -> None:
    """Seven 100 ms items: all at once (0.1 s), or two at a time under a tool limit."""
    assert makespan(FAN) == pytest.approx(0.15)
    assert makespan(FAN, limits={"tool:nap100": 2}) == pytest.approx(0.45)
    assert makespan(FAN, fan_out={"f": 3}) == pytest.approx(0.15)
    assert makespan(FAN, inputs={"items": list(range(20))}, slots=5) == pytest.approx(0.45)


def test_critical_path_priority_orders_the_ready_steps() -> None:
    """With 2 slots the engine starts the long branch first: 0.35 s, not 0.40 s (FIFO)."""
    _, runs = bench(DIAMOND, slots=2)
    assert runs[0].makespan == pytest.approx(0.35)
    assert runs[0].critical_steps == ["a", "b", "z"]


def test_superstep_and_one_at_a_time_baselines() -> None:
    """A long and a short step, the short one's dependent: supersteps wait for the long."""
    text = "step a = nap200()\nstep b = nap50()\nstep c = nap100(x: b)\n"
    _, runs = bench(text)
    assert runs[0].makespan == pytest.approx(0.2)
    assert runs[0].superstep == pytest.approx(0.3)
    assert runs[0].work == pytest.approx(0.35)
    assert makespan(text, slots=1) == pytest.approx(0.35)


def test_the_last_step_to_start_says_what_it_waited_for() -> None:
    _, runs = bench(CHAIN)
    last = runs[0].last
    assert last["step"] == "d" and last["waits_on"] == "dependencies"
    assert last["chain"] == ["a", "b", "c"]
    _, runs = bench(FAN, limits={"tool:nap100": 2})
    last = runs[0].last
    assert last["step"] == "g" and last["chain"] == ["f"]
    assert "`f[6]` waited 0.3s for a slot" in last["reason"]
    assert "the limit tool:nap100=2 was full" in last["reason"]
    fan_only = FAN.split("step g")[0]
    _, runs = bench(fan_only, slots=3)
    last = runs[0].last
    assert last["step"] == "f[6]" and last["waits_on"] == "slot"
    assert "all 3 slots" in last["reason"]


def test_when_is_taken_as_true_unless_skipped() -> None:
    text = 'step a = nap200()\nstep b = nap100(x: a)\n    when "a > 5"\nstep c = nap50(x: b)\n'
    assert makespan(text) == pytest.approx(0.35)
    assert makespan(text, when_false={"b"}) == pytest.approx(0.25)


def test_jitter_is_seeded_and_runs_give_percentiles() -> None:
    spread = {"nap": "0.1±50%"}
    text = "step a = nap(seconds: 0.1)\nstep b = nap(seconds: 0.1, x: a)\n"
    first = [m.makespan for m in bench(text, latency=spread, runs=20)[1]]
    again = [m.makespan for m in bench(text, latency=spread, runs=20)[1]]
    other = [m.makespan for m in bench(text, latency=spread, runs=20, seed=7)[1]]
    assert first == again != other
    assert all(0.1 <= m <= 0.3 for m in first) and len(set(first)) == 20


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("search", "expected KEY=SECONDS"),
        ("search=fast", "expected KEY=SECONDS"),
        ("search=1±200%", "at most 100%"),
        ("search=1e999", "finite"),
        ("search=1e308", r"at most 1e\+06"),
        ("search=1±2e6", r"at most 1e\+06"),
    ],
)
def test_bad_latency_specs_are_usage_errors(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_latency(text)


def test_latency_specs() -> None:
    assert parse_latency("tier:frontier=6±1.5") == ("tier:frontier", Latency(6.0, 1.5))
    assert parse_latency("llm=2+-25%") == ("llm", Latency(2.0, 0.25, relative=True))
    with pytest.raises(UsageError, match="no tool or tier"):
        resolve_keys({"nosuch": Latency(1.0)}, {}, [])


def test_agent_and_model_steps_are_estimated_per_tier_and_priced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An agent step is 3 model calls with a tool call between each two; an llm step's
    tier comes from its task; the cost is tokens x the tier's model's price."""
    path = tmp_path / "agent.plan"
    path.write_text(
        'step a = agent(task: "find the population of Lyon", tools: [search, calculate],'
        " tier: fast)\n"
        'step b = llm(prompt: "Summarize {{ a }}")\n    task writing\n'
    )
    code, out, _ = cli(
        capsys,
        "bench",
        str(path),
        "--latency",
        "search=0.5",
        "--latency",
        "calculate=0.1",
        "--tier",
        "fast=openai/gpt-4o-mini",
        "--tier",
        "standard=openai/gpt-4o",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    # 3 fast calls (1 s) + 2 tool calls (mean of 0.5 and 0.1 s) + 1 standard call (3 s)
    assert doc["critical_path"]["seconds"]["mean"] == pytest.approx(3 + 2 * 0.3 + 3)
    fast, standard = doc["cost"]["tiers"]
    assert (fast["tier"], fast["calls"], standard["tier"], standard["calls"]) == (
        "fast",
        3,
        "standard",
        1,
    )
    assert standard["model"] == "openai/gpt-4o" and standard["usd"] > fast["usd"] > 0
    assert doc["cost"]["total_usd"] == pytest.approx(fast["usd"] + standard["usd"])


def test_expected_cost_is_shown_beside_the_estimate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            {
                "name": "p",
                "expected_cost_usd": 0.25,
                "steps": [{"id": "a", "tool": "llm", "args": {"prompt": "hi"}}],
            }
        )
    )
    code, out, _ = cli(capsys, "bench", str(path))
    assert code == 0 and "(the plan expects $0.2500)" in out


# --- property: the simulated makespan respects the bounds of any schedule -------------


@tool(latency_s=0.001)
async def unit() -> None:
    """Nothing."""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.sets(st.integers(0, 30), max_size=3)),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 6),
)
def test_makespan_bounds(spec: list[tuple[float, set[int]]], slots: int) -> None:
    """critical path <= makespan <= work, work / slots <= makespan, and with enough slots
    the makespan is the critical path (a step starts the moment its inputs are done)."""
    lines = []
    for node, (_, needs) in enumerate(spec):
        before = sorted(d for d in needs if d < node)
        after = f" after {', '.join(f's{d}' for d in before)}" if before else ""
        lines.append(f"step s{node} = nap(seconds: 0){after}")
    text = "\n".join(lines) + "\n"
    engine = Engine(tools=SIM_TOOLS)
    checked = load_plan(text, tools=SIM_TOOLS)
    b = Bench(checked, engine.registry, Estimator(engine.registry), BenchSpec([slots, 1000]))
    draw = b.draw(0)
    draw.top[:] = [seconds for seconds, _ in spec]
    bounded, unbounded = b.run(draw, slots), b.run(draw, 1000)
    eps = 1e-9
    assert bounded.critical_path - eps <= bounded.makespan <= bounded.work + eps
    assert bounded.makespan >= bounded.work / slots - eps
    assert unbounded.makespan == pytest.approx(unbounded.critical_path)
    assert bounded.superstep >= unbounded.makespan - eps


# --- the command ----------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fan_plan(tmp_path: Path) -> str:
    path = tmp_path / "fan.plan"
    path.write_text(FAN + 'step w = llm(tier: frontier, prompt: "Report on {{ g }}")\n')
    return str(path)


def test_cli_json_what_if_table_and_cost(
    capsys: pytest.CaptureFixture[str], fan_plan: str, tmp_path: Path
) -> None:
    code, out, _ = cli(
        capsys,
        "bench",
        fan_plan,
        "--tools",
        SIM_TOOLS_FILE,
        "--max-parallel",
        "16",
        "--max-parallel",
        "2",
        "--latency",
        "frontier=4",
        "--tier",
        "frontier=openai/gpt-4o",
        "--json",
        "--html",
        str(tmp_path / "bench.html"),
    )
    assert code == 0
    doc = json.loads(out)
    wide, narrow = doc["configurations"]
    assert (wide["max_parallel"], narrow["max_parallel"]) == (16, 2)
    assert wide["makespan_s"]["mean"] == pytest.approx(4.15)
    assert narrow["makespan_s"]["mean"] == pytest.approx(4.45)
    assert doc["critical_path"]["steps"] == ["f", "g", "w"]
    assert doc["calls"] == 9 and doc["work_s"]["mean"] == pytest.approx(4.75)
    (tier,) = doc["cost"]["tiers"]
    assert tier["tier"] == "frontier" and tier["model"] == "openai/gpt-4o"
    assert tier["calls"] == 1 and tier["usd"] > 0 and tier["price_known"]
    page = (tmp_path / "bench.html").read_text()
    assert "<svg" in page and 'data-step="w"' in page


def test_cli_text_report(capsys: pytest.CaptureFixture[str], fan_plan: str) -> None:
    code, out, _ = cli(capsys, "bench", fan_plan, "--tools", SIM_TOOLS_FILE, "--runs", "3")
    assert code == 0
    assert "critical path 6.15s: f → g → w" in out  # a frontier call: 6 s by default
    assert "starts last" in out and "estimated cost" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latency", "nap=slow"], "--latency `nap=slow`"),
        (["--latency", "nosuch=1"], "--latency nosuch: no tool or tier"),
        (["--fan-out", "g=3"], "--fan-out g: no fan-out"),
        (["--skip", "nosuch"], "--skip nosuch: the plan has no step"),
        (["--limit", "tool:nap"], "--limit takes KIND:NAME=N"),
        (["--from-run", "nosuchrun"], "no run `nosuchrun`"),
        (["--from-run", "%"], "no run `%`"),
        (["--from-run", ""], "run id is empty"),
        (["--runs", "10001"], "bench takes 1 to 10,000 runs"),
        (["--latency", "nap100=1e308"], "at most 1e+06"),
        (["--html", ""], "--html needs a file name"),
        (["--html", "/nonexistent-dir-g3/x.html"], "cannot write it: No such file"),
        (["--html", "/"], "--html /: that is a directory"),
    ],
)
def test_cli_errors_are_clear(
    capsys: pytest.CaptureFixture[str], fan_plan: str, args: list[str], message: str
) -> None:
    code, out, err = cli(capsys, "bench", fan_plan, "--tools", SIM_TOOLS_FILE, *args)
    assert code != 0 and message in err
    assert "Traceback" not in err and out == ""


def test_cli_bad_plan_is_located(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.plan"
    path.write_text("step a = nosuchtool()\n")
    code, _, err = cli(capsys, "bench", str(path))
    assert code == 2 and f"{path}:1:" in err and "Traceback" not in err


# --- validation against real runs -------------------------------------------------------

# The real run pays what the simulation does not: an event-loop turn and a task per
# step (~0.1-1 ms), and sleeps that overshoot by about a millisecond each on a busy
# machine. So the real makespan must be at least the simulated one (a sleep is never
# shorter) and at most 5% + 10 ms over it. Each real figure is the fastest of five runs
# after one warm-up run (the first run of a process loads modules on its first steps):
# on a shared machine the noise only ever adds time, so the fastest run is the one
# least disturbed by other processes.
REAL_CASES = {
    "chain": (CHAIN, 16, {}),
    "fan_out_under_a_tool_limit": (FAN, 16, {"tool:nap100": 2}),
    "diamond_on_two_slots": (DIAMOND, 2, {}),
    "wide_fan_on_three_slots": (FAN.replace("nap100", "nap50"), 3, {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REAL_CASES))
def test_simulated_makespan_matches_a_real_run(case: str) -> None:
    text, slots, limits = REAL_CASES[case]
    simulated = makespan(text, slots, limits=limits)
    engine = Engine(tools=SIM_TOOLS, max_parallel=slots, limits=limits)
    checked = load_plan(text, tools=SIM_TOOLS)
    engine.run_sync(checked)
    real = min(engine.run_sync(checked).wall_s for _ in range(5))
    assert simulated * 0.99 <= real <= simulated * 1.05 + 0.010, (real, simulated)


def test_from_run_of_another_plan_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fan_plan: str
) -> None:
    """A run of a plan that shares no step with PLAN is refused, not "replayed"; one
    that shares some says the rest are estimates."""
    path = tmp_path / "one.plan"
    path.write_text("step g = nap50()\n")
    code, out, _ = cli(capsys, "run", str(path), "--tools", SIM_TOOLS_FILE, "--json")
    assert code == 0
    run_id = json.loads(out)["run_id"]
    other = tmp_path / "other.plan"
    other.write_text("step q = nap50()\n")
    code, out, err = cli(
        capsys, "bench", str(other), "--tools", SIM_TOOLS_FILE, "--from-run", run_id
    )
    assert code == 2 and "shares no measured step" in err and out == ""
    code, out, err = cli(
        capsys, "bench", fan_plan, "--tools", SIM_TOOLS_FILE, "--from-run", run_id, "--json"
    )
    assert code == 0 and "1 of 3 steps are replayed, the rest estimated" in err
    assert "step(s) not in the run: estimates" in json.loads(out)["durations"]


@pytest.mark.slow
def test_from_run_replays_a_journaled_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`bench --from-run` of a finished run simulates its measured durations: the
    makespan it reports is the run's own, within the same tolerance."""
    path = tmp_path / "diamond.plan"
    path.write_text(DIAMOND)
    code, out, _ = cli(
        capsys, "run", str(path), "--tools", SIM_TOOLS_FILE, "--json", "--max-parallel", "2"
    )
    assert code == 0
    run = json.loads(out)
    code, out, _ = cli(
        capsys,
        "bench",
        "--from-run",
        run["run_id"],
        "--tools",
        SIM_TOOLS_FILE,
        "--max-parallel",
        "2",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["durations"].startswith("replayed from run")
    simulated = doc["configurations"][0]["makespan_s"]["mean"]
    assert simulated * 0.99 <= run["wall_s"] <= simulated * 1.05 + 0.010
    assert not math.isnan(simulated)

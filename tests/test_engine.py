"""The engine: scheduling for real, per-step behaviour, failures, events, embedding."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Engine, load_plan
from engine.api import InputError
from engine.run.events import RunFinished, RunStarted, StepStarted, StepSucceeded
from engine.run.executor import RetryPolicy
from engine.run.result import RunResult

from .engine_tools import FLAKY, GAUGE, TEST_TOOLS

FAST_RETRY = RetryPolicy(base_s=0.001, cap_s=0.002)


def engine(**kwargs: Any) -> Engine:
    kwargs.setdefault("retry", FAST_RETRY)
    return Engine(tools=TEST_TOOLS, **kwargs)


def run(text: str, inputs: dict[str, Any] | None = None, **kwargs: Any) -> RunResult:
    eng = engine(**kwargs)
    try:
        return eng.run_sync(load_plan(text, tools=TEST_TOOLS), inputs)
    finally:
        eng.close()


def test_unbalanced_diamond_runs_at_its_critical_path() -> None:
    """A fast branch never waits for a slow sibling: wall time ~ critical path (1.10s)."""
    result = run(
        "step a = sleep(seconds: 0.05)\n"
        "step slow = sleep(seconds: 1.0) after a\n"
        "step fast1 = sleep(seconds: 0.3) after a\n"
        "step fast2 = sleep(seconds: 0.3) after fast1\n"
        "step fast3 = sleep(seconds: 0.3) after fast2\n"
        "step join = sleep(seconds: 0.05) after slow, fast3\n"
    )
    assert result.status == "succeeded"
    # critical path: a .05 + fast chain .9 + join .05 = 1.0; slow branch 1.1
    assert result.wall_s < 1.10 * 1.15
    assert result.steps["fast1"].started_at < result.steps["slow"].finished_at


def test_result_document_has_exactly_the_contract_keys() -> None:
    """The JSON result carries DESIGN's keys, per run and per step."""
    result = run('step a: float = calculate(expression: "2 * 21")\noutput a')
    doc = result.to_json()
    assert set(doc) == {
        "run_id",
        "plan",
        "status",
        "outputs",
        "steps",
        "replans",
        "cost_usd",
        "wall_s",
        "critical_path_s",
    }
    assert set(doc["steps"]["a"]) == {
        "status",
        "tool",
        "model",
        "attempts",
        "started_at",
        "finished_at",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "output",
        "error",
    }
    assert doc["outputs"] == {"a": 42.0} and doc["steps"]["a"]["attempts"] == 1


def test_step_sees_only_its_dependencies() -> None:
    """Templates render from inputs and declared dependencies only."""
    result = run(
        'input x: int = 2\nstep a = echo(value: "A")\nstep b = echo(value: "{{ x }}-{{ a }}")\nstep c = echo(value: "{{ b }}")\noutput c'
    )
    assert result.outputs == {"c": "2-A"}


def test_timeout_cancels_the_step() -> None:
    """A step over its timeout fails with a message naming the limit."""
    result = run("step a = sleep(seconds: 5) timeout 100ms")
    assert result.status == "failed"
    assert result.steps["a"].error == "timed out after 0.1s"
    assert result.wall_s < 1


def test_retries_transient_failures_with_backoff() -> None:
    """A transient fault is retried; the step succeeds on a later attempt."""
    FLAKY.clear()
    result = run('step a = flaky(key: "k1", failures: 2) retry 3')
    assert result.status == "succeeded"
    assert result.steps["a"].attempts == 3 and result.steps["a"].output == "ok after 3"


def test_bad_input_is_not_retried() -> None:
    """A ValueError is not worth retrying: one attempt."""
    result = run("step a = bad_input() retry 3")
    assert result.steps["a"].attempts == 1 and result.status == "failed"


def test_retries_run_out() -> None:
    """When every attempt fails, the step fails with the last error."""
    result = run('step a = boom(message: "still broken") retry 2')
    record = result.steps["a"]
    assert (record.status, record.attempts, record.error) == (
        "failed",
        3,
        "RuntimeError: still broken",
    )


def test_failure_skips_dependents_and_keeps_independent_branches() -> None:
    """Dependents of a failed step are skipped; other branches finish."""
    result = run("step a = boom()\nstep b = echo(value: a)\nstep c = echo(value: 1)\noutput b, c")
    assert result.status == "failed"
    assert result.steps["b"].status == "skipped" and "`a` failed" in result.steps["b"].error
    assert result.steps["c"].status == "succeeded" and result.outputs == {"c": 1}


def test_on_error_skip_and_fallback() -> None:
    """on_error skip tolerates a failure; a fallback step supplies the result."""
    result = run(
        "step a: str = boom() on_error skip\n"
        "step b: str = boom() on_error fb\n"
        'step fb: str = echo(value: "plan B")\n'
        'step c = echo(value: "{{ b }}")\n'
        'step d = echo(value: "{{ a }}")\noutput c, d'
    )
    assert result.status == "succeeded"
    assert result.outputs == {"c": "plan B", "d": "None"}
    assert result.steps["fb"].status == "succeeded"
    assert "fallback `fb`" in result.steps["b"].error


def test_unneeded_fallback_is_skipped() -> None:
    """A fallback whose primary succeeds never runs."""
    result = run('step a: str = echo(value: "x") on_error fb\nstep fb: str = echo(value: "y")')
    assert result.status == "succeeded" and result.steps["fb"].status == "skipped"


def test_when_condition() -> None:
    """A false `when` skips the step; dependents still run."""
    result = run(
        'input n: int = 1\nstep a = echo(value: "big") when "n > 5"\nstep b = echo(value: "{{ a }}")\noutput b',
    )
    assert result.steps["a"].status == "skipped" and result.status == "succeeded"
    result = run('input n: int = 9\nstep a = echo(value: "big") when "n > 5"\noutput a')
    assert result.outputs == {"a": "big"}


def test_why_a_step_was_skipped_is_a_field_that_the_journal_keeps(tmp_path: Path) -> None:
    """A `when` skip is done for good (resume and replanning keep it); a skip because a
    dependency failed is not. The record says which, and the journal keeps it."""
    from engine.store.journal import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    result = run(
        'input n: int = 1\nstep a = echo(value: "big") when "n > 5"\n'
        "step f = boom()\nstep g = echo(value: f)",
        journal=journal,
    )
    a, g = result.steps["a"], result.steps["g"]
    assert a.status == g.status == "skipped"
    assert a.skipped_by_when and a.is_done
    assert not g.skipped_by_when and not g.is_done
    stored = journal.steps(result.run_id)
    assert stored["a"].skipped_by_when and not stored["g"].skipped_by_when
    journal.close()


def test_statuses_are_enums_that_read_as_the_contract_strings() -> None:
    """Typed outcomes compare equal to, and serialise as, the `--json` strings."""
    import json

    from engine.run.result import RunStatus, StepStatus, StopReason

    result = run("step a = boom()\nstep b = echo(value: 1)")
    assert result.status is RunStatus.FAILED and result.status == "failed"
    assert result.steps["b"].status is StepStatus.SUCCEEDED
    doc = json.loads(result.dumps())
    assert doc["status"] == "failed" and doc["steps"]["a"]["status"] == "failed"
    assert json.dumps({"s": StepStatus.SKIPPED}) == '{"s": "skipped"}'
    assert StepStatus.SKIPPED.is_final and StepStatus.RUNNING.is_open
    assert StopReason.BUDGET_EXCEEDED.run_status is RunStatus.BUDGET_EXCEEDED
    assert StopReason.JOURNAL.run_status is RunStatus.FAILED


def test_fan_out_gathers_in_order() -> None:
    """One call per item, bounded by the limits, results in input order."""
    GAUGE.peak = 0
    result = run(
        "input xs: list[float] = [0.05, 0.01, 0.03, 0.02, 0.04, 0.01]\n"
        "step r: list[float] = for x in xs: sleep(seconds: x)\noutput r",
        max_parallel=2,
    )
    assert result.outputs == {"r": [0.05, 0.01, 0.03, 0.02, 0.04, 0.01]}
    assert GAUGE.peak <= 2


def test_fan_out_empty_and_large() -> None:
    """A fan-out over nothing gives []; over 10,000 items it completes."""
    assert run(
        "input xs: list[int] = []\nstep r = for x in xs: echo(value: x)\noutput r"
    ).outputs == {"r": []}
    result = run(
        "input xs: list[int]\nstep r = for x in xs: echo(value: x)\noutput r",
        {"xs": list(range(10_000))},
    )
    assert result.outputs["r"] == list(range(10_000))


def test_fan_out_item_failures() -> None:
    """A failed item fails the step, unless on_error skip drops it."""
    text = 'input ks: list[str] = ["a", "b"]\nstep r = for k in ks: bad_input(message: k) {mod}\noutput r'
    assert run(text.format(mod="")).steps["r"].status == "failed"
    tolerated = run(text.format(mod="on_error skip"))
    assert tolerated.steps["r"].output == [] and tolerated.status == "succeeded"


def test_result_is_validated_against_the_declared_type() -> None:
    """Lossless coercion passes; anything else fails naming the type."""
    result = run("step a: float = wrong_type()")
    assert result.steps["a"].status == "failed"
    assert "result does not fit `float`" in result.steps["a"].error
    assert run('step a: int = echo(value: "42")\noutput a').outputs == {"a": 42}


def test_huge_result_is_refused() -> None:
    """A 100 MB result fails the step with the limit in the message."""
    result = run("step a = huge(megabytes: 100)")
    assert "the limit is 10 MB" in result.steps["a"].error


def test_every_step_failing_ends_in_a_defined_state() -> None:
    """A plan whose every step fails: status failed, every step failed or skipped."""
    result = run("step a = boom()\nstep b = boom()\nstep c = echo(value: a)")
    assert result.status == "failed"
    assert {r.status for r in result.steps.values()} == {"failed", "skipped"}


def test_global_concurrency_limit_with_sync_tools() -> None:
    """Sync tools run in the thread pool, never more at once than --max-parallel."""
    GAUGE.peak = 0
    text = "\n".join(f"step s{i} = block(seconds: 0.02)" for i in range(12))
    result = run(text, max_parallel=3)
    assert result.status == "succeeded" and GAUGE.peak <= 3


def test_per_tool_limit() -> None:
    """A per-tool limit holds while other tools use the free slots."""
    GAUGE.peak = 0
    text = "\n".join(f"step s{i} = sleep(seconds: 0.02)" for i in range(8))
    result = run(text, max_parallel=8, limits={"tool:sleep": 2})
    assert result.status == "succeeded" and GAUGE.peak <= 2


def test_cancellation_keeps_finished_results() -> None:
    """A cancelled run reports status cancelled with every finished step's result."""
    eng = engine()
    holder: list[RunResult] = []
    plan = load_plan(
        "step quick = echo(value: 1)\nstep slow = sleep(seconds: 10)", tools=TEST_TOOLS
    )

    async def main() -> None:
        task = asyncio.create_task(eng.run(plan, result_holder=holder))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    eng.close()
    result = holder[0]
    assert result.status == "cancelled"
    assert result.steps["quick"].status == "succeeded" and result.steps["quick"].output == 1
    assert result.steps["slow"].status == "cancelled"


def test_inputs_are_typed() -> None:
    """Missing, unknown and mistyped inputs are one clear InputError."""
    plan = load_plan("input n: int\nstep a = echo(value: n)", tools=TEST_TOOLS)
    with pytest.raises(InputError, match="input `n` \\(int\\) is required"):
        engine().run_sync(plan)
    with pytest.raises(InputError, match="unknown input `m`"):
        engine().run_sync(plan, {"n": 1, "m": 2})
    with pytest.raises(InputError, match="must be `int`"):
        engine().run_sync(plan, {"n": "many"})


def test_stream_yields_events_in_order() -> None:
    """stream() yields run_started ... run_finished, with step events between."""
    eng = engine()

    async def main() -> list[Any]:
        return [e async for e in eng.stream("step a = echo(value: 1)\nstep b = echo(value: a)")]

    events = asyncio.run(main())
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    kinds = [e.kind for e in events]
    assert kinds.index("step_succeeded") > kinds.index("step_started")
    succeeded = [e.step for e in events if isinstance(e, StepSucceeded)]
    assert succeeded == ["a", "b"]
    assert all(e.t >= 0 for e in events if isinstance(e, StepStarted))


def test_one_engine_runs_plans_concurrently() -> None:
    """An engine is reusable and safe to share between concurrent runs."""
    eng = engine()
    plan = load_plan(
        "input v: int\nstep a = sleep(seconds: 0.05, value: v)\noutput a", tools=TEST_TOOLS
    )

    async def main() -> list[RunResult]:
        return await asyncio.gather(*(eng.run(plan, {"v": i}) for i in range(20)))

    results = asyncio.run(main())
    assert [r.outputs["a"] for r in results] == list(range(20))
    assert len({r.run_id for r in results}) == 20


def test_concurrent_runs_keep_their_own_state(planfile_home: Path, tmp_path: Path) -> None:
    """Per-run state lives in the run, not the engine: a run's audit preamble (the
    planner's lines) never reaches another run's log, even one resumed meanwhile."""
    import json

    from engine.store.journal import Journal

    eng = engine(journal=Journal(tmp_path / "journal.sqlite"), audit=True)
    first = eng.run_sync(load_plan("step b = echo(value: 2)", tools=TEST_TOOLS))
    plan = load_plan("step a = sleep(seconds: 0.05, value: 1)", tools=TEST_TOOLS)
    preamble = [("planning", "attempt", {"attempt": 1})]

    async def main() -> list[RunResult]:
        return list(
            await asyncio.gather(eng.run(plan, audit_preamble=preamble), eng.resume(first.run_id))
        )

    planned, resumed = asyncio.run(main())
    eng.close()
    assert planned.status == resumed.status == "succeeded" and resumed.run_id == first.run_id

    def audit(run_id: str) -> list[dict[str, Any]]:
        text = (planfile_home / "audit" / f"{run_id}.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    assert [e["phase"] for e in audit(planned.run_id)].count("planning") == 1
    assert all(e["phase"] != "planning" for e in audit(resumed.run_id))
    for result in (planned, resumed):
        assert {e["run_id"] for e in audit(result.run_id)} == {result.run_id}


@st.composite
def random_plans(draw: st.DrawFn) -> tuple[str, set[str]]:
    n = draw(st.integers(1, 12))
    lines = []
    failing: set[str] = set()
    for i in range(n):
        deps = sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else []
        after = f" after {', '.join(f's{d}' for d in deps)}" if deps else ""
        if draw(st.integers(0, 5)) == 0:
            failing.add(f"s{i}")
            lines.append(f"step s{i} = bad_input(){after}")
        else:
            lines.append(
                f"step s{i} = sleep(seconds: {draw(st.sampled_from([0, 0.001, 0.005]))}){after}"
            )
    return "\n".join(lines), failing


@given(random_plans(), st.integers(1, 4))
@settings(max_examples=40)
def test_random_plans_run_correctly(case: tuple[str, set[str]], max_parallel: int) -> None:
    """Random DAGs: steps run once, after their dependencies, within the limit;
    dependents of failures never run, everything else does."""
    text, failing = case
    GAUGE.peak = 0
    GAUGE.calls.clear()
    checked = load_plan(text, tools=TEST_TOOLS)
    result = run(text, max_parallel=max_parallel)
    assert GAUGE.peak <= max_parallel
    assert len(GAUGE.calls) == len(set(GAUGE.calls))
    doomed: set[str] = set()
    for step in checked.plan.steps:
        if any(d in failing or d in doomed for d in checked.deps[step.id]):
            doomed.add(step.id)
    for name, record in result.steps.items():
        if name in doomed:
            assert record.status == "skipped" and record.started_at is None
        elif name in failing:
            assert record.status == "failed"
        else:
            assert record.status == "succeeded"
            for dep in checked.deps[name]:
                assert result.steps[dep].finished_at <= record.started_at
    assert result.status == ("failed" if failing else "succeeded")
    random.seed(0)


def test_observed_latencies_refine_the_estimates() -> None:
    """Each finished step folds its duration into the engine's latency model."""
    eng = engine()
    before = eng.latency.tool_s["sleep"]
    eng.run_sync(
        load_plan(
            "\n".join(f"step s{i} = sleep(seconds: 0.05)" for i in range(20)), tools=TEST_TOOLS
        )
    )
    eng.close()
    assert before < 0.01 and 0.04 < eng.latency.tool_s["sleep"] < 0.2


def test_inline_sync_tools_run_on_the_loop_unless_a_timeout_needs_the_pool() -> None:
    """`@tool(inline=True)` skips the thread pool; a step timeout still gets the pool
    (only a pool call can be abandoned); plain sync tools always use the pool."""
    import threading

    from stdlib_tools import tool

    @tool(inline=True)
    def where_inline() -> bool:
        """True on the thread that runs the event loop."""
        return threading.current_thread() is threading.main_thread()

    @tool
    def where_pooled() -> bool:
        """True on the thread that runs the event loop."""
        return threading.current_thread() is threading.main_thread()

    eng = Engine(tools=[*TEST_TOOLS, where_inline, where_pooled], retry=FAST_RETRY)
    try:
        plan = load_plan(
            "step a = where_inline()\nstep b = where_inline() timeout 5s\n"
            "step c = where_pooled()\noutput a, b, c",
            tools=eng.registry,
        )
        result = eng.run_sync(plan)
    finally:
        eng.close()
    assert result.outputs == {"a": True, "b": False, "c": False}


def test_result_adapters_are_built_once_per_declared_type() -> None:
    """One pydantic adapter per declared type, shared by steps, runs and the checker;
    records of the same name but other fields never share one."""
    from dsl.types import build_record_models, parse_type, type_adapter

    same = build_record_models({"City": {"name": "str"}})
    again = build_record_models({"City": {"name": "str"}})
    other = build_record_models({"City": {"name": "str", "pop": "int"}})
    cities = parse_type("list[City]")
    assert type_adapter(cities, same) is type_adapter(cities, again)
    assert type_adapter(cities, same) is not type_adapter(cities, other)
    assert type_adapter(cities, other).validate_python([{"name": "x", "pop": 1}])[0].pop == 1
    assert type_adapter(parse_type("int"), {}) is type_adapter(parse_type("int"), other)

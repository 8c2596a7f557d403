"""Fuzzing the front ends: any text or JSON gives a plan or a PlanError, nothing else."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dsl import PlanError, check, format_plan
from dsl.json_loader import load_json, load_json_bytes
from dsl.loader import parse_plan_text
from stdlib_tools import ToolRegistry

from .strategies import plans

REGISTRY = ToolRegistry.standard()

plan_words = st.sampled_from(
    [
        "plan",
        "input",
        "step",
        "tier",
        "type",
        "output",
        "for",
        "in",
        "after",
        "retry",
        "timeout",
        "when",
        "on_error",
        "task",
        "check",
        "describe",
        "=",
        ":",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        '"',
        '"""',
        "{{",
        "}}",
        "a",
        "b",
        "search",
        "llm",
        "str",
        "list",
        "?",
        "1",
        "10s",
        "\n",
        " ",
        "#",
        "true",
        "null",
        "-",
        ".",
    ]
)
plan_like_text = st.lists(plan_words, max_size=40).map(" ".join)
any_text = st.text(max_size=200)
json_docs = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    [
                        "steps",
                        "plan",
                        "id",
                        "step_number",
                        "tool",
                        "tool_input",
                        "args",
                        "depends_on",
                        "description",
                        "prompt",
                        "type",
                        "requiredModel",
                        "goal",
                        "expectedCost",
                        "after",
                        "name",
                        "inputs",
                        "outputs",
                        "ref",
                        "query",
                        "expression",
                        "for_each",
                        "tier",
                    ]
                ),
                st.text(max_size=8),
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


def _only_plan_errors(run: Any) -> None:
    try:
        run()
    except PlanError as err:
        assert err.diagnostics, "a PlanError always carries diagnostics"
        err.render()


@given(st.one_of(any_text, plan_like_text))
def test_random_text_gives_plan_errors_only(text: str) -> None:
    """Random text parses and checks, or fails with PlanError only."""

    def run() -> None:
        plan, smap = parse_plan_text(text, "fuzz.plan", REGISTRY)
        check(plan, REGISTRY, smap, source=text)

    _only_plan_errors(run)


@given(st.binary(max_size=200))
def test_random_bytes_give_plan_errors_only(data: bytes) -> None:
    """Random bytes as a JSON file fail with PlanError only."""
    _only_plan_errors(lambda: load_json_bytes(data, "fuzz.json", REGISTRY))


@given(json_docs)
@settings(max_examples=400)
def test_random_json_gives_plan_errors_only(doc: Any) -> None:
    """Random JSON values load and check, or fail with PlanError only."""

    def run() -> None:
        plan, smap = load_json(doc, "fuzz.json", REGISTRY)
        check(plan, REGISTRY, smap)
        format_plan(plan)

    _only_plan_errors(run)


@given(plans)
def test_generated_plans_check_without_crashing(plan: Any) -> None:
    """Arbitrary IR (unknown tools, bad types, cycles) gives PlanError or a checked plan."""
    _only_plan_errors(lambda: check(plan, REGISTRY))


# --- mutation fuzzing over the shipped examples (issue 11) ---------------------------
# The mutators and the oracle are benchmarks/fuzz_plans.py's; the suite runs a few
# hundred seeded cases of each kind, the script runs for minutes.

from benchmarks.fuzz_plans import make_case, run_case  # noqa: E402


def _cases(kind: str, seed: int, count: int) -> list[tuple[str, Any]]:
    import random

    rng = random.Random(seed)
    cases: list[tuple[str, Any]] = []
    while len(cases) < count:
        case = make_case(rng)
        if case[0] == kind:
            cases.append(case)
    return cases


@given(st.integers(0, 2**32))
@settings(max_examples=40)
def test_mutated_plans_end_in_plan_errors(seed: int) -> None:
    """Mutated examples (hostile numbers, nesting, template bombs, shuffled lines) load
    and survive `fmt` with their comments, or fail with PlanError; never anything else."""
    for case in _cases("plan", seed, 10):
        run_case(case)


@given(st.integers(0, 2**32))
@settings(max_examples=40)
def test_mutated_templates_end_in_template_problems(seed: int) -> None:
    """Random compositions of template pieces (bombs included) render or fail with
    TemplateProblem, each within its deadline."""
    for case in _cases("template", seed, 10):
        run_case(case)


@given(st.integers(0, 2**32))
@settings(max_examples=40)
def test_mutated_json_plans_end_in_plan_errors(seed: int) -> None:
    """Mutated JSON plans (hostile values at random paths) load or fail with PlanError."""
    for case in _cases("json", seed, 10):
        run_case(case)

"""The printer: canonical text that parses back to the same IR."""

from __future__ import annotations

from hypothesis import given

from dsl import format_plan, parse_text
from dsl.json_loader import load_json
from dsl.ir import Plan

from .conftest import EXAMPLES
from .strategies import plans


@given(plans)
def test_parse_of_print_is_identity(plan: Plan) -> None:
    """parse(print(ir)) == ir for any plan the IR can hold."""
    text = format_plan(plan)
    parsed, _ = parse_text(text)
    assert parsed == plan


@given(plans)
def test_json_round_trip_keeps_the_plan(plan: Plan) -> None:
    """A plan dumped to canonical JSON loads back unchanged."""
    loaded, _ = load_json(plan.model_dump(mode="json"))
    assert loaded == plan


@given(plans)
def test_journal_form_keeps_the_plan(plan: Plan) -> None:
    """The compact JSON the run journal stores (defaults left out) validates back to the
    same plan, so `resume` runs exactly what was started."""
    from dsl.checker import CheckedPlan

    stored = CheckedPlan(plan, {}, {}, {}, frozenset(), ()).plan_json
    assert Plan.model_validate_json(stored) == plan


def test_examples_are_canonically_formatted() -> None:
    """`planfile fmt` leaves the shipped examples as they are."""
    for path in sorted(EXAMPLES.glob("*.plan")):
        text = path.read_text()
        plan, _ = parse_text(text, str(path))
        assert parse_text(format_plan(plan))[0] == plan

"""The printer: canonical text that parses back to the same IR."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from dsl import PlanError, format_plan, parse_text
from dsl.ir import Plan
from dsl.json_loader import load_json

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


def test_examples_are_fmt_fixed_points_with_their_comments() -> None:
    """`planfile fmt --check` passes for every shipped example, comments included."""
    for path in sorted(EXAMPLES.glob("*.plan")):
        text = path.read_text()
        plan, smap = parse_text(text, str(path))
        assert format_plan(plan, text, smap) == text, path.name


COMMENTED = """# header: what this plan is for
plan demo "a # inside a string is text"  # after the header

# about the inputs
input q: str = "x"  # trailing on an input

step a: str = search(query: q)  # why a
    # between modifiers
    retry 2
step b: str = llm(prompt: \"\"\"
    # not a comment: inside a string
    {{ a }}
    \"\"\")
    after a  # on a modifier line

output b
# the very end
"""


def _comments(text: str) -> list[str]:
    from dsl.parser import scan_comments

    return sorted(c.text for c in scan_comments(text))


def test_fmt_keeps_every_comment() -> None:
    """Comments survive `fmt` (issue 11, item 11), and a second `fmt` changes nothing."""
    plan, smap = parse_text(COMMENTED)
    once = format_plan(plan, COMMENTED, smap)
    assert _comments(once) == _comments(COMMENTED)
    assert "# not a comment: inside a string" in once
    again, smap2 = parse_text(once)
    assert again == plan and format_plan(again, once, smap2) == once
    assert once.startswith("# header: what this plan is for\nplan demo")


@given(plans, st.lists(st.tuples(st.integers(0, 200), st.booleans()), max_size=6))
def test_comments_anywhere_between_lines_survive_fmt(
    plan: Plan, spots: list[tuple[int, bool]]
) -> None:
    """A comment on any line boundary or line end of a canonical plan is kept, and the
    result is a fixed point of `fmt`."""
    lines = format_plan(plan).split("\n")
    for n, (spot, own_line) in enumerate(spots):
        index = spot % len(lines)
        if re.search(r'"""|"$', lines[index]) and not own_line:
            continue  # the end of a line that opens or continues a string is inside it
        if own_line:
            lines.insert(index, f"# note {n}")
        else:
            lines[index] += f"  # note {n}"
    text = "\n".join(lines)
    try:
        parsed, smap = parse_text(text)
    except PlanError:
        return  # the comment landed inside a multi-line string or similar
    if parsed != plan:
        return
    once = format_plan(parsed, text, smap)
    # End-of-line comments of one statement are joined on its last line.
    assert sorted(re.findall(r"note \d+", once)) == sorted(re.findall(r"note \d+", text))
    again, smap2 = parse_text(once)
    assert again == plan and format_plan(again, once, smap2) == once

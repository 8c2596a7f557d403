"""The `.plan` parser: what it accepts, and located errors for what it does not."""

from __future__ import annotations

import pytest

from dsl import PlanError, parse_text
from dsl.ir import FanOut, Ref
from dsl.parser import MAX_PLAN_BYTES, decode_source


def errors_of(text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_text(text, "t.plan")
    return [f"{d.location}: {d.message}" for d in info.value.diagnostics]


def test_step_with_everything() -> None:
    """Every step modifier lands in the IR."""
    plan, _ = parse_text(
        'step a: list[str] = for x in xs: f(tier: fast, n: 1, s: "t {{ x }}")\n'
        '    after b, c retry 3 timeout 500ms when "n > 1" on_error skip task code\n'
        '    check "result" describe "doc"\n'
    )
    step = plan.steps[0]
    assert step.for_each == FanOut(var="x", over=Ref(ref="xs"))
    assert step.tier == "fast" and step.args == {"n": 1, "s": "t {{ x }}"}
    assert step.after == ("b", "c") and step.retry == 3 and step.timeout_s == 0.5
    assert (step.when, step.on_error, step.task, step.check) == ("n > 1", "skip", "code", "result")
    assert step.description == "doc"


def test_triple_quoted_strings_are_dedented() -> None:
    """A triple-quoted prompt loses its common indent and the closing line."""
    plan, _ = parse_text('step a = f(p: """\n    one\n      two\n    """)')
    assert plan.steps[0].args["p"] == "one\n  two"


def test_values_and_references() -> None:
    """Literals, nested containers and dotted references parse to IR values."""
    plan, _ = parse_text('step a = f(x: [1, 2.5, -3, true, null, {"k": b.c}], y: 1e3)')
    assert plan.steps[0].args == {
        "x": [1, 2.5, -3, True, None, {"k": Ref(ref="b.c")}],
        "y": 1000.0,
    }


def test_comments_and_keywords_as_names() -> None:
    """Comments are ignored; keywords may name steps where unambiguous."""
    plan, _ = parse_text("# a comment\nstep retry = f() # trailing\nstep b = g(x: retry)")
    assert [s.id for s in plan.steps] == ["retry", "b"]


def test_positional_argument_gets_a_hint() -> None:
    """Positional arguments are an error that says arguments are named."""
    with pytest.raises(PlanError) as info:
        parse_text('step a = search("x")', "t.plan")
    diagnostic = info.value.diagnostics[0]
    assert str(diagnostic.location) == "t.plan:1:17"
    assert diagnostic.hint and "named" in diagnostic.hint


def test_unterminated_string_is_located() -> None:
    """An unterminated string points at its opening quote."""
    assert errors_of('step a = f(x: "abc)') == ["t.plan:1:15: unterminated string"]
    assert errors_of('plan p\nstep a = f(x: """abc') == [
        't.plan:2:15: unterminated string: `"""` is never closed'
    ]


def test_render_shows_source_line_and_caret() -> None:
    """Rendered errors carry file:line:col, the line, and a caret under the problem."""
    with pytest.raises(PlanError) as info:
        parse_text("plan p\nstep a: = f()", "t.plan")
    rendered = info.value.render()
    assert rendered.splitlines()[0].startswith("t.plan:2:9: error: unexpected `=`")
    assert "step a: = f()" in rendered
    assert rendered.splitlines()[2].endswith("^")


def test_deep_nesting_is_refused_not_crashed() -> None:
    """10,000 levels of brackets give a located error, not a RecursionError."""
    messages = errors_of("step a = f(x: " + "[" * 10_000 + "]" * 10_000 + ")")
    assert "nests more than" in messages[0]


def test_deep_type_nesting_is_refused() -> None:
    """Deeply nested types give a located error."""
    messages = errors_of("input x: " + "list[" * 5000 + "str" + "]" * 5000)
    assert "nests more than" in messages[0]


def test_duplicates_in_one_step_are_reported() -> None:
    """A repeated argument or modifier is an error naming it."""
    assert "argument `x` is given twice" in errors_of("step a = f(x: 1, x: 2)")[0]
    assert "`retry` is given twice" in errors_of("step a = f() retry 1 retry 2")[0]


def test_bad_escape_and_task() -> None:
    """Invalid escapes and unknown task types are located errors."""
    assert "invalid escape" in errors_of('step a = f(x: "\\q")')[0]
    assert "unknown task type `foo`" in errors_of("step a = f() task foo")[0]


def test_binary_and_oversized_input() -> None:
    """Binary data and files over the size limit are refused with a clear message."""
    with pytest.raises(PlanError, match="not UTF-8"):
        decode_source(b"\xff\xfe\x00garbage", "b.plan")
    with pytest.raises(PlanError, match="NUL byte"):
        decode_source(b"plan a\x00", "b.plan")
    with pytest.raises(PlanError, match="limit"):
        decode_source(b" " * (MAX_PLAN_BYTES + 1), "big.plan")


def test_control_characters() -> None:
    """Stray control characters are a syntax error, not a crash."""
    assert "unexpected character" in errors_of("\x01\x02")[0]

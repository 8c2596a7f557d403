"""The `.plan` lexer gives exactly the tokens and the syntax errors of lark's own
contextual lexer, on valid plans, broken plans and arbitrary text; a string value reads
as JSON reads it (the parser skips json.loads where nothing is escaped)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import lark
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsl import parse_text
from dsl.lark_cache import cached_lark
from dsl.parser import _parser
from dsl.plan_lexer import PlanLexer

GRAMMAR = resources.files("dsl").joinpath("plan.lark").read_text(encoding="utf-8")
# Both build a parse tree (no transformer), so only the lexers differ.
LARK = lark.Lark(GRAMMAR, parser="lalr", lexer="contextual")
FAST = lark.Lark(
    GRAMMAR, parser="lalr", lexer="contextual", _plugins={"ContextualLexer": PlanLexer}
)
EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("examples").glob("*.plan"))
# Every construct of the language, keywords used as names where the grammar allows it.
EVERYTHING = '''plan everything "all of it" expected_cost 0.25  # header
input flag: bool = true describe "on"
input none: str? = null
input xs: list[int] = [1, -2, 3,]
input cfg: dict[str, float] = {"a": 1.5e3, b: -0.5, "c\\"d": 2}
input off: bool = false
tier fast = "openai/gpt-4o-mini"
type Row { city: str, rent: float?, tags: list[str] }
step timeout: Row = search(query: "x {{ flag }}", k: 3, type: "t", timeout: 10)
    timeout 1.5s retry 2 cache approve task search
step each: str = for item in xs: calculate(expression: "{{ item }} * 2")
    after timeout when "flag" check "result" on_error skip describe "d"
step agent = agent(task: """
        Find {{ each }}.
          Indented.
        """, tools: [search, calculate], tier: fast, max_iterations: 3)
    executor llm
output each, agent
'''
CORPUS = [EVERYTHING, *(p.read_text(encoding="utf-8") for p in EXAMPLES)]


def _token(token: lark.Token | None) -> tuple[Any, ...] | None:
    if token is None:
        return None
    return (
        token.type,
        str(token),
        token.start_pos,
        token.line,
        token.column,
        token.end_line,
        token.end_column,
        token.end_pos,
    )


def _error(err: UnexpectedInput) -> tuple[Any, ...]:
    detail: tuple[Any, ...] = (type(err).__name__, err.line, err.column)
    if isinstance(err, UnexpectedCharacters):
        detail += (err.pos_in_stream, frozenset(err.allowed or ()))
    if isinstance(err, UnexpectedToken):
        detail += (_token(err.token), frozenset(err.expected))
    history = getattr(err, "token_history", None) or []
    return (*detail, [_token(t) for t in history])


def _run(parser: lark.Lark, text: str) -> tuple[Any, ...]:
    """Every token the parser was fed and where it stopped (token by token), and the
    tree or the error of a plain parse (the path `parse_text` takes)."""
    tokens: list[tuple[Any, ...] | None] = []
    interactive = parser.parse_interactive(text)
    try:
        for token in interactive.iter_parse():
            tokens.append(_token(token))
        stepped: Any = interactive.resume_parse()
    except UnexpectedInput as err:
        stepped = _error(err)
    try:
        parsed: Any = parser.parse(text)
    except UnexpectedInput as err:
        parsed = _error(err)
    return tokens, stepped, parsed


def test_the_cached_parser_tables_load_with_this_lexer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built once, then loaded from the user's cache: both use the fast lexer and parse
    alike (the plugin is not part of the cached tables)."""
    monkeypatch.setenv("PLANFILE_HOME", str(tmp_path))
    options: dict[str, Any] = {"parser": "lalr", "lexer": "contextual"}
    built = cached_lark(GRAMMAR, "plan", _plugins={"ContextualLexer": PlanLexer}, **options)
    (cached,) = (tmp_path / "cache").glob("plan-*.lark")
    written = cached.stat().st_mtime_ns
    loaded = cached_lark(GRAMMAR, "plan", _plugins={"ContextualLexer": PlanLexer}, **options)
    assert isinstance(built.parser.lexer, PlanLexer)
    assert isinstance(loaded.parser.lexer, PlanLexer)
    assert list((tmp_path / "cache").glob("plan-*.lark")) == [cached]
    assert cached.stat().st_mtime_ns == written  # read, not rebuilt
    assert _run(loaded, EVERYTHING) == _run(LARK, EVERYTHING)
    assert isinstance(_parser().parser.lexer, PlanLexer)  # what parse_text uses


def assert_same(text: str) -> None:
    assert _run(FAST, text) == _run(LARK, text)


@pytest.mark.parametrize("text", CORPUS)
def test_plans_lex_the_same(text: str) -> None:
    assert_same(text)


FRAGMENTS = [
    "plan", "input", "tier", "type", "step", "output", "for", "in", "after", "retry",
    "timeout", "when", "on_error", "task", "check", "describe", "cache", "approve",
    "executor", "expected_cost", "true", "false", "null", "s1", "query", "x_2", "search",
    ":", "=", "(", ")", "[", "]", "{", "}", ",", ".", "?", "-", "10s", "5ms", "2h", "10sec",
    "3", "-4", "2.5", "1e9", "-1.5e-3", '"a"', '"a\\"b"', '"\\u00e9"', '"open', '"""x\n  y"""',
    '"""never', "# note", "#", " ", "  ", "\n", "\n\n", "\t", "\r\n", "é", "$", "@", "\x00",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(" ".join))
@example('step timeout: str = search(query: "x", timeout: 10)\n    timeout 10s retry 2')
@example('plan p "g"\nstep a = llm(prompt: """\n  {{ x }}\n  """)\noutput a\n')
@example("step a: int = calculate(expression: 10s)")
@example('step a = f(x: "bad)\nstep b = g()')
def test_fragments_lex_the_same(text: str) -> None:
    assert_same(text)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CORPUS), st.data())
def test_edited_plans_lex_the_same(text: str, data: st.DataObject) -> None:
    """A real plan with a few characters deleted, replaced or inserted anywhere."""
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 3))
        insert = data.draw(st.sampled_from(["", *FRAGMENTS]) | st.text(max_size=3))
        text = text[:at] + insert + text[at + cut :]
    assert_same(text)


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_any_text_lexes_the_same(text: str) -> None:
    assert_same(text)


@given(st.text(max_size=40), st.booleans())
@example("plain ascii {{ x }}", False)
@example("tab\there", False)
@example("del\x7f", False)
@settings(max_examples=300, deadline=None)
def test_string_values_read_as_json_reads_them(value: str, ascii_only: bool) -> None:
    literal = json.dumps(value, ensure_ascii=ascii_only)
    plan, _ = parse_text(f"step a = search(query: {literal})")
    assert plan.steps[0].args["query"] == json.loads(literal) == value

"""The planner's grammar: every derivation, for random tool sets, is a plan that loads and
checks; the GBNF is what llama.cpp accepts; examples are in the grammar's language."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Literal

import lark
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.checker import check
from dsl.json_loader import load_json
from dsl.types import Type, from_python
from engine.agent.evaluate import copied_phrase, prompt_examples, step_texts
from engine.agent.examples import all_examples, choose, terms
from engine.agent.grammar_ir import Alt, Chars, Expr, Grammar, Lit, Ref, Rep, Seq
from engine.agent.plan_grammar import (
    AFTER_ANSWER,
    ANSWERS,
    DEFAULT_MAX_STEPS,
    FIRST_ONLY,
    GATHERS_TEXT,
    INSTRUCTIONS,
    NUMBERS,
    READS_TEXT,
    expressible,
    goal_files,
    goal_numbers,
    goal_words,
    plain_goal,
    plan_grammar,
)
from engine.agent.planner import add_joiner, allowed_tools
from engine.models.local_model import available
from stdlib_tools import ToolRegistry
from stdlib_tools.registry import Param, ToolSpec

REF = re.compile(r"\{\{ s(\d+) \}\}")
PY_TYPES: list[Any] = [
    str,
    int,
    float,
    bool,
    list[str],
    list[int],
    list[float],
    dict[str, str],
    dict[str, int],
    Literal["short", "long"],
    Literal[1, 2, 3],
    list[list[int]],
]


def make_spec(name: str, params: list[tuple[str, Any, bool]], uses_model: bool) -> ToolSpec:
    """A tool whose parameters have these Python annotations (Literal ones are enums)."""

    def fn(**kwargs: Any) -> Any:
        return kwargs

    fn.__annotations__ = {p: annotation for p, annotation, _ in params} | {"return": str}
    return ToolSpec(
        name=name,
        fn=fn,
        description=f"the {name} tool",
        params=tuple(
            Param(p, from_python(annotation), required, None if required else 1)
            for p, annotation, required in params
        ),
        returns=Type("str"),
        is_async=False,
        uses_model=uses_model,
    )


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in ("if", "in", "for", "true", "false", "null", "none", "step")
)
tool_sets = st.dictionaries(
    names,
    st.tuples(
        st.lists(st.tuples(names, st.sampled_from(PY_TYPES), st.booleans()), max_size=4).map(
            lambda ps: list({p[0]: p for p in ps}.values())
        ),
        st.booleans(),
    ),
    min_size=1,
    max_size=5,
)


def loads_and_checks(text: str, tools: dict[str, Any], goal: str = "a goal") -> Any:
    doc = json.loads(text)
    doc["goal"] = goal
    plan, smap = load_json(doc, "plan.json", tools)
    return check(plan, tools, smap, tiers=("fast", "standard", "frontier"))


def assert_well_formed(text: str, offered: tuple[str, ...], max_steps: int) -> None:
    doc = json.loads(text)
    steps = doc["steps"]
    assert 1 <= len(steps) <= max_steps
    assert [s["id"] for s in steps] == [f"s{i}" for i in range(1, len(steps) + 1)]
    assert doc["outputs"] == [steps[-1]["id"]]
    for k, step in enumerate(steps, 1):
        assert step["tool"] in offered
        body = json.dumps(step["args"], ensure_ascii=False)
        assert all(int(j) < k for j in REF.findall(body)), body
        # No brace but a reference's, so no text can open a template block.
        assert "{" not in REF.sub("", json.dumps(list(_strings(step["args"]))))
    assert not any(ord(c) < 0x20 for c in text)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@given(tool_sets, st.integers(1, 8), st.integers(0, 2**32))
def test_every_derivation_checks_for_random_tool_sets(
    raw: dict[str, Any], max_steps: int, seed: int
) -> None:
    """Random tools (strings, numbers, booleans, enums, lists, maps; model and plain),
    random step bounds: every plan the grammar can produce loads and checks."""
    tools = {
        name: make_spec(name, params, uses_model) for name, (params, uses_model) in raw.items()
    }
    built = plan_grammar(tools, max_steps=max_steps)
    rng = random.Random(seed)  # a seed, not hypothesis' randoms: a derivation draws a lot
    for _ in range(8):
        text = built.grammar.sample(rng)
        assert_well_formed(text, built.tools, max_steps)
        loads_and_checks(text, tools)


@settings(max_examples=40)
@given(st.integers(0, 2**32))
def test_every_derivation_checks_for_the_planner_tools(registry: ToolRegistry, seed: int) -> None:
    """The stdlib tools a planner is offered, `calculate`'s arithmetic included."""
    tools = allowed_tools(registry, ["http_get"])
    built = plan_grammar(tools)
    rng = random.Random(seed)
    for _ in range(10):
        text = built.grammar.sample(rng)
        assert_well_formed(text, built.tools, DEFAULT_MAX_STEPS)
        checked = loads_and_checks(text, tools)
        for step in checked.plan.steps:
            if step.tool == "calculate":
                # Arithmetic over numbers and earlier results: with numbers for the
                # references it is a Python expression.
                expression = REF.sub("2", step.args["expression"])
                compile(expression, "<expression>", "eval")


goal_texts = st.lists(
    st.one_of(
        st.from_regex(r"[A-Za-z][a-z'-]{0,9}", fullmatch=True),
        st.from_regex(r"\$?[1-9][0-9]{0,5}(\.[0-9]{1,2})?%?", fullmatch=True),
        st.sampled_from(["{{", "}}", "{%", '"', "\\", "1,380", "notes.txt", "s2", "\n"]),
        st.text(max_size=4),
    ),
    min_size=1,
    max_size=14,
).map(" ".join)


@settings(max_examples=40)
@given(goal_texts, st.integers(0, 2**32))
def test_a_goals_grammar_calculates_with_its_numbers_and_queries_its_words(
    registry: ToolRegistry, goal: str, seed: int
) -> None:
    """Given the goal, every plan still loads and checks, a calculation's numbers are the
    goal's or a formula's constants, and a search query or `into` is the goal's words (and
    earlier results): no number or phrase of an example can be written."""
    tools = allowed_tools(registry)
    built = plan_grammar(tools, goal=goal)
    numbers = set(goal_numbers(goal)) | set(NUMBERS)
    words = set(goal_words(goal))
    rng = random.Random(seed)
    for _ in range(10):
        text = built.grammar.sample(rng)
        assert_well_formed(text, built.tools, DEFAULT_MAX_STEPS)
        checked = loads_and_checks(text, tools, goal=goal)
        for step in checked.plan.steps:
            if step.tool == "calculate":
                expression = REF.sub("", step.args["expression"])
                assert set(re.findall(r"[0-9.]+", expression)) <= numbers, expression
                compile(REF.sub("2", step.args["expression"]), "<expression>", "eval")
            for name in ("query", "into"):
                if step.tool in ("search", "extract") and name in step.args and words:
                    assert set(REF.sub(" ", step.args[name]).split()) <= words


# Parameters whose text is a formula, a file pattern or a JSON query (tested on their own).
FORMULAS = {("calculate", "expression"), ("json_query", "expression"), ("list_files", "pattern")}


@settings(max_examples=40)
@given(goal_texts, st.integers(0, 2**32))
def test_a_goals_grammar_writes_no_free_text(registry: ToolRegistry, goal: str, seed: int) -> None:
    """Issue 15's item 2 by construction: given the goal, every text a plan holds is the goal
    itself, its words and files, earlier results and the fixed instructions; a step that
    reads text comes first or after a step that gathered text, after a model's answer only
    saving, and a listing only starts a plan."""
    tools = allowed_tools(registry)
    built = plan_grammar(tools, goal=goal)
    plain = plain_goal(goal)
    allowed = set(goal_words(goal)) | set(goal_files(goal))
    if not allowed:
        return  # no words: the plain grammar (tested above)
    rng = random.Random(seed)
    for _ in range(10):
        text = built.grammar.sample(rng)
        checked = loads_and_checks(text, tools, goal=goal)
        gathered = answered = False
        for k, step in enumerate(checked.plan.steps, 1):
            if answered:
                assert step.tool in AFTER_ANSWER, text
            if step.tool in FIRST_ONLY:
                assert k == 1, text
            if step.tool in READS_TEXT:
                assert k == 1 or gathered, text
            gathered = gathered or step.tool in GATHERS_TEXT
            answered = answered or step.tool in ANSWERS
            for name, value in step.args.items():
                if (step.tool, name) in FORMULAS or not isinstance(value, str):
                    continue
                rest = REF.sub("\n", value)
                for fixed in (plain, *INSTRUCTIONS):
                    # Whole pieces only: between separators (a space, `\n`, `: `).
                    rest = re.sub(rf"(?<!\S){re.escape(fixed)}(?=\s|:|$)", "\n", rest)
                pieces = {p for p in re.split(r"\n|: | ", rest) if p}
                assert pieces <= allowed, (name, value)


TUNED = Path(__file__).parent.parent / "benchmarks" / "planner_goals" / "tuned.jsonl"


@pytest.mark.parametrize("seed", range(3))
def test_no_plan_the_grammar_allows_copies_an_example(registry: ToolRegistry, seed: int) -> None:
    """The evaluation's copy check (a 4-word run of the example pool not in the goal), on
    random plans of the tuned goals' grammars: no text is found. (Formulas are left out: a
    run of four numbers, such as a loan formula's `1200 1 1 4` for a 4% rate, is the
    formula, not a copy; their numbers are tested above.)"""
    tools = allowed_tools(registry)
    pool = prompt_examples()
    rng = random.Random(seed)
    for line in TUNED.read_text(encoding="utf-8").splitlines():
        goal = json.loads(line)["goal"]
        built = plan_grammar(tools, goal=goal)
        for _ in range(5):
            checked = loads_and_checks(built.grammar.sample(rng), tools, goal=goal)
            texts = [
                text
                for step in checked.plan.steps
                if step.tool != "calculate"
                for text in step_texts([step])
            ]
            assert copied_phrase(texts, pool, goal) is None, goal


def test_goal_numbers_are_written_as_a_calculation_writes_them() -> None:
    goal = "Split $1,380.50 (or 1380.50) between 06 people with a 5% tip, see s2 and v2.txt"
    assert goal_numbers(goal) == ["1380.50", "6", "5"]


@pytest.mark.parametrize(
    "goal", ["{% if x %}{{ y }}", "close {{ the door", "{# note #} %} }}", "a\x01b\tc", "{{{%"]
)
def test_template_like_goal_text_never_breaks_the_plan(registry: ToolRegistry, goal: str) -> None:
    """The goal is not part of the grammar's output, and the joiner's prompt escapes it:
    template-like goal text stays plain text."""
    tools = allowed_tools(registry)
    rng = random.Random(7)
    built = plan_grammar(tools)
    for _ in range(20):
        doc = json.loads(built.grammar.sample(rng)) | {"goal": goal}
        plan, smap = load_json(doc, "plan.json", tools)
        # The joiner puts the goal inside its prompt template: still plain text.
        checked = check(add_joiner(plan, tools), tools, smap, tiers=("fast", "standard"))
        assert checked.plan.goal == goal


def test_min_steps_and_bounds() -> None:
    tool = make_spec("note", [("text", str, True)], False)
    built = plan_grammar({"note": tool}, min_steps=3, max_steps=4)
    rng = random.Random(1)
    counts = {len(json.loads(built.grammar.sample(rng))["steps"]) for _ in range(200)}
    assert counts == {3, 4}
    assert built.max_tokens < plan_grammar({"note": tool}, max_steps=8).max_tokens
    with pytest.raises(ValueError):
        plan_grammar({"note": tool}, min_steps=5, max_steps=4)


def test_tools_the_grammar_cannot_call_are_left_out() -> None:
    """A tool with a required record parameter has no value grammar; optional ones are omitted."""
    record = make_spec("rec", [("x", str, True)], False)
    record = ToolSpec(
        **{**record.__dict__, "params": (Param("x", Type("record", name="R"), True),)}
    )
    plain = make_spec("plain", [("x", str, True)], False)
    assert not expressible(record) and expressible(plain)
    assert plan_grammar({"rec": record, "plain": plain}).tools == ("plain",)
    with pytest.raises(ValueError, match="no offered tool"):
        plan_grammar({"rec": record})


def test_gbnf_literals_and_classes_are_escaped() -> None:
    grammar = Grammar(
        {
            "root": Seq(
                (Lit('a"b\\c\n'), Rep(Chars('"\\]^-', "x"), 0, 3), Alt((Lit("1"), Ref("x"))))
            ),
            "x": Lit("2"),
        }
    )
    text = grammar.to_gbnf()
    assert (
        text.splitlines()[0]
        == 'root ::= "a\\"b\\\\c\\n" [^"\\\\\\]\\^\\-\\x00-\\x1f]{0,3} ("1" | x)'
    )


# A recogniser for the same description (lark's Earley parser), so the tests can ask
# whether a text is in the grammar's language.
def _lark(expr: Expr) -> str:
    if isinstance(expr, Lit):
        return json.dumps(expr.text) if expr.text else '""'
    if isinstance(expr, Chars):
        excluded = "".join("\\" + c if c in '\\]^-"/' else c for c in expr.excluded)
        return f"/[^{excluded}\\x00-\\x1f]/"
    if isinstance(expr, Ref):
        return expr.name.replace("-", "_")
    if isinstance(expr, Seq):
        return "(" + " ".join(_lark(i) for i in expr.items) + ")"
    if isinstance(expr, Alt):
        return "(" + " | ".join(_lark(o) for o in expr.options) + ")"
    if (expr.low, expr.high) == (0, 1):
        return f"[{_lark(expr.item)}]"
    return f"({_lark(expr.item)}) ~ {expr.low}..{expr.high}"


def recogniser(grammar: Grammar) -> lark.Lark:
    rules = "\n".join(
        f"{name.replace('-', '_')}: {_lark(expr)}" for name, expr in grammar.rules.items()
    )
    return lark.Lark(rules, start="root", parser="earley", lexer="dynamic")


def test_every_example_is_in_the_grammar_of_its_own_tools(registry: ToolRegistry) -> None:
    """The prompt never shows an example plan the grammar would not let the model write:
    positional ids, offered tools, typed arguments, references to earlier steps only."""
    offered = allowed_tools(registry)
    assert len(all_examples()) >= 20
    parser = recogniser(plan_grammar(offered).grammar)
    for example in all_examples():
        assert example.tools <= set(offered), example.goal
        parser.parse(example.text())  # raises when the text is outside the language
        loads_and_checks(example.text(), offered, goal=example.goal)
    # And the recogniser does refuse what the grammar excludes.
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse(
            '{"steps": [{"id": "answer", "tool": "llm", "args": {"prompt": "x"}}], "outputs": ["answer"]}'
        )
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse(
            '{"steps": [{"id": "s1", "tool": "llm", "args": {"prompt": "{{ s1 }}"}}], "outputs": ["s1"]}'
        )


GOALS = {
    "What is the monthly payment on a 9000 loan at 3% over 2 years?": {"calculate"},
    "Draft an answer to a customer about our warranty policy": {"search", "llm"},
    "Put the dates in history.md into a timeline": {"read_file"},
    "Review the code in server.py for security bugs": {"read_file", "llm"},
}


@pytest.mark.parametrize("goal", sorted(GOALS))
def test_chosen_examples_fit_the_goal(registry: ToolRegistry, goal: str) -> None:
    """At most two, sharing words with the goal, with the tools the goal needs, all offered."""
    offered = allowed_tools(registry)
    chosen = choose(goal, offered)
    assert 1 <= len(chosen) <= 2
    assert GOALS[goal] <= chosen[0].tools
    for example in chosen:
        assert set(terms(goal)) & set(example.words())


def test_examples_need_offered_tools_and_a_shared_word(registry: ToolRegistry) -> None:
    offered = allowed_tools(registry)
    without_calculate = {n: t for n, t in offered.items() if n != "calculate"}
    chosen = choose("What is the monthly payment on a 9000 loan?", without_calculate)
    assert all("calculate" not in e.tools for e in chosen)
    assert choose("zebra xylophone quartz", offered) == []


def test_no_example_text_or_id_is_in_the_grammar(registry: ToolRegistry) -> None:
    """The grammar is built from the tools alone: no example's goal, argument text or step
    name can be forced or offered to the model by it, whatever the goal."""
    gbnf = plan_grammar(allowed_tools(registry)).gbnf
    assert set(re.findall(r'\\"id\\": \\"(\w+)\\"', gbnf)) == {
        f"s{i}" for i in range(1, DEFAULT_MAX_STEPS + 1)
    }
    for example in all_examples():
        assert example.goal not in gbnf
        for text in _strings(example.plan["steps"]):
            if len(text) > 12:
                assert text not in gbnf


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="embedded model not installed")
@given(tool_sets)
def test_llama_cpp_accepts_the_gbnf(raw: dict[str, Any]) -> None:
    """llama.cpp parses every generated grammar (a NULL sampler would mean a syntax error)."""
    import llama_cpp

    from engine.models.local_model import _Engine

    tools = {
        name: make_spec(name, params, uses_model) for name, (params, uses_model) in raw.items()
    }
    vocab = _Engine.get().llama._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(
        vocab, plan_grammar(tools).gbnf.encode(), b"root"
    )
    assert sampler
    llama_cpp.llama_sampler_free(sampler)


def test_shown_examples_take_the_goals_own_text(registry: ToolRegistry) -> None:
    """What a weak model copies from an example is its own goal's: the restated goal, the
    file it names (for reading only), its words as the search query; never a brace."""
    offered = allowed_tools(registry)
    goal = 'Extract the dates from "trip_notes.md" into a {{ timeline }}'
    chosen = choose(goal, offered)
    assert chosen
    for example in chosen:
        text = example.text()
        for step in example.plan["steps"]:
            if step["tool"] == "read_file":
                assert step["args"]["path"] == "trip_notes.md"
            if step["tool"] == "write_file":
                assert step["args"]["path"] != "trip_notes.md"
        assert "Extract the dates from trip_notes.md into a timeline" in text
        parse = recogniser(plan_grammar(offered).grammar)
        parse.parse(text)
    query = next(
        s["args"]["query"]
        for e in choose("Compare the rent in two neighbourhoods from our notes", offered)
        for s in e.plan["steps"]
        if s["tool"] == "search"
    )
    assert "rent" in query and "neighbourhoods" in query


FIT_GOALS = [
    "Split 1380 between 6 housemates",
    "What is the monthly payment on a 9000 loan at 3% over 2 years, and is it affordable?",
    "Make a timeline of the dates in diary.txt",
    "Write a haiku about rain and save it to poem.md",
    "Summarize what our notes say about the heating and the boiler",
    "Review everything in the scripts folder",
    "How warm is 50 degrees Fahrenheit in Celsius?",
    "Find the cheapest item in orders.json",
]


@pytest.mark.parametrize("goal", FIT_GOALS)
def test_shown_examples_hold_nothing_the_goals_grammar_refuses(
    registry: ToolRegistry, goal: str
) -> None:
    """Issue 15's item 2: a shown example is in the goal's own grammar (its numbers, its
    query words), and none of its arguments keeps a 4-word run of the example's text that
    is not in the goal."""
    offered = allowed_tools(registry)
    parser = recogniser(plan_grammar(offered, goal=goal).grammar)
    own = {tuple(w) for w in _runs(goal)}
    originals = {e.goal: e for e in all_examples()}
    for example in choose(goal, offered):
        parser.parse(example.text())
        copied = {
            run
            for e in originals.values()
            for text in _strings(e.plan["steps"])
            for run in _runs(text)
        }
        for text in _strings(example.plan["steps"]):
            assert not (set(_runs(text)) & copied) - own, text


def _runs(text: str, n: int = 4) -> list[tuple[str, ...]]:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if not re.fullmatch(r"s\d+", w)]
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def test_every_calculation_example_fits_its_own_goal() -> None:
    """Each example calculation uses its goal's numbers and a formula's constants only, so
    it can be rewritten with another goal's numbers (and is shown for none that lacks them)."""
    for example in all_examples():
        if "calculate" in example.tools:
            assert example.adapted(example.goal) is not None, example.goal
    split = next(e for e in all_examples() if e.goal.startswith("Split a 96"))
    assert split.adapted("Share 7 pizzas") is None  # one number: the example needs two

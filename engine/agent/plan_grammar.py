"""The planner's grammar: per request, every plan the model may write loads and checks.

Built for one tool set (engine/agent/grammar_ir.py prints it as llama.cpp GBNF and samples
it for the tests). A plan is compact JSON, `{"steps": [...], "outputs": ["sK"]}`, where:
- step ids are positional (`s1`, `s2`, ...), so no id can be copied from an example;
- the number of steps is bounded (`min_steps`..`max_steps`), and the output is the last step;
- a step's tool is one of the offered tools, its arguments that tool's parameters with
  values of their types (strings, whole and decimal numbers, booleans, enums, lists, maps);
- text may use `{{ sJ }}` only for an earlier step J, and no other brace: goal text with
  `{%`/`{{` cannot become a broken template, and raw control characters never appear;
- `calculate`'s expression is arithmetic over numbers and earlier steps' results.
Given the goal, the grammar writes no free text at all, so nothing of an example that does
not fit the goal can be copied: a `calculate` number is one the goal states or a small
constant of a formula (`NUMBERS`); a search query or an extraction's `into` is the goal's
words; a model step's text is the goal itself, its words, earlier results and a few fixed
instructions (`INSTRUCTIONS`); a file path is a file the goal names (or an earlier result),
a file pattern the goal's folder or files; data to query or parse is an earlier result.
A tool none of whose derivations fits a step (a record parameter; a path when the goal
names no file) is not offered there.
(Over 400 lines as one module: the step, text and value rules name each other's rules.)
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .goal_terms import (
    TEXT_EXCLUDED,
    goal_files,
    goal_folders,
    goal_numbers,
    goal_words,
    plain_goal,
)
from .grammar_ir import Alt, Chars, Expr, Grammar, Lit, Ref, Rep, alt, opt, seq

DEFAULT_MAX_STEPS = 4  # everyday goals need 1-4 steps; a weak model given more room repeats steps
# Parameters the planner never sets: the engine picks sampling for model steps, and a weak
# model fills an offered `system` with noise (the prompt carries the instructions).
HIDDEN_PARAMS = frozenset({"temperature", "max_tokens", "system"})
# Parameters whose text is an arithmetic expression (the tool, the parameter).
EXPRESSION_PARAMS = frozenset({("calculate", "expression")})
# Parameters whose text, given a goal, is the goal's words (and earlier results) only.
GOAL_WORD_PARAMS = frozenset({("search", "query"), ("extract", "into")})
# ... a file the goal names, or an earlier result (a path a listing found); a file is
# written only where the goal names it.
READ_PATH_PARAMS = frozenset({("read_file", "path")})
WRITE_PATH_PARAMS = frozenset({("write_file", "path")})
# ... a file pattern (`**/*`, `<goal folder>/**/*`, optionally `.<extension>`).
PATTERN_PARAMS = frozenset({("list_files", "pattern")})
# ... an earlier step's result: what a step parses or queries is never typed in by the model.
RESULT_PARAMS = frozenset({("json_query", "data"), ("parse_json", "text")})
# ... a JMESPath query over fields named in at most three words and the goal's numbers.
QUERY_PARAMS = frozenset({("json_query", "expression")})
GOAL_WORDS = 8  # words of such a parameter
# Given a goal, a plan goes: gather, process, answer, save. Tools that read text come
# first (the goal's own text) or after a step that gathered some (a number or a model's
# answer is not what they read); tools that answer (a model writing) are followed only by
# saving (or a tool the user added); a listing only starts a plan.
READS_TEXT = frozenset({"extract", "summarize", "parse_json", "json_query"})
GATHERS_TEXT = frozenset({"search", "read_file", "parse_json", "json_query", "extract"})
ANSWERS = frozenset({"llm", "summarize"})
AFTER_ANSWER = frozenset({"write_file"})
# ... and from the second step on, these texts hold an earlier result.
BUILDS_ON_PARAMS = frozenset(
    {("llm", "prompt"), ("summarize", "text"), ("extract", "text"), ("write_file", "content")}
)
# A goal with one of these words asks for words: after calculations alone, a model step
# answers only such a goal (a number is its own answer).
ASKS_WORDS = frozenset(
    [
        "explain",
        "explanation",
        "why",
        "whether",
        "mean",
        "means",
        "meaning",
        "describe",
        "say",
        "tell",
        "compare",
        "should",
        "afford",
        "affordable",
        "worth",
        "advise",
        "advice",
        "recommend",
        "write",
        "draft",
        "summarize",
        "summary",
        "note",
        "sentence",
        "sentences",
        "words",
        "budget",
    ]
)
PLANNED_TOOLS = READS_TEXT | GATHERS_TEXT | ANSWERS | AFTER_ANSWER
PLANNED_TOOLS |= {"calculate", "list_files"}
FIRST_ONLY = frozenset({"list_files"})
# What a model step's text may add to the goal and the results: fixed, short (no example's
# four-word run fits in one), and none names a fact.
INSTRUCTIONS: tuple[str, ...] = (
    "Answer briefly.",
    "Explain.",
    "Compare them.",
    "List them.",
    "Use these results:",
    "Be exact.",
)
# Pieces (a word, a file, a result, an instruction) of a model step's text after the goal
# or a first piece, and of other text: a weak model repeats pieces until the cap, and every
# token costs time.
PROSE_PIECES = 6
SHORT_PIECES = 6
PIECE_SEPARATORS = (" ", "\\n", ": ")  # as JSON writes them (`\\n` is a newline)
EXTENSIONS = ("py", "md", "txt", "json", "csv")  # a pattern's besides those of the goal's files
# The numbers a formula needs besides the goal's: percent, months, weeks, days, hours,
# minutes, degrees (F to C), halves and small counts (an average of three, quarters), a
# yearly percentage to a monthly rate.
NUMBERS: tuple[str, ...] = ("0.5", "1", "2", "3", "4", "5", "7", "9", "12", "24", "32", "52")
NUMBERS += ("60",)
NUMBERS += ("100", "365", "1000", "1200")
FIELD_CHARS = "abcdefghijklmnopqrstuvwxyz_"  # a JSON field a query names (one word, lower case)
TIERS = ("fast", "standard", "frontier")
# Characters of free text (TEXT_EXCLUDED: braces are only ever written by the reference rule).
TEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:!?%#$&*()[]<>/'-+=_|~`@^éß€中"
TEXT_CHARS = 240  # a model step's prompt or text (a restated goal and results)
SHORT_CHARS = 80  # other text: a query, a path, an expression for json_query
LIST_ITEMS = 6
MAP_ENTRIES = 4
# The reply's token cap: the JSON around the steps and about a step's worth each (a full
# 240-character text is ~60 tokens), plus the goal's own text where a step may restate it.
# A reply cut off at the cap is closed by the loader's repair, which drops the unfinished
# step; references point only backwards, so the rest holds.
PLAN_TOKENS = 24
STEP_TOKENS = 80
CHARS_PER_TOKEN = 3  # a low guess, so a restated goal is not cut off


@dataclass(frozen=True)
class PlanGrammar:
    """A request's grammar, the tools it offers, and the reply's token bound."""

    grammar: Grammar
    tools: tuple[str, ...]
    max_steps: int
    goal_chars: int = 0  # the restatable goal's length (0: no goal)

    @property
    def gbnf(self) -> str:
        return self.grammar.to_gbnf()

    @property
    def max_tokens(self) -> int:
        per_step = STEP_TOKENS + self.goal_chars // CHARS_PER_TOKEN
        return PLAN_TOKENS + per_step * self.max_steps


@dataclass(frozen=True)
class _Given:
    """What the goal lets a plan write (all empty without a goal: the plain grammar)."""

    numbers: bool = False  # `goalnum`: the goal's numbers and NUMBERS
    words: bool = False  # `goalword`, `goaltext`, `instruction`: no free text at all
    files: tuple[str, ...] = ()  # the files the goal names (`goalfile`)
    folders: tuple[str, ...] = ()  # ... and folders (`goalfolder`)
    asks_words: bool = False  # the goal asks for words, not only a number (ASKS_WORDS)


def expressible(spec: Any) -> bool:
    """Whether every required parameter of the tool has a value grammar."""
    return all(_covered(p.type) for p in spec.params if p.required and p.name not in HIDDEN_PARAMS)


def plan_grammar(
    tools: Mapping[str, Any],
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    min_steps: int = 1,
    goal: str | None = None,
) -> PlanGrammar:
    """The grammar of plans over `tools` (name -> ToolSpec) with `min_steps`..`max_steps` steps;
    with `goal`, every text is built from the goal (see the module's docstring)."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"steps must satisfy 1 <= min ({min_steps}) <= max ({max_steps})")
    offered = tuple(sorted(name for name, spec in tools.items() if expressible(spec)))
    if not offered:
        raise ValueError("no offered tool can be called from a plan grammar")
    rules: dict[str, Expr] = {}
    given = _Given()
    goal_chars = 0
    if goal is not None:
        own = goal_numbers(goal)
        numbers = [*own, *(n for n in NUMBERS if n not in own)]
        rules["goalnum"] = alt(*(Lit(n) for n in numbers))
        words = goal_words(goal)
        plain = plain_goal(goal)
        # A goal without words: its texts are plain short text, as without a goal.
        if words and plain:
            goal_chars = len(plain)
            rules["goalword"] = alt(*(Lit(w) for w in words))
            rules["goaltext"] = Lit(plain)
            rules["instruction"] = alt(*(Lit(i) for i in INSTRUCTIONS))
            rules["separator"] = alt(*(Lit(s) for s in PIECE_SEPARATORS))
            files = tuple(f for f in goal_files(goal) if _is_plain(f))
            folders = tuple(f for f in goal_folders(goal) if _is_plain(f))
            if files:
                rules["goalfile"] = alt(*(Lit(f) for f in files))
            if folders:
                rules["goalfolder"] = alt(*(Lit(f) for f in folders))
            extensions = dict.fromkeys([*(f.rsplit(".", 1)[1] for f in files), *EXTENSIONS])
            rules["pattern"] = seq(
                Lit('"'),
                alt(
                    Lit("**/*"),
                    seq(
                        alt(Ref("goalword"), *([Ref("goalfolder")] if folders else [])),
                        Lit("/**/*"),
                    ),
                ),
                opt(seq(Lit("."), alt(*(Lit(e) for e in extensions)))),
                Lit('"'),
            )
            rules["field"] = alt(*(Lit(c) for c in FIELD_CHARS))
            rules["ident"] = Rep(Ref("field"), 1, 24)
            given = _Given(True, True, files, folders, asks_words(goal))
        else:
            given = _Given(numbers=True)
    # Given a goal, a step's state is what the steps before it did: nothing that gathered
    # text (`-n`), gathered text (`-t`), answered (`-w`); see READS_TEXT. Without a goal
    # there is one state.
    states = ("n", "t", "w") if given.words else ("",)
    steps: dict[tuple[int, str], list[Expr]] = {}
    for k in range(1, max_steps + 1):
        calls = _step_rules(rules, k, {name: tools[name] for name in offered}, given)
        for state in states if k > 1 else states[:1]:
            steps[k, state] = [
                seq(
                    call,
                    Lit("}"),
                    Ref(f"tail{k}{_dash(_after(name, state) if given.words else state)}"),
                )
                for name, call in calls.items()
                if not given.words or _fits(name, k, state, given.asks_words)
            ]
    if not steps[1, states[0]]:
        raise ValueError("no offered tool can be the first step of a plan for this goal")
    for (k, state), choices in steps.items():
        if choices:
            rules[f"step{k}{_dash(state)}"] = seq(Lit(f'{{"id": "s{k}", '), alt(*choices))
    for k in range(1, max_steps + 1):
        for state in states:
            end = Lit(f'], "outputs": ["s{k}"]}}')
            if not steps.get((k + 1, state)):
                # The last step, or no tool may follow in this state: the plan ends here.
                if k < min_steps:
                    raise ValueError(f"no plan of {min_steps} steps: step {k + 1} has no tool")
                rules[f"tail{k}{_dash(state)}"] = end
                continue
            more = seq(Lit(", "), Ref(f"step{k + 1}{_dash(state)}"))
            rules[f"tail{k}{_dash(state)}"] = more if k < min_steps else alt(end, more)
    rules["root"] = seq(Lit('{"steps": ['), Ref(f"step1{_dash(states[0])}"))
    _shared_rules(rules)
    return PlanGrammar(Grammar(rules), offered, max_steps, goal_chars)


def _step_rules(
    rules: dict[str, Expr], k: int, tools: Mapping[str, Any], given: _Given
) -> dict[str, Expr]:
    """`call{k}-<tool>` for each tool callable as step `k`: its text referring to s1..s(k-1)
    and, given a goal, built from it."""
    earlier = [Lit(f"{{{{ s{j} }}}}") for j in range(1, k)]
    if earlier:
        rules[f"ref{k}"] = alt(*earlier)
    ref = Ref(f"ref{k}") if earlier else None
    if given.words:
        # Pieces of text: a model step's may restate the goal and add an instruction.
        short: list[Expr] = [Ref("goalword"), *([Ref("goalfile")] if given.files else [])]
        if ref is not None:
            short.append(ref)
        # The goal at most once: restated more often it only costs tokens.
        prose = [*short, Ref("instruction")]
        # A model step's text starts with the goal (or, later, an earlier result).
        head = alt(Ref("goaltext"), ref) if ref is not None else Ref("goaltext")
        rules[f"text{k}"] = _pieces(prose, PROSE_PIECES, first=head)
        rules[f"short{k}"] = _pieces(short, SHORT_PIECES)
        if ref is not None:
            # A later step that answers, reads or saves builds on an earlier result: its
            # text holds at least one (else it is a step that ignores the plan before it).
            plain_prose = [p for p in prose if p is not ref]
            plain_short = [p for p in short if p is not ref]
            rules[f"textref{k}"] = _with_ref(Ref("goaltext"), plain_prose, prose, ref)
            rules[f"shortref{k}"] = _with_ref(alt(*plain_short), plain_short, short, ref)
        word = alt(Ref("goalword"), ref) if ref is not None else Ref("goalword")
        rules[f"words{k}"] = seq(
            Lit('"'), word, Rep(seq(Lit(" "), word), 0, GOAL_WORDS - 1), Lit('"')
        )
        comparison = alt(*(Lit(f" {op} ") for op in ("<", "<=", ">", ">=", "==", "!=")))
        value = alt(seq(Lit("`"), Ref("goalnum"), Lit("`")), seq(Lit("'"), Ref("ident"), Lit("'")))
        selector = alt(
            Ref("ident"),
            seq(Ref("ident"), Lit("[*]")),
            seq(Lit("[?"), Ref("ident"), comparison, value, Lit("]")),
        )
        # At most three selectors: no four-word run of an example's query fits.
        rules[f"query{k}"] = seq(Lit('"'), selector, Rep(seq(Lit("."), selector), 0, 2), Lit('"'))
    else:
        rules[f"text{k}"] = _text(ref, TEXT_CHARS)
        rules[f"short{k}"] = _text(ref, SHORT_CHARS)
    number = Ref("goalnum" if given.numbers else "number")
    atoms: list[Expr] = [number, seq(Lit("("), Ref(f"sum{k}"), Lit(")"))]
    if ref is not None:
        atoms.insert(1, ref)
    rules[f"atom{k}"] = alt(*atoms)
    # Unary minus on either side of `**`: a loan's `(1 + r) ** -n`.
    signed = seq(opt(Lit("-")), Ref(f"atom{k}"))
    rules[f"power{k}"] = seq(signed, opt(seq(Lit(" ** "), signed)))
    rules[f"product{k}"] = seq(
        Ref(f"power{k}"), Rep(seq(alt(Lit(" * "), Lit(" / ")), Ref(f"power{k}")), 0, 4)
    )
    rules[f"sum{k}"] = seq(
        Ref(f"product{k}"), Rep(seq(alt(Lit(" + "), Lit(" - ")), Ref(f"product{k}")), 0, 4)
    )
    calls: dict[str, Expr] = {}
    for name, spec in tools.items():
        args = _args(spec, k, given, ref)
        if args is None:
            continue  # a required parameter has no value at this step
        rule = f"call{k}-{_rule_name(name)}"
        parts: list[Expr] = [Lit(f'"tool": {_json_string(name)}')]
        if getattr(spec, "uses_model", False):
            parts.append(opt(seq(Lit(', "tier": '), alt(*(Lit(f'"{t}"') for t in TIERS)))))
        parts += [Lit(', "args": {'), args, Lit("}")]
        rules[rule] = seq(*parts)
        calls[name] = Ref(rule)
    return calls


def _fits(tool: str, k: int, state: str, words: bool) -> bool:
    """Whether, given a goal, `tool` may be step `k` in `state` (see READS_TEXT); `words`:
    the goal asks for words (after calculations alone, a model answers only then)."""
    if tool not in PLANNED_TOOLS:
        return True  # a user's tool: no rule knows what it does
    if state == "w":
        return tool in AFTER_ANSWER
    if tool in FIRST_ONLY:
        return k == 1
    if tool in READS_TEXT:
        return k == 1 or state == "t"
    if tool in ANSWERS and k > 1 and state == "n":
        return words
    return True


def plan_fits(tools: Iterable[str], goal: str) -> bool:
    """Whether a plan calling `tools` in this order is in `goal`'s grammar's order (READS_TEXT):
    an example that is not is never shown for the goal."""
    if not goal_words(goal) or not plain_goal(goal):
        return True  # the plain grammar: any order
    state, words = "n", asks_words(goal)
    for k, tool in enumerate(tools, 1):
        if not _fits(tool, k, state, words):
            return False
        state = _after(tool, state)
    return True


def asks_words(goal: str) -> bool:
    """Whether `goal` asks for words (an explanation, advice, a comparison, a text), not
    only for a number."""
    return any(word.lower() in ASKS_WORDS for word in goal_words(goal))


def _after(tool: str, state: str) -> str:
    if state == "w" or tool in ANSWERS:
        return "w"
    return "t" if state == "t" or tool in GATHERS_TEXT else state


def _dash(state: str) -> str:
    return f"-{state}" if state else ""


def _shared_rules(rules: dict[str, Expr]) -> None:
    rules["digit"] = alt(*(Lit(d) for d in "0123456789"))
    rules["integer"] = seq(
        opt(Lit("-")),
        alt(Lit("0"), seq(alt(*(Lit(d) for d in "123456789")), Rep(Ref("digit"), 0, 8))),
    )
    rules["number"] = seq(Ref("integer"), opt(seq(Lit("."), Rep(Ref("digit"), 1, 6))))
    rules["bool"] = alt(Lit("true"), Lit("false"))
    rules["key"] = seq(Lit('"'), Rep(Chars(TEXT_EXCLUDED, TEXT_ALPHABET), 1, 24), Lit('"'))


def _text(ref: Expr | None, length: int) -> Expr:
    """A JSON string of text, `\\n`, and (from step 2 on) references to earlier steps."""
    pieces: list[Expr] = [Chars(TEXT_EXCLUDED, TEXT_ALPHABET), Lit("\\n")]
    if ref is not None:
        pieces.append(ref)
    return seq(Lit('"'), Rep(Alt(tuple(pieces)), 1, length), Lit('"'))


def _pieces(pieces: list[Expr], most: int, first: Expr | None = None) -> Expr:
    """A JSON string of up to `most` of these pieces, separated (the first one `first`)."""
    piece = alt(*pieces)
    rest = Rep(seq(Ref("separator"), piece), 0, most - 1)
    head = piece if first is None else first
    return seq(Lit('"'), head, rest, Lit('"'))


def _with_ref(head: Expr, plain: list[Expr], pieces: list[Expr], ref: Expr) -> Expr:
    """A JSON string of pieces holding at least one reference: it starts with one, or with
    `head` and up to two plain pieces before it."""
    rest = Rep(seq(Ref("separator"), alt(*pieces)), 0, 3)
    lead = seq(head, Rep(seq(Ref("separator"), alt(*plain)), 0, 2), Ref("separator"), ref)
    return seq(Lit('"'), alt(ref, lead), rest, Lit('"'))


def _args(spec: Any, k: int, given: _Given, ref: Expr | None) -> Expr | None:
    """The tool's parameters by name: required ones in order, then any optional ones;
    None when a required one has no value at step `k` (an optional one is then left out)."""
    params = [p for p in spec.params if p.name not in HIDDEN_PARAMS and _covered(p.type)]
    values = {p.name: _value(spec, p, k, given, ref) for p in params}
    required = [p for p in params if p.required]
    if any(values[p.name] is None for p in required):
        return None
    optional = [p for p in params if not p.required and values[p.name] is not None]

    def pair(p: Any) -> Expr:
        value = values[p.name]
        assert value is not None  # filtered above
        return seq(Lit(f"{_json_string(p.name)}: "), value)

    if required:
        items: list[Expr] = [pair(required[0])]
        items += [seq(Lit(", "), pair(p)) for p in required[1:]]
        items += [opt(seq(Lit(", "), pair(p))) for p in optional]
        return seq(*items)
    if not optional:
        return Lit("")
    # No required parameter: the first one present takes no comma.
    firsts = [
        seq(pair(p), *(opt(seq(Lit(", "), pair(q))) for q in optional[i + 1 :]))
        for i, p in enumerate(optional)
    ]
    return opt(alt(*firsts))


def _value(spec: Any, param: Any, k: int, given: _Given, ref: Expr | None) -> Expr | None:
    key = (spec.name, param.name)
    if key in EXPRESSION_PARAMS:
        return seq(Lit('"'), Ref(f"sum{k}"), Lit('"'))
    if given.words and param.type.kind in ("str", "json"):
        quoted_ref = seq(Lit('"'), ref, Lit('"')) if ref is not None else None
        if key in GOAL_WORD_PARAMS and param.type.kind == "str":
            return Ref(f"words{k}")
        if key in READ_PATH_PARAMS | WRITE_PATH_PARAMS:
            files = [seq(Lit('"'), Ref("goalfile"), Lit('"'))] if given.files else []
            if key in READ_PATH_PARAMS and quoted_ref is not None:
                files.append(quoted_ref)
            return alt(*files) if files else None
        if key in PATTERN_PARAMS:
            return Ref("pattern")
        if key in RESULT_PARAMS:
            return quoted_ref
        if key in QUERY_PARAMS:
            return Ref(f"query{k}")
        if key in BUILDS_ON_PARAMS and ref is not None:
            return Ref(f"textref{k}" if getattr(spec, "uses_model", False) else f"shortref{k}")
    choices = _enum(spec, param.name)
    if choices:
        return alt(*(Lit(_json_value(c)) for c in choices))
    long_text = getattr(spec, "uses_model", False)
    return _typed(param.type, k, long_text)


def _typed(plan_type: Any, k: int, long_text: bool) -> Expr:
    kind = plan_type.kind
    if kind == "str":
        return Ref(f"text{k}" if long_text else f"short{k}")
    if kind == "int":
        return Ref("integer")
    if kind == "float":
        return Ref("number")
    if kind == "bool":
        return Ref("bool")
    if kind == "json":
        return alt(Ref(f"text{k}" if long_text else f"short{k}"), Ref("number"), Ref("bool"))
    if kind == "list":
        item = _typed(plan_type.item, k, False)
        return seq(Lit("["), opt(seq(item, Rep(seq(Lit(", "), item), 0, LIST_ITEMS - 1))), Lit("]"))
    # A map (the only other covered kind): distinct keys are not enforced; JSON keeps the last.
    entry = seq(Ref("key"), Lit(": "), _typed(plan_type.item, k, False))
    return seq(Lit("{"), opt(seq(entry, Rep(seq(Lit(", "), entry), 0, MAP_ENTRIES - 1))), Lit("}"))


def _covered(plan_type: Any) -> bool:
    kind = getattr(plan_type, "kind", None)
    if kind in ("str", "int", "float", "bool", "json"):
        return True
    if kind in ("list", "dict"):
        return _covered(plan_type.item)
    return False


def _enum(spec: Any, name: str) -> tuple[Any, ...]:
    """A `Literal[...]` parameter's values (plan types keep only their joined type)."""
    try:
        hints = typing.get_type_hints(spec.fn)
    except Exception:  # unresolvable annotations: no enum, the plain type's grammar
        return ()
    hint = hints.get(name)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        # `Literal[...] | None`: the planner omits an optional parameter rather than null it.
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    if typing.get_origin(hint) is typing.Literal:
        values = typing.get_args(hint)
        if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
            return tuple(v for v in values if not isinstance(v, str) or _is_plain(v))
    return ()


def _is_plain(text: str) -> bool:
    return not any(c in TEXT_EXCLUDED or ord(c) < 0x20 for c in text)


def _json_string(text: str) -> str:
    return '"' + text + '"'


def _json_value(value: Any) -> str:
    return _json_string(value) if isinstance(value, str) else repr(value)


def _rule_name(name: str) -> str:
    # GBNF rule names are letters, digits and dashes.
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in name)


def tool_names(tools: Iterable[str]) -> str:
    """`a, b, c`: the offered tools as the prompt and the repair message list them."""
    return ", ".join(sorted(tools))


__all__ = [
    "DEFAULT_MAX_STEPS",
    "INSTRUCTIONS",
    "NUMBERS",
    "PlanGrammar",
    "asks_words",
    "expressible",
    "goal_files",
    "goal_folders",
    "goal_numbers",
    "goal_words",
    "plain_goal",
    "plan_fits",
    "plan_grammar",
    "tool_names",
]

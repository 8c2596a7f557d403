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
Given the goal, the grammar also keeps what a weak model copies from an example out: a
`calculate` number is one the goal states or a small constant of a formula (`NUMBERS`),
and a search query or an extraction's `into` is made of the goal's own words.
A tool with a required parameter no value grammar covers (a record type) is left out.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .grammar_ir import Alt, Chars, Expr, Grammar, Lit, Ref, Rep, alt, opt, seq

DEFAULT_MAX_STEPS = 4  # everyday goals need 1-4 steps; a weak model given more room repeats steps
# Parameters the planner never sets: the engine picks sampling for model steps, and a weak
# model fills an offered `system` with noise (the prompt carries the instructions).
HIDDEN_PARAMS = frozenset({"temperature", "max_tokens", "system"})
# Parameters whose text is an arithmetic expression (the tool, the parameter).
EXPRESSION_PARAMS = frozenset({("calculate", "expression")})
# Parameters whose text, given a goal, is the goal's words (and earlier results) only.
GOAL_WORD_PARAMS = frozenset({("search", "query"), ("extract", "into")})
GOAL_WORDS = 8  # words of such a parameter
# The numbers a formula needs besides the goal's: percent, months, weeks, days, hours,
# minutes, degrees (F to C), halves and small counts, a yearly percentage to a monthly rate.
NUMBERS: tuple[str, ...] = ("0.5", "1", "2", "5", "7", "9", "12", "24", "32", "52", "60")
NUMBERS += ("100", "365", "1000", "1200")
_NUMBER = re.compile(r"(?<![A-Za-z_.\d])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
_GOAL_WORD = re.compile(r"[^\W_][\w'-]*")
TIERS = ("fast", "standard", "frontier")
# Characters of free text; braces are only ever written by the reference rule.
TEXT_EXCLUDED = '"\\{}'
TEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:!?%#$&*()[]<>/'-+=_|~`@^éß€中"
TEXT_CHARS = 240  # a model step's prompt or text (a restated goal and results)
SHORT_CHARS = 80  # other text: a query, a path, an expression for json_query
LIST_ITEMS = 6
MAP_ENTRIES = 4
# The reply's token cap: the JSON around the steps and about a step's worth each (a full
# 240-character text is ~60 tokens). A reply cut off at the cap is closed by the loader's
# repair, which drops the unfinished step; references point only backwards, so the rest holds.
PLAN_TOKENS = 24
STEP_TOKENS = 80


@dataclass(frozen=True)
class PlanGrammar:
    """A request's grammar, the tools it offers, and the reply's token bound."""

    grammar: Grammar
    tools: tuple[str, ...]
    max_steps: int

    @property
    def gbnf(self) -> str:
        return self.grammar.to_gbnf()

    @property
    def max_tokens(self) -> int:
        return PLAN_TOKENS + STEP_TOKENS * self.max_steps


def expressible(spec: Any) -> bool:
    """Whether every required parameter of the tool has a value grammar."""
    return all(_covered(p.type) for p in spec.params if p.required and p.name not in HIDDEN_PARAMS)


def goal_numbers(goal: str) -> list[str]:
    """The numbers `goal` states, in order, once each, as a calculation writes them
    (`1,380` -> `1380`, `007` -> `7`, `5%` -> `5`)."""
    found: list[str] = []
    for whole, fraction in _NUMBER.findall(goal):
        number = str(int(whole.replace(",", ""))) + fraction
        if number not in found:
            found.append(number)
    return found


def goal_words(goal: str) -> list[str]:
    """The goal's words, in order, once each (no brace, quote or backslash can be in one)."""
    found: list[str] = []
    for word in _GOAL_WORD.findall(goal):
        if word not in found and not any(c in TEXT_EXCLUDED for c in word):
            found.append(word)
    return found


def plan_grammar(
    tools: Mapping[str, Any],
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    min_steps: int = 1,
    goal: str | None = None,
) -> PlanGrammar:
    """The grammar of plans over `tools` (name -> ToolSpec) with `min_steps`..`max_steps` steps;
    with `goal`, calculations use its numbers (and `NUMBERS`), queries its words."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"steps must satisfy 1 <= min ({min_steps}) <= max ({max_steps})")
    offered = tuple(sorted(name for name, spec in tools.items() if expressible(spec)))
    if not offered:
        raise ValueError("no offered tool can be called from a plan grammar")
    rules: dict[str, Expr] = {}
    bound = goal is not None
    if goal is not None:
        own = goal_numbers(goal)
        numbers = [*own, *(n for n in NUMBERS if n not in own)]
        rules["goalnum"] = alt(*(Lit(n) for n in numbers))
        words = goal_words(goal)
        # A goal without words: its queries are plain short text.
        bound = bool(words)
        if words:
            rules["goalword"] = alt(*(Lit(w) for w in words))
    for k in range(1, max_steps + 1):
        _step_rules(rules, k, {name: tools[name] for name in offered}, goal is not None, bound)
        if k < max_steps:
            more = seq(Lit(", "), Ref(f"step{k + 1}"), Ref(f"tail{k + 1}"))
            end = Lit(f'], "outputs": ["s{k}"]}}')
            rules[f"tail{k}"] = more if k < min_steps else alt(end, more)
        else:
            rules[f"tail{k}"] = Lit(f'], "outputs": ["s{k}"]}}')
    rules["root"] = seq(Lit('{"steps": ['), Ref("step1"), Ref("tail1"))
    _shared_rules(rules)
    return PlanGrammar(Grammar(rules), offered, max_steps)


def _step_rules(
    rules: dict[str, Expr], k: int, tools: Mapping[str, Any], numbers: bool, words: bool
) -> None:
    """`step{k}`: one call of an offered tool, its text referring to s1..s(k-1); with
    `numbers`, a calculation's numbers are the goal's (`goalnum`), with `words`, a query's
    words are (`goalword`)."""
    earlier = [Lit(f"{{{{ s{j} }}}}") for j in range(1, k)]
    if earlier:
        rules[f"ref{k}"] = alt(*earlier)
    ref = Ref(f"ref{k}") if earlier else None
    rules[f"text{k}"] = _text(ref, TEXT_CHARS)
    rules[f"short{k}"] = _text(ref, SHORT_CHARS)
    if words:
        word = alt(Ref("goalword"), ref) if ref is not None else Ref("goalword")
        rules[f"words{k}"] = seq(
            Lit('"'), word, Rep(seq(Lit(" "), word), 0, GOAL_WORDS - 1), Lit('"')
        )
    number = Ref("goalnum" if numbers else "number")
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
    calls = []
    for name, spec in tools.items():
        rule = f"call{k}-{_rule_name(name)}"
        parts: list[Expr] = [Lit(f'"tool": {_json_string(name)}')]
        if getattr(spec, "uses_model", False):
            parts.append(opt(seq(Lit(', "tier": '), alt(*(Lit(f'"{t}"') for t in TIERS)))))
        parts += [Lit(', "args": {'), _args(spec, k, words), Lit("}")]
        rules[rule] = seq(*parts)
        calls.append(Ref(rule))
    rules[f"step{k}"] = seq(Lit(f'{{"id": "s{k}", '), alt(*calls), Lit("}"))


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


def _args(spec: Any, k: int, words: bool) -> Expr:
    """The tool's parameters by name: required ones in order, then any optional ones."""
    params = [p for p in spec.params if p.name not in HIDDEN_PARAMS and _covered(p.type)]
    required = [p for p in params if p.required]
    optional = [p for p in params if not p.required]

    def pair(p: Any) -> Expr:
        return seq(Lit(f"{_json_string(p.name)}: "), _value(spec, p, k, words))

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


def _value(spec: Any, param: Any, k: int, words: bool) -> Expr:
    if (spec.name, param.name) in EXPRESSION_PARAMS:
        return seq(Lit('"'), Ref(f"sum{k}"), Lit('"'))
    if words and (spec.name, param.name) in GOAL_WORD_PARAMS and param.type.kind == "str":
        return Ref(f"words{k}")
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
    "NUMBERS",
    "PlanGrammar",
    "expressible",
    "goal_numbers",
    "goal_words",
    "plan_grammar",
    "tool_names",
]

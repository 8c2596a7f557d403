"""A small grammar description from which both llama.cpp GBNF text and random derivations come.

The planner's grammar (engine/agent/plan_grammar.py) is written once in these terms; the
model is constrained by the GBNF printed from it (`to_gbnf`), and the tests draw random
derivations from the very same description (`sample`), so "every string the model can
produce loads and checks" is tested on the grammar the model gets, not on a copy.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

# Past this depth, or this many characters, a derivation takes at every choice the way
# closest to a leaf, so recursive rules (arithmetic in parentheses) end, and soon.
SAMPLE_DEPTH = 40
SAMPLE_CHARS = 3000


@dataclass(frozen=True)
class Lit:
    """Exactly this text."""

    text: str


@dataclass(frozen=True)
class Chars:
    """One character: any but `excluded` (besides the control characters, always out);
    the sampler draws from `alphabet`, every character of which must be allowed."""

    excluded: str
    alphabet: str


@dataclass(frozen=True)
class Seq:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Expr, ...]


@dataclass(frozen=True)
class Rep:
    """`item` repeated between `low` and `high` times."""

    item: Expr
    low: int
    high: int


@dataclass(frozen=True)
class Ref:
    """The rule of this name."""

    name: str


Expr = Lit | Chars | Seq | Alt | Rep | Ref


def seq(*items: Expr) -> Expr:
    return items[0] if len(items) == 1 else Seq(tuple(items))


def alt(*options: Expr) -> Expr:
    return options[0] if len(options) == 1 else Alt(tuple(options))


def opt(item: Expr) -> Expr:
    return Rep(item, 0, 1)


@dataclass(frozen=True)
class Grammar:
    """Named rules; derivations start at `root`."""

    rules: Mapping[str, Expr]
    root: str = "root"
    # Each rule's least derivation depth, computed once (the sampler's way out of recursion).
    heights: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heights", _heights(self.rules))

    def to_gbnf(self) -> str:
        """The rules as llama.cpp GBNF text (`root` first)."""
        names = [self.root, *(n for n in self.rules if n != self.root)]
        return "\n".join(f"{name} ::= {_gbnf(self.rules[name], top=True)}" for name in names) + "\n"

    def sample(self, rng: random.Random) -> str:
        """One random derivation from `root`."""
        out: list[str] = []
        _sample(Ref(self.root), self.rules, self.heights, rng, 0, out)
        return "".join(out)


def _gbnf(expr: Expr, top: bool = False) -> str:
    if isinstance(expr, Lit):
        return _quote(expr.text)
    if isinstance(expr, Chars):
        return "[^" + "".join(_class_char(c) for c in expr.excluded) + "\\x00-\\x1f]"
    if isinstance(expr, Ref):
        return expr.name
    if isinstance(expr, Seq):
        text = " ".join(_gbnf(item) for item in expr.items)
        return text if top else f"({text})"
    if isinstance(expr, Alt):
        text = " | ".join(_gbnf(option, top=True) for option in expr.options)
        return text if top else f"({text})"
    inner = _gbnf(expr.item)
    if (expr.low, expr.high) == (0, 1):
        return f"{inner}?"
    return f"{inner}{{{expr.low},{expr.high}}}"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _class_char(char: str) -> str:
    if char in "\\]^-[":
        return "\\" + char
    if ord(char) < 0x20:
        return f"\\x{ord(char):02x}"
    return char


def _heights(rules: Mapping[str, Expr]) -> dict[str, int]:
    """Each rule's least derivation depth (a fixed point; unreachable leaves stay large)."""
    heights = dict.fromkeys(rules, 10**6)
    changed = True
    while changed:
        changed = False
        for name, expr in rules.items():
            height = _height(expr, heights) + 1
            if height < heights[name]:
                heights[name], changed = height, True
    return heights


def _height(expr: Expr, heights: Mapping[str, int]) -> int:
    if isinstance(expr, Lit | Chars):
        return 0
    if isinstance(expr, Ref):
        return heights[expr.name]
    if isinstance(expr, Seq):
        return max((_height(item, heights) for item in expr.items), default=0)
    if isinstance(expr, Alt):
        return min(_height(option, heights) for option in expr.options)
    return _height(expr.item, heights) if expr.low else 0


def _sample(
    expr: Expr,
    rules: Mapping[str, Expr],
    heights: Mapping[str, int],
    rng: random.Random,
    depth: int,
    out: list[str],
) -> None:
    if isinstance(expr, Lit):
        out.append(expr.text)
    elif isinstance(expr, Chars):
        out.append(rng.choice(expr.alphabet))
    elif isinstance(expr, Ref):
        _sample(rules[expr.name], rules, heights, rng, depth + 1, out)
    elif isinstance(expr, Seq):
        for item in expr.items:
            _sample(item, rules, heights, rng, depth, out)
    elif isinstance(expr, Alt):
        options = expr.options
        if _ending(depth, out):
            least = min(_height(o, heights) for o in options)
            options = tuple(o for o in options if _height(o, heights) == least)
        _sample(rng.choice(options), rules, heights, rng, depth, out)
    else:
        high = expr.low if _ending(depth, out) else expr.high
        # Mostly short, sometimes the longest allowed: both ends of the bound get exercised.
        count = high if rng.random() < 0.1 else rng.randint(expr.low, min(high, expr.low + 12))
        for _ in range(count):
            _sample(expr.item, rules, heights, rng, depth + 1, out)


def _ending(depth: int, out: list[str]) -> bool:
    # `out` holds short pieces: its length bounds the characters closely enough.
    return depth > SAMPLE_DEPTH or len(out) > SAMPLE_CHARS


__all__ = ["Alt", "Chars", "Expr", "Grammar", "Lit", "Ref", "Rep", "Seq", "alt", "opt", "seq"]

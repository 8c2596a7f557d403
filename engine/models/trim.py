"""Keeping a prompt within a token budget: long step inputs are cut in the middle, with a marker.

The embedded model reads prompts at a few hundred tokens per second per core, and its
attention cost grows with the prompt's length (see `local_model`), so a prompt that pastes
whole search results into a template takes tens of seconds. What is cut is what the
template substituted in (the step's inputs), never the template's own words (the
instructions): the rendered prompt is matched against the template's literal text to find
the substituted values, and the longest values are shortened first, each keeping its head
and tail around a `[... N tokens cut ...]` marker. When the template cannot be matched (it
has `{% %}` blocks, or a value was not where the template put it), the whole prompt is cut
in its middle instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# A value is never cut below this many tokens (a few words of each input stay visible).
MIN_VALUE_TOKENS = 16

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


class Tokenizer(Protocol):
    """The model's own tokenizer: counts are exact, cuts fall on token boundaries."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: Sequence[int]) -> str: ...


@dataclass(frozen=True)
class Trimmed:
    """A prompt after fitting: its text and how many tokens were cut from it."""

    text: str
    dropped: int


def marker(count: int) -> str:
    return f" [... {count} tokens cut ...] "


def fit(text: str, budget: int, tokenizer: Tokenizer, template: str | None = None) -> Trimmed:
    """`text` cut to about `budget` tokens (a cut costs the few tokens of its marker)."""
    tokens = len(tokenizer.encode(text))
    if tokens <= budget:
        return Trimmed(text, 0)
    pieces = split_values(template, text) if template else None
    if pieces is None or not any(is_value for _, is_value in pieces):
        pieces = [(text, True)]
    encoded = [(tokenizer.encode(piece), is_value) for piece, is_value in pieces]
    fixed = sum(len(ids) for ids, is_value in encoded if not is_value)
    values = [len(ids) for ids, is_value in encoded if is_value]
    cap = shared_cap(values, budget - fixed)
    if cap is None:
        # The instructions alone exceed the budget: cut the whole prompt instead.
        encoded = [(tokenizer.encode(text), True)]
        cap = max(budget, MIN_VALUE_TOKENS)
    out = []
    for ids, is_value in encoded:
        out.append(cut_middle(ids, cap, tokenizer) if is_value else tokenizer.decode(ids))
    trimmed = "".join(out)
    return Trimmed(trimmed, max(0, tokens - len(tokenizer.encode(trimmed))))


def shared_cap(lengths: list[int], room: int) -> int | None:
    """The largest per-value length so that all values fit in `room` tokens (water-filling:
    short values stay whole, long ones are shortened to a common length)."""
    if room < MIN_VALUE_TOKENS * len(lengths):
        return None
    rest = room
    remaining = sorted(lengths)
    while remaining:
        share = rest // len(remaining)
        if remaining[0] > share:
            return max(share, MIN_VALUE_TOKENS)
        rest -= remaining.pop(0)
    return room  # everything fits (not reached when the text was over budget)


def cut_middle(ids: list[int], cap: int, tokenizer: Tokenizer) -> str:
    """The value's head and tail, `cap` tokens in all with the marker, or the value whole."""
    if len(ids) <= cap:
        return tokenizer.decode(ids)
    dropped = len(ids) - cap
    mark = marker(dropped)
    keep = max(2, cap - len(tokenizer.encode(mark)))
    head = (keep + 1) // 2
    tail = keep - head
    return tokenizer.decode(ids[:head]) + mark + tokenizer.decode(ids[len(ids) - tail :])


def split_values(template: str, rendered: str) -> list[tuple[str, bool]] | None:
    """`rendered` as consecutive (text, is_value) pieces, by finding the template's literal
    text in order; None when the template has blocks or comments, or does not match.

    Whitespace in the literal text matches any whitespace (plans dedent their prompts, and
    `{{-` trims); text before the first literal (a tool's own wrapper) is kept as literal.
    Each literal is found from where the last one ended (linear time, no backtracking);
    two values with only whitespace between them count as one.
    """
    parts = _TAG.split(template)
    tags = _TAG.findall(template)
    if not tags or any(not tag.startswith("{{") for tag in tags):
        return None
    pieces: list[tuple[str, bool]] = []
    position = 0
    in_value = False
    for i, literal in enumerate(parts):
        words = literal.split()
        if words:
            found = re.compile(r"\s*".join(re.escape(w) for w in words)).search(rendered, position)
            if found is None:
                return None
            if found.start() > position:
                pieces.append((rendered[position : found.start()], in_value))
            pieces.append((found.group(), False))
            position = found.end()
            in_value = False
        if i < len(tags):
            in_value = True
    if position < len(rendered):
        pieces.append((rendered[position:], in_value))
    return pieces

"""Prompt trimming for the embedded model: step inputs are cut in the middle, instructions kept.

A whitespace tokenizer stands in for the model's (one token per word); the real one is
exercised in tests/test_local_model.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.models.trim import MIN_VALUE_TOKENS, fit, split_values


class Words:
    """One token per word (with the whitespace before it)."""

    def __init__(self) -> None:
        self.vocab: list[str] = []
        self.ids: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        out = []
        for piece in re.findall(r"\s*\S+|\s+$", text):
            if piece not in self.ids:
                self.ids[piece] = len(self.vocab)
                self.vocab.append(piece)
            out.append(self.ids[piece])
        return out

    def decode(self, tokens: Sequence[int]) -> str:
        return "".join(self.vocab[t] for t in tokens)


WORDS = Words()
TEMPLATE = "Compare these.\nFirst: {{ a }}\nSecond: {{ b }}\nWhich is larger? Answer in one line."


def numbered(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def render(a: str, b: str) -> str:
    return TEMPLATE.replace("{{ a }}", a).replace("{{ b }}", b)


def tokens(text: str) -> int:
    return len(WORDS.encode(text))


def test_a_prompt_within_budget_is_untouched() -> None:
    prompt = render("one two", "three")
    assert fit(prompt, 100, WORDS, TEMPLATE).text == prompt
    assert fit(prompt, 100, WORDS, TEMPLATE).dropped == 0


def test_a_long_input_is_cut_in_its_middle_and_the_instructions_kept() -> None:
    prompt = render(numbered("a", 500), "short input")
    fitted = fit(prompt, 100, WORDS, TEMPLATE)
    assert tokens(fitted.text) <= 100
    assert fitted.dropped == tokens(prompt) - tokens(fitted.text)
    # The template's own words and the short input are whole.
    for kept in (
        "Compare these.",
        "First:",
        "Second: short input",
        "Which is larger? Answer in one line.",
    ):
        assert kept in fitted.text
    # The long input keeps its head and tail around a marker that says how much went.
    assert "a0 a1 a2" in fitted.text and "a498 a499" in fitted.text
    cut = int(re.search(r"\[\.\.\. (\d+) tokens cut \.\.\.\]", fitted.text).group(1))  # type: ignore[union-attr]
    assert 400 < cut < 500


def test_two_long_inputs_share_the_budget() -> None:
    prompt = render(numbered("a", 400), numbered("b", 300))
    fitted = fit(prompt, 120, WORDS, TEMPLATE)
    kept_a = len(re.findall(r"\ba\d+", fitted.text))
    kept_b = len(re.findall(r"\bb\d+", fitted.text))
    assert tokens(fitted.text) <= 120
    assert abs(kept_a - kept_b) <= 2 and kept_a >= MIN_VALUE_TOKENS // 2


def test_a_short_input_stays_whole_beside_a_long_one() -> None:
    short = numbered("s", 30)
    fitted = fit(render(numbered("a", 1000), short), 150, WORDS, TEMPLATE)
    assert short in fitted.text and tokens(fitted.text) <= 150


def test_without_a_usable_template_the_whole_prompt_is_cut_in_the_middle() -> None:
    prompt = "Read this. " + numbered("w", 300) + " Now answer yes or no."
    looped = "{% for x in xs %}{{ x }}{% endfor %}"
    for template in (None, looped, "Nothing of it {{ here }}"):
        fitted = fit(prompt, 60, WORDS, template)
        assert fitted.text.startswith("Read this. w0")
        assert fitted.text.endswith("Now answer yes or no.")
        assert tokens(fitted.text) <= 60 and fitted.dropped > 200


def test_a_tools_own_wrapper_around_the_input_is_kept() -> None:
    """summarize/extract put their instructions around the step's `text` input."""
    prompt = "Summarize the text below.\n\nText:\n" + numbered("t", 400)
    fitted = fit(prompt, 80, WORDS, "{{ doc }}")
    assert fitted.text.startswith("Summarize the text below.")
    assert tokens(fitted.text) <= 80


def test_literal_text_matches_across_reindented_whitespace() -> None:
    template = "    Salary: {{ s }}.\n    Question:   which {{ q }}?"
    rendered = "Salary: 100.\nQuestion: which city is cheaper?"
    pieces = split_values(template, rendered)
    assert pieces is not None
    assert "".join(p for p, _ in pieces) == rendered
    assert [p.strip() for p, is_value in pieces if is_value] == ["100", "city is cheaper"]


@given(
    a=st.integers(0, 600),
    b=st.integers(0, 600),
    budget=st.integers(60, 400),
)
def test_fitting_never_exceeds_the_budget_nor_loses_the_instructions(
    a: int, b: int, budget: int
) -> None:
    prompt = render(numbered("a", a), numbered("b", b))
    fitted = fit(prompt, budget, WORDS, TEMPLATE)
    assert tokens(fitted.text) <= budget
    assert fitted.dropped == tokens(prompt) - tokens(fitted.text)
    assert "Which is larger? Answer in one line." in fitted.text


def test_the_budget_is_set_from_the_environment_and_a_bad_value_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.errors import ConfigError
    from engine.models.local_model import PROMPT_BUDGET, prompt_budget

    monkeypatch.delenv("PLANFILE_LOCAL_PROMPT_TOKENS", raising=False)
    assert prompt_budget() == PROMPT_BUDGET
    monkeypatch.setenv("PLANFILE_LOCAL_PROMPT_TOKENS", "0")
    assert prompt_budget() == 0
    monkeypatch.setenv("PLANFILE_LOCAL_PROMPT_TOKENS", "2k")
    with pytest.raises(ConfigError, match="PLANFILE_LOCAL_PROMPT_TOKENS='2k'"):
        prompt_budget()

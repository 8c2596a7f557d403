"""Worked plans for the planner's prompt, chosen per goal by lexical similarity.

A weak model copies what it is shown, so it is shown little and only what fits: at most
`SHOWN` examples from `prompts/plan_examples.json`, ranked by BM25 between the goal and
the example (its goal and its plan's text), never one that calls a tool the run does not
offer, never one sharing no word with the goal. The examples use positional step ids
(`s1`, `s2`, ...) like the plan grammar, so no example's step name can be copied; an example
is shown rewritten in the goal's own words, files and numbers (`Example.adapted`), and one
that cannot be (it needs a file or numbers the goal lacks, or its steps' order is one the
goal's grammar refuses: `plan_fits`) is not shown, so the prompt never holds an example the
goal's grammar (engine/agent/plan_grammar.py) would refuse.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from typing import Any

from dsl.values import walk
from engine.agent.plan_grammar import (
    EXPRESSION_PARAMS,
    GOAL_WORDS,
    NUMBERS,
    goal_files,
    goal_folders,
    goal_numbers,
    goal_words,
    plain_goal,
    plan_fits,
)

SHOWN = 2
# Below this an example shares only a common word or two with the goal: not shown.
MIN_SCORE = 1.0
# ... and a second example needs at least this share of the best one's score.
RUNNER_UP = 0.5
# BM25's usual constants (term saturation, length normalisation).
K1 = 1.2
B = 0.75
_WORD = re.compile(r"[a-z0-9]+")
# A number in a calculation (not a step id's digit: `{{ s1 }}`).
_EXPRESSION_NUMBER = re.compile(r"(?<![A-Za-z_.\d])\d+(?:\.\d+)?")
_WRITTEN = re.compile(r"\b(?:to|into|as|called|named)\s+([\w./-]+\.[a-z]+)\b", re.IGNORECASE)
_REF = re.compile(r"\{\{ s\d+ \}\}")
_REFS_ONLY = re.compile(r"(?:\s*\{\{ s\d+ \}\})+\s*")
# Words that say nothing about what a goal needs.
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "give",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


class _Unfit(Exception):
    """An example that cannot be rewritten in a goal's terms (why, for debugging)."""


@dataclass(frozen=True)
class Example:
    goal: str
    plan: dict[str, Any]

    @property
    def tools(self) -> frozenset[str]:
        return frozenset(step["tool"] for step in self.plan["steps"])

    def text(self) -> str:
        """The plan as the grammar writes it (compact JSON, keys in its order)."""
        return json.dumps(self.plan, ensure_ascii=False)

    def adapted(self, goal: str) -> Example | None:
        """The example rewritten in `goal`'s own terms, or None when it does not fit `goal`.

        A weak model copies the example it is shown, so every free text of the example is
        replaced: a model step's prompt becomes the goal and the earlier results it uses
        (the example's own instructions go), a search query or an extraction's `into` the
        goal's words, a path the file the goal names, a folder pattern the goal's folder,
        a calculation's numbers the goal's (in the order both state them; the constants of
        the formula stay). An example needing what the goal lacks (a file, more numbers) or
        holding text no rule rewrites (a JSON query) does not fit: what it would show is
        what the goal's grammar (engine/agent/plan_grammar.py) refuses or a copy."""
        plain = plain_goal(goal)
        if not plan_fits([step["tool"] for step in self.plan["steps"]], plain):
            return None  # its steps' order is one the goal's grammar refuses
        files = goal_files(plain)
        # The file a goal saves to follows `to`/`into`/`as`/`called`; the others it reads.
        written = [f for f in _WRITTEN.findall(plain) if f in files]
        read = [f for f in files if f not in written]
        tools = self.tools
        if read and "search" in tools and "read_file" not in tools:
            return None  # the goal names what to read: searching the corpus instead misleads
        folders = goal_folders(plain)
        # Every number as stated, so `5% over 5 years` fills both of an example's numbers.
        mine = goal_numbers(plain, unique=False)
        theirs = goal_numbers(self.goal, unique=False)
        words = [w for w in goal_words(plain) if w.lower() not in _STOP][:GOAL_WORDS]

        def number(match: re.Match[str]) -> str:
            text = match.group(0)
            if text in theirs:
                index = theirs.index(text)
                if index >= len(mine):
                    raise _Unfit(f"needs a number {index + 1} the goal lacks")
                return mine[index]
            if text not in NUMBERS:
                raise _Unfit(f"{text} is neither the example goal's number nor a constant")
            return text

        def rewrite(tool: str, name: str, value: str) -> str:
            if _REFS_ONLY.fullmatch(value):
                return value
            if self.goal in value:
                return "\n".join([plain, *_REF.findall(value)])
            if name == "path" and tool == "read_file" and read:
                return paths.setdefault(value, read[0])
            if name == "path" and tool == "write_file" and written:
                return paths.setdefault(value, written[-1])
            if name == "pattern" and folders:
                return f"{folders[0]}/**/*"
            if name == "pattern" and re.search(r"\bfiles\b", plain, re.IGNORECASE):
                return "**/*"
            if name in ("query", "into") and words:
                return " ".join(words)
            if (tool, name) in EXPRESSION_PARAMS:
                return _EXPRESSION_NUMBER.sub(number, value)
            raise _Unfit(f"no rule rewrites {tool}.{name}")

        paths: dict[str, str] = {}  # the example's file -> the goal's
        steps = []
        try:
            for step in self.plan["steps"]:
                args = {
                    name: rewrite(step["tool"], name, value) if isinstance(value, str) else value
                    for name, value in step["args"].items()
                }
                steps.append({**step, "args": args})
        except _Unfit:
            return None
        # The example's goal, with the same numbers and file, so the plan shown matches it.
        shown = _EXPRESSION_NUMBER.sub(
            lambda m: (
                mine[theirs.index(m.group(0))]
                if m.group(0) in theirs and theirs.index(m.group(0)) < len(mine)
                else m.group(0)
            ),
            self.goal,
        )
        for theirs_file, mine_file in paths.items():
            shown = shown.replace(theirs_file, mine_file)
        return Example(shown, {**self.plan, "steps": steps})

    def words(self) -> list[str]:
        args = " ".join(item for item in walk(self.plan) if isinstance(item, str))
        return terms(f"{self.goal} {args}")


def terms(text: str) -> list[str]:
    """Lower-case words without stop words, a plural `s` dropped (`bills` = `bill`)."""
    words = _WORD.findall(text.lower().replace("{{", " ").replace("}}", " "))
    return [
        _stem(w) for w in words if len(w) > 1 and w not in _STOP and not re.fullmatch(r"s\d+", w)
    ]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@functools.cache
def all_examples() -> tuple[Example, ...]:
    raw = json.loads(
        resources.files("engine.agent")
        .joinpath("prompts", "plan_examples.json")
        .read_text(encoding="utf-8")
    )
    return tuple(Example(e["goal"], e["plan"]) for e in raw)


def choose(
    goal: str,
    offered: Collection[str],
    *,
    shown: int = SHOWN,
    pool: tuple[Example, ...] | None = None,
) -> list[Example]:
    """The `shown` examples most like `goal` whose tools are all offered (best first)."""
    fitting = [
        (e, e.adapted(goal))
        for e in (pool if pool is not None else all_examples())
        if e.tools <= set(offered)
    ]
    candidates = [e for e, fit in fitting if fit is not None]
    adapted = {id(e): fit for e, fit in fitting if fit is not None}
    if not candidates or shown <= 0:
        return []
    docs = [Counter(e.words()) for e in candidates]
    average = sum(sum(d.values()) for d in docs) / len(docs)
    frequency = Counter(word for d in docs for word in d)
    query = set(terms(goal))
    scored = []
    for index, (example, doc) in enumerate(zip(candidates, docs, strict=True)):
        length = sum(doc.values())
        score = 0.0
        for word in query & doc.keys():
            idf = math.log(1 + (len(docs) - frequency[word] + 0.5) / (frequency[word] + 0.5))
            tf = doc[word]
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        if score >= MIN_SCORE:
            scored.append((-score, index, example))
    ranked = sorted(scored)[:shown]
    # A runner-up far behind the best fits the goal only by a common word.
    kept = [example for score, _, example in ranked if score <= ranked[0][0] * RUNNER_UP]
    return [adapted[id(example)] for example in kept]


__all__ = ["SHOWN", "Example", "all_examples", "choose", "terms"]

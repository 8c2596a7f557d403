"""Worked plans for the planner's prompt, chosen per goal by lexical similarity.

A weak model copies what it is shown, so it is shown little and only what fits: at most
`SHOWN` examples from `prompts/plan_examples.json`, ranked by BM25 between the goal and
the example (its goal and its plan's text), never one that calls a tool the run does not
offer, never one sharing no word with the goal. The examples use positional step ids
(`s1`, `s2`, ...) like the plan grammar, so no example's step name can be copied.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

SHOWN = 2
# Below this an example shares only a common word or two with the goal: not shown.
MIN_SCORE = 1.0
# ... and a second example needs at least this share of the best one's score.
RUNNER_UP = 0.5
# BM25's usual constants (term saturation, length normalisation).
K1 = 1.2
B = 0.75
_WORD = re.compile(r"[a-z0-9]+")
_FILE = re.compile(r"[\w./-]+\.(?:txt|md|py|json|csv|html|js|ts|go|rs|java|yaml|yml|toml|log)\b")
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

    def adapted(self, goal: str) -> Example:
        """The example with its goal-specific text taken from `goal`: a model step's
        restated goal becomes this goal, a file path the file this goal names (if any), a
        search query this goal's words. A weak model copies the example's text; so what
        it copies is its own goal's."""
        plain = _plain(goal)
        files = _FILE.findall(goal)
        words = [w for w in re.findall(r"[\w'-]+", plain) if w.lower() not in _STOP]
        steps = []
        for step in self.plan["steps"]:
            args = {}
            for name, value in step["args"].items():
                if isinstance(value, str) and "{{" not in value:
                    # Only a path read from: an example's output file stays its own.
                    if name == "path" and files and step["tool"] == "read_file":
                        value = files[0]
                    elif step["tool"] == "search" and name == "query" and words:
                        value = " ".join(words[:8])
                if isinstance(value, str) and plain:
                    value = value.replace(self.goal, plain)
                args[name] = value
            steps.append({**step, "args": args})
        return Example(self.goal, {**self.plan, "steps": steps})

    def words(self) -> list[str]:
        args = " ".join(_strings(self.plan))
        return terms(f"{self.goal} {args}")


def _plain(text: str) -> str:
    """`text` without what plan text may not hold (braces, quotes, backslashes, controls)."""
    kept = "".join(" " if c in '{}"\\' or ord(c) < 0x20 else c for c in text)
    return " ".join(kept.split())


def terms(text: str) -> list[str]:
    """Lower-case words without stop words, a plural `s` dropped (`bills` = `bill`)."""
    words = _WORD.findall(text.lower().replace("{{", " ").replace("}}", " "))
    return [
        _stem(w) for w in words if len(w) > 1 and w not in _STOP and not re.fullmatch(r"s\d+", w)
    ]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


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
    candidates = [
        e for e in (pool if pool is not None else all_examples()) if e.tools <= set(offered)
    ]
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
    return [example.adapted(goal) for example in kept]


__all__ = ["SHOWN", "Example", "all_examples", "choose", "terms"]

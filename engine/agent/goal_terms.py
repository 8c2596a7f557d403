"""What a goal states, as the planner's grammar and examples use it: its plain text, numbers,
words, files and folders (engine/agent/plan_grammar.py builds a plan's text from these)."""

from __future__ import annotations

import re

# What plan text never holds outside a reference: a brace, a quote, a backslash.
TEXT_EXCLUDED = '"\\{}'
_NUMBER = re.compile(r"(?<![A-Za-z_.\d])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
_GOAL_WORD = re.compile(r"[^\W_][\w'-]*")
_FILE = re.compile(r"[\w./-]+\.(?:txt|md|py|json|csv|html|js|ts|go|rs|java|yaml|yml|toml|log)\b")
_FOLDER = re.compile(r"\b([\w.-]+)\s+(?:folder|directory)\b", re.IGNORECASE)


def plain_goal(goal: str) -> str:
    """`goal` as a plan's text may restate it: no brace, quote, backslash or control
    character, whitespace runs as one space."""
    kept = "".join(" " if c in TEXT_EXCLUDED or ord(c) < 0x20 else c for c in goal)
    return " ".join(kept.split())


def goal_numbers(goal: str, *, unique: bool = True) -> list[str]:
    """The numbers `goal` states, in order, once each (every time with `unique=False`: `5%
    over 5 years` states two), as a calculation writes them (`1,380` -> `1380`, `007` ->
    `7`, `5%` -> `5`)."""
    found: list[str] = []
    for whole, fraction in _NUMBER.findall(goal):
        number = str(int(whole.replace(",", ""))) + fraction
        if not unique or number not in found:
            found.append(number)
    return found


def goal_words(goal: str) -> list[str]:
    """The goal's words, in order, once each (no brace, quote or backslash can be in one)."""
    found: list[str] = []
    for word in _GOAL_WORD.findall(goal):
        if word not in found and not any(c in TEXT_EXCLUDED for c in word):
            found.append(word)
    return found


def goal_files(goal: str) -> list[str]:
    """The file names `goal` mentions (`notes.txt`, `src/app.py`), in order, once each."""
    return list(dict.fromkeys(_FILE.findall(plain_goal(goal))))


def goal_folders(goal: str) -> list[str]:
    """The folders `goal` names (`the src folder` -> `src`), in order, once each."""
    return list(dict.fromkeys(m.group(1) for m in _FOLDER.finditer(plain_goal(goal))))


__all__ = [
    "TEXT_EXCLUDED",
    "goal_files",
    "goal_folders",
    "goal_numbers",
    "goal_words",
    "plain_goal",
]

"""Reading JSON the way models write it: strict first, else repaired, every repair listed.

Models wrap JSON in code fences and prose, leave trailing commas and comments, use single
quotes, Python literals (`True`, `None`) and unquoted keys, and get cut off mid-array.
The repair itself is the `json-repair` library's (well kept, many edge cases); this module
adds what a user needs on top of it:

- *where* each repair was made: a diagnosis pass walks the strict parser's errors and
  names each one (`repaired: trailing comma at line 4`); its result must equal the
  library's, or the library's own log is listed instead, so the list never lies;
- a cut-off reply keeps its complete elements only: the unfinished one is dropped rather
  than completed with invented values (`{"id": ""}`);
- a reply that holds no JSON at all is a located error, never a guess.

It is the one reader of model-written JSON: plans (the loader, the planner) use
`parse_model_json`; replies that are data (a step's result in engine/models/structured.py,
a replanning decision) use `parse_reply_json`, which refuses a cut-off reply.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import Diagnostic, Location, PlanError, sort_diagnostics
from .strict_json import strict_json

MAX_LISTED = 20  # repairs listed one by one; the rest are counted
MAX_DIAGNOSED = 200  # problems named one by one (each costs a strict parse of the reply)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)(?:\r?\n[ \t]*```|\Z)", re.S)
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_CLOSERS = {"{": "}", "[": "]"}
CUT_OFF = "the reply was cut off"  # in the note of a reply that ended mid-value


def parse_reply_json(text: str) -> Any:
    """A model's reply that is data (a step's result, a replanning decision), not a plan:
    repaired as `parse_model_json` does, but a reply that was cut off is a ValueError,
    not its complete part: a shortened list would pass for the whole answer. ValueError
    (the located message) when there is no JSON to read; the repairs are not reported."""
    try:
        value, notes = parse_model_json(text)
    except PlanError as err:
        raise ValueError(err.diagnostics[0].message) from None
    cut = next((note for note in notes if CUT_OFF in note.message), None)
    if cut is not None:
        raise ValueError(cut.message.removeprefix("repaired: "))  # names the line
    return value


@dataclass(frozen=True, slots=True)
class _Fix:
    message: str
    offset: int  # in the text handed to parse_model_json


# A string literal (skipped), or what json.loads may refuse without saying where: NaN,
# Infinity, an integer past Python's 4,300-digit int() limit, a float past 1.8e308.
_BAD_NUMBER = re.compile(
    r'"(?:[^"\\]|\\.)*"|(?P<constant>-?\b(?:NaN|Infinity)\b)'
    r"|(?P<number>(?<![\w.+-])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
)


def _bad_number(text: str, file: str | None, err: ValueError) -> Diagnostic:
    """The located error for a ValueError from json.loads (which gives no position)."""
    for match in _BAD_NUMBER.finditer(text):
        if match["constant"]:
            line, col = _line_col(text, match.start())
            return Diagnostic(
                f"invalid JSON: {match['constant']} is not a JSON number",
                Location(file, line, col, end_column=col + len(match["constant"])),
                code="syntax",
            )
        number = match["number"]
        if not number:
            continue
        digits = number.lstrip("-")
        if digits.isdigit():
            problem = "a number with more than 4,300 digits" if len(digits) > 4300 else None
        else:
            problem = "a number too large for a float" if math.isinf(float(number)) else None
        if problem:
            line, col = _line_col(text, match.start())
            return Diagnostic(
                problem,
                Location(file, line, col, end_column=col + min(len(number), 40)),
                "write it as text, or use a smaller number",
                code="syntax",
            )
    return Diagnostic(f"invalid JSON: {err}", Location(file, 1, 1), code="syntax")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse_model_json(text: str, file: str | None = None) -> tuple[Any, list[Diagnostic]]:
    """JSON text as a model wrote it -> (value, notes listing each repair); or PlanError.

    Valid JSON loads strictly with no notes. Anything else is repaired only when the
    reply holds an object or a list; the notes say what was changed and where.
    """
    try:
        return strict_json(text), []
    except json.JSONDecodeError as err:
        first = err
    except ValueError as err:  # NaN / Infinity: not JSON, and not something to guess at
        raise PlanError([_bad_number(text, file, err)], text) from None
    except RecursionError:
        raise PlanError(
            [Diagnostic("JSON nests too deeply", Location(file, 1, 1), code="syntax")], text
        ) from None

    fixes: list[_Fix] = []
    start, end = _json_span(text, fixes)
    if start is None:
        raise _unrepairable(text, file, first, "the reply holds no JSON object or list")
    body = text[start:end]
    body, closers = _cut_off(body, start, fixes)
    import json_repair  # here, not at the top: only a broken JSON reply needs it (start-up)

    try:
        value = json_repair.loads(body + closers, skip_json_loads=False)
    except (RecursionError, ValueError):
        value = None
    if not isinstance(value, dict | list) or (not value and len(body.strip()) > 2):
        raise _unrepairable(text, file, first, "it could not be repaired")
    named, diagnosed = _diagnose(body + closers, start)
    if diagnosed is not _UNNAMED and diagnosed == value:
        fixes.extend(named)
    else:
        # Not every change could be named (or the names disagree with the library):
        # list the library's own account, after what was named up to the first doubt.
        log = json_repair.repair_json(body + closers, logging=True)[1]
        fixes.extend(named if diagnosed is _UNNAMED else [])
        fixes.extend(_Fix(str(entry["text"]), _find(text, entry, start)) for entry in log)
        if not log:
            where = named[-1].offset if named and diagnosed is _UNNAMED else start + first.pos
            fixes.append(_Fix("more problems, by the json-repair library", where))
    return value, sort_diagnostics(_notes(fixes, text, file))


def _unrepairable(text: str, file: str | None, err: json.JSONDecodeError, why: str) -> PlanError:
    line, col = _line_col(text, min(err.pos, len(text)))
    return PlanError(
        [
            Diagnostic(
                f"invalid JSON: {err.msg}; {why}",
                Location(file, line, col),
                hint='a plan is a JSON object like {"steps": [...]} or a list of steps',
                code="syntax",
            )
        ],
        text,
    )


def _notes(fixes: list[_Fix], text: str, file: str | None) -> list[Diagnostic]:
    notes = []
    for fix in fixes[:MAX_LISTED]:
        line, col = _line_col(text, fix.offset)
        notes.append(
            Diagnostic(
                f"repaired: {fix.message} at line {line}",
                Location(file, line, col),
                severity="note",
                code="repaired",
            )
        )
    if len(fixes) > MAX_LISTED:
        notes.append(
            Diagnostic(
                f"repaired: {len(fixes) - MAX_LISTED} more problems",
                Location(file, 1, 1),
                severity="note",
                code="repaired",
            )
        )
    return notes


def _find(text: str, entry: dict[str, Any], start: int) -> int:
    context = str(entry.get("context", "")).strip()
    found = text.find(context, start) if context else -1
    return found if found >= 0 else start


# --- where the JSON is ---------------------------------------------------------------
def _json_span(text: str, fixes: list[_Fix]) -> tuple[int | None, int]:
    """The part of a reply that is JSON: a fenced block's body, else first bracket on."""
    fence = _FENCE.search(text)
    if fence and _first_bracket(fence.group(1)) is not None:
        fixes.append(_Fix("removed the code fence around the JSON", fence.start()))
        if text[: fence.start()].strip():
            fixes.append(_Fix("removed the text before the JSON", 0))
        if text[fence.end() :].strip():
            fixes.append(_Fix("removed the text after the JSON", fence.end()))
        start = fence.start(1) + (_first_bracket(fence.group(1)) or 0)
        return start, fence.end(1)
    first = _first_bracket(text)
    if first is None:
        return None, 0
    if text[:first].strip():
        fixes.append(_Fix("removed the text before the JSON", 0))
    end = _matching_end(text, first)
    if end is not None and text[end:].strip():
        fixes.append(_Fix("removed the text after the JSON", end))
        return first, end
    return first, len(text)


def _first_bracket(text: str) -> int | None:
    """The first `{` or `[` that opens JSON (not `[1]`-style prose like `see [docs]`)."""
    for match in re.finditer(r"[\[{]", text):
        rest = text[match.end() :].lstrip()
        if match.group() == "{" or rest[:1] in ('"', "'", "{", "[", "]") or rest[:1].isdigit():
            return match.start()
    return None


def _scan(text: str) -> tuple[list[tuple[str, int]], bool, int | None]:
    """Bracket stack left open at the end, whether a string is open, and where the
    outermost value closed (string- and comment-aware)."""
    stack: list[tuple[str, int]] = []  # (bracket, offset after the last complete element)
    quote: str | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif text.startswith("//", i) or c == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
            continue
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
            continue
        elif c in "{[":
            stack.append((c, i + 1))
        elif c in "}]":
            if stack:
                stack.pop()
            if not stack:
                return [], False, i + 1
        elif c == "," and stack:
            stack[-1] = (stack[-1][0], i)
        i += 1
    return stack, quote is not None, None


def _matching_end(text: str, start: int) -> int | None:
    end = _scan(text[start:])[2]
    return None if end is None else start + end


def _cut_off(body: str, start: int, fixes: list[_Fix]) -> tuple[str, str]:
    """A reply cut off mid-value: drop the unfinished element of the innermost list and
    return the closing brackets the reply never wrote."""
    stack, _, _ = _scan(body)
    if not stack:
        return body, ""
    # Drop the unfinished element of the deepest list whose element is an object or a
    # list (a half-written step), else of the deepest list: a cut value is not guessed.
    lists = [d for d, (b, _) in enumerate(stack) if b == "["]
    nested = [d for d in lists if d + 1 < len(stack)]
    for depth in (nested or lists)[-1:]:
        bracket, keep = stack[depth]
        if bracket == "[":
            tail = body[keep:].strip().lstrip(",").strip()
            _inner, open_string, _ = _scan(tail)
            if depth + 1 == len(stack) and tail[-1:] in ('"', "}", "]") and not open_string:
                break  # the last element is whole: only the closing brackets are missing
            if tail:
                fixes.append(_Fix("dropped the unfinished last element", start + keep))
            body = body[:keep]
            stack = stack[: depth + 1]
            break
    closers = "".join(_CLOSERS[b] for b, _ in reversed(stack))
    if _scan(body)[1]:
        quote = '"' if body.rfind('"') >= body.rfind("'") else "'"
        closers = quote + closers
        fixes.append(_Fix("closed the unfinished string", start + len(body)))
    fixes.append(_Fix(f"{CUT_OFF}: closed {len(stack)} bracket(s)", start + len(body)))
    return body.rstrip().rstrip(","), closers


# --- naming each repair ------------------------------------------------------------------
_UNNAMED = object()  # `_diagnose` stopped before the text parsed


def _diagnose(text: str, base: int) -> tuple[list[_Fix], Any]:
    """Walk the strict parser's errors, fixing each locally to name it: (the fixes named,
    the value parsed after them, or _UNNAMED if a problem could not be named or there
    were more than MAX_DIAGNOSED). `base` maps offsets back to the reply."""
    fixes: list[_Fix] = []
    shift: list[tuple[int, int]] = []  # (offset in edited text, chars inserted there)

    def origin(pos: int) -> int:
        return base + pos - sum(d for at, d in shift if at < pos)

    for _ in range(MAX_DIAGNOSED):  # each round parses the text again: bounded
        try:
            return fixes, json.loads(text)
        except json.JSONDecodeError as err:
            pos = err.pos
        except (ValueError, RecursionError):
            return fixes, _UNNAMED
        edit = _name_fix(text, pos)
        if edit is None:
            return fixes, _UNNAMED
        message, at, remove, insert = edit
        fixes.append(_Fix(message, origin(at)))
        text = text[:at] + insert + text[at + remove :]
        shift.append((at, len(insert) - remove))
    return fixes, _UNNAMED


def _name_fix(text: str, pos: int) -> tuple[str, int, int, str] | None:
    """(what, where, chars removed, text inserted) for the problem at `pos`."""
    rest = text[pos:]
    before = text[:pos].rstrip()
    if rest.startswith("//") or rest.startswith("#"):
        end = text.find("\n", pos)
        return "comment", pos, (len(text) if end < 0 else end) - pos, ""
    if rest.startswith("/*"):
        end = text.find("*/", pos)
        return "comment", pos, (len(text) if end < 0 else end + 2) - pos, ""
    if rest[:1] in "}]" and before.endswith(","):
        comma = len(before) - 1
        return "trailing comma", comma, 1, ""
    if rest[:1] == "'":
        end = pos + 1
        while end < len(text) and text[end] != "'":
            end += 2 if text[end] == "\\" else 1
        inner = text[pos + 1 : end].replace("\\'", "'")
        return "single-quoted string", pos, end + 1 - pos, json.dumps(inner)
    word = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
    if word and word.group() in _PY_LITERALS and not re.match(r"\s*:", rest[word.end() :]):
        return f"Python `{word.group()}`", pos, word.end(), _PY_LITERALS[word.group()]
    if word and re.match(r"\s*:", rest[word.end() :]):
        return f"unquoted key `{word.group()}`", pos, word.end(), json.dumps(word.group())
    if (rest[:1] in ('"', "{", "[") or rest[:1].isdigit()) and (
        before[-1:] in ('"', "}", "]")
        or before[-1:].isdigit()
        or before.endswith(("true", "false", "null"))
    ):
        return "missing comma", pos, 0, ","
    return None

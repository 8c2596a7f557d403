"""The `.plan` front end: lark (LALR) text -> Plan IR, with a source map of positions.

Parsing runs the transformer inline with the LALR parser, so no parse tree is kept and
nothing recurses (deeply nested input cannot exhaust the stack). Positions go into a
`SourceMap` keyed by IR paths (`("steps", 3, "args", "query")`), which the checker uses
to point its diagnostics at the source. The token loop is lark's contextual lexer made
cheap (dsl/plan_lexer.py).

Over 400 lines because it is one pipeline over shared private types (`Pos`, `Val`,
`_Item`): the inline callbacks, the syntax-error messages and the IR assembly.
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import PurePath
from typing import Any, NamedTuple

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from pydantic import ValidationError

from dsl.ir import MAX_TIMEOUT_S, TASK_TYPES, FanOut, InputDecl, Plan, RecordType, Ref, Step

from .agent_steps import EXECUTORS, TOOLS_ARG, is_agent_step, names_from_refs
from .errors import Diagnostic, Location, Path, PlanError, gc_paused
from .lark_cache import cached_lark
from .plan_lexer import PlanLexer
from .values import walk

MAX_NESTING = 64
# Parsing takes ~80x a step-dense file's size in memory (100k steps: 7.3 MB, 560 MB)
# and ~450x for literal-dense data, so files and literal values are both capped.
MAX_PLAN_BYTES = 8 * 1024 * 1024
MAX_LITERAL_VALUES = 250_000  # numbers, strings, ... in one plan; data belongs in files
MAX_STRING_CHARS = 1024 * 1024  # one literal; longer text belongs in a file
MAX_NUMBER_CHARS = 4_000  # under Python's 4,300-digit int() limit


@dataclass
class SourceMap:
    """IR paths -> positions in one source (text line:col, or a JSON path)."""

    file: str | None
    positions: dict[Path, tuple[int, int, int]] = field(default_factory=dict)
    json_paths: dict[Path, Path] = field(default_factory=dict)
    is_json: bool = False
    notes: list[Diagnostic] = field(default_factory=list)
    """What the JSON loader repaired or coerced; the checker reports them as notes."""

    def locate(self, path: Path) -> Location:
        """The location of the closest recorded ancestor of `path`."""
        probe = path
        while True:
            if self.is_json:
                if probe in self.json_paths or not probe:
                    return Location(self.file, path=self.json_paths.get(probe, probe))
            elif probe in self.positions:
                line, col, end = self.positions[probe]
                return Location(self.file, line=line, column=col, end_column=end)
            if not probe:
                return (
                    Location(self.file, line=1, column=1)
                    if not self.is_json
                    else Location(self.file, path=())
                )
            probe = probe[:-1]

    def diagnostic(self, path: Path, message: str, **kwargs: Any) -> Diagnostic:
        return Diagnostic(message, self.locate(path), **kwargs)


class Pos(NamedTuple):
    line: int
    column: int
    end_column: int


def _pos(token: Token) -> Pos:
    line = token.line or 1
    col = token.column or 1
    end = token.end_column if token.end_line == token.line and token.end_column else col + 1
    return Pos(line, col, end)


class Val(NamedTuple):
    """A parsed argument value with its position and its children's (for nested refs)."""

    value: Any
    pos: Pos
    depth: int
    children: tuple[tuple[str | int, Val], ...] = ()


class _Item(NamedTuple):
    kind: str
    data: Any
    pos: Pos


class _SyntaxProblem(Exception):
    def __init__(self, message: str, pos: Pos, hint: str | None = None):
        super().__init__(message)
        self.pos = pos
        self.hint = hint


_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    match = _DURATION_RE.fullmatch(text)
    if not match:
        raise ValueError(f"bad duration {text!r}")
    if match.group(2) == "ms":
        return float(match.group(1)) / 1000  # division rounds exactly: 43ms == 0.043
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def decode_long_string(raw: str) -> str:
    """`\"\"\"...\"\"\"` content: first newline dropped, common indent removed, tail trimmed."""
    body = raw[3:-3]
    if body.startswith("\n"):
        body = body[1:]
    body = textwrap.dedent(body)
    # The closing quotes usually sit on their own indented line; drop that line's indent.
    stripped = body.rstrip(" \t")
    if stripped.endswith("\n"):
        body = stripped[:-1]
    return body


_counts = threading.local()


def _count_value(token: Token) -> None:
    """Charge one literal value to this parse (each costs ~1 KB while parsing)."""
    _counts.values = getattr(_counts, "values", 0) + 1
    if _counts.values > MAX_LITERAL_VALUES:
        raise _SyntaxProblem(
            f"plan holds more than {MAX_LITERAL_VALUES:,} literal values",
            _pos(token),
            hint="pass bulk data as an input or a workspace file instead of writing it inline",
        )


class _Builder(Transformer[Token, Any]):
    """Inline LALR callbacks: build IR pieces bottom-up, record positions."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)

    # --- values --------------------------------------------------------------
    def string(self, children: list[Token]) -> Val:
        (token,) = children
        _count_value(token)
        raw = str(token)
        if len(raw) > MAX_STRING_CHARS + 6:
            raise _SyntaxProblem(
                f"string of {len(raw) - 2:,} characters; the limit is {MAX_STRING_CHARS:,}",
                _pos(token),
                hint="put long text in a file in the workspace and read it with read_file",
            )
        if token.type == "LONG_STRING":
            value = decode_long_string(raw)
        elif raw.isascii() and raw.isprintable() and "\\" not in raw:
            value = raw[1:-1]  # what json.loads gives, without its cost (2 µs a string)
        else:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as err:
                raise _SyntaxProblem(
                    f"invalid escape in string: {err.msg}",
                    _pos(token),
                    hint="escapes are JSON's: \\n \\t \\\" \\\\ \\uXXXX",
                ) from None
        return Val(value, _pos(token), 0)

    def number(self, children: list[Token]) -> Val:
        (token,) = children
        _count_value(token)
        text = str(token)
        if len(text) > MAX_NUMBER_CHARS:  # int() refuses over 4,300 digits; say where
            raise _SyntaxProblem(
                f"number of {len(text):,} characters; the limit is {MAX_NUMBER_CHARS}",
                _pos(token),
            )
        value: int | float = int(text) if token.type == "INT" else float(text)
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            raise _SyntaxProblem(f"number {text[:20]} is too large", _pos(token))
        return Val(value, _pos(token), 0)

    def true(self, children: list[Token]) -> Val:
        _count_value(children[0])
        return Val(True, _pos(children[0]), 0)

    def false(self, children: list[Token]) -> Val:
        _count_value(children[0])
        return Val(False, _pos(children[0]), 0)

    def null(self, children: list[Token]) -> Val:
        _count_value(children[0])
        return Val(None, _pos(children[0]), 0)

    def ref(self, children: list[Token]) -> Val:
        first, last = children[0], children[-1]
        pos = Pos(first.line or 1, first.column or 1, last.end_column or (first.column or 1) + 1)
        return Val(Ref.model_construct(ref=".".join(children)), pos, 0)

    def array(self, children: list[Any]) -> Val:
        pos = _pos(children[0])
        items: list[Val] = [c for c in children[1:] if c is not None]
        depth = 1 + max((c.depth for c in items), default=0)
        self._check_depth(depth, pos)
        return Val(
            [c.value for c in items],
            pos,
            depth,
            tuple((i, c) for i, c in enumerate(items)),
        )

    def pair(self, children: list[Any]) -> tuple[str, Val, Pos]:
        key, value = children
        if isinstance(key, Token):
            return (str(key), value, _pos(key))
        return (key.value, value, key.pos)

    def object(self, children: list[Any]) -> Val:
        pos = _pos(children[0])
        pairs: list[tuple[str, Val, Pos]] = [c for c in children[1:] if c is not None]
        out: dict[str, Any] = {}
        for key, value, pos in pairs:
            if key in out:
                raise _SyntaxProblem(f"duplicate key `{key}` in object", pos)
            out[key] = value.value
        depth = 1 + max((v.depth for _, v, _ in pairs), default=0)
        self._check_depth(depth, pos)
        return Val(out, pos, depth, tuple((k, v) for k, v, _ in pairs))

    @staticmethod
    def _check_depth(depth: int, pos: Pos) -> None:
        if depth > MAX_NESTING:
            raise _SyntaxProblem(
                f"value nests more than {MAX_NESTING} levels deep",
                pos,
                hint="pass deep data as a JSON input or file instead of writing it inline",
            )

    # --- types -----------------------------------------------------------------
    def type(self, children: list[Any]) -> tuple[str, Pos, int]:
        name: Token = children[0]
        args = children[1] if len(children) > 1 and isinstance(children[1], list) else None
        optional = isinstance(children[-1], Token) and children[-1].type == "OPTIONAL"
        depth = 1 + max((a[2] for a in args), default=0) if args else 1
        if depth > 32:
            raise _SyntaxProblem("type nests more than 32 levels deep", _pos(name))
        text = str(name)
        if args:
            text += "[" + ", ".join(a[0] for a in args) + "]"
        if optional:
            text += "?"
        return (text, _pos(name), depth)

    def type_args(self, children: list[tuple[str, Pos, int]]) -> list[tuple[str, Pos, int]]:
        return [c for c in children if c is not None]

    # --- statements --------------------------------------------------------------
    def expected_cost(self, children: list[Val]) -> tuple[str, Val]:
        return ("expected_cost", children[0])

    def plan_header(self, children: list[Any]) -> _Item:
        name = children[0]
        goal: str | None = None
        cost: Val | None = None
        for extra in children[1:]:
            if isinstance(extra, Val):
                goal = extra.value
            elif isinstance(extra, tuple):
                cost = extra[1]
        return _Item("plan", (str(name), goal, cost), _pos(name))

    def input_decl(self, children: list[Any]) -> _Item:
        name, type_ = children[0], children[1]
        default: Val | None = None
        description: str | None = None
        for extra in children[2:]:
            if isinstance(extra, Val):
                default = extra
            elif isinstance(extra, tuple) and extra and extra[0] == "describe":
                description = extra[1]
        return _Item("input", (str(name), type_, default, description), _pos(name))

    def tier_decl(self, children: list[Any]) -> _Item:
        name, model = children
        return _Item("tier", (str(name), model), _pos(name))

    def field(self, children: list[Any]) -> tuple[Token, tuple[str, Pos, int]]:
        return (children[0], children[1])

    def type_decl(self, children: list[Any]) -> _Item:
        name = children[0]
        return _Item("type", (str(name), children[1:]), _pos(name))

    def arg(self, children: list[Any]) -> tuple[Token, Val]:
        return (children[0], children[1])

    def call(self, children: list[Any]) -> tuple[Token, list[tuple[Token, Val]]]:
        return (children[0], [c for c in children[1:] if c is not None])

    def fanout(self, children: list[Any]) -> tuple[Token, Val]:
        return (children[0], children[1])

    def after(self, children: list[Token]) -> tuple[str, Any]:
        return ("after", list(children))

    def retry(self, children: list[Token]) -> tuple[str, Any]:
        return ("retry", children[0])

    def timeout(self, children: list[Token]) -> tuple[str, Any]:
        return ("timeout", children[0])

    def when(self, children: list[Val]) -> tuple[str, Any]:
        return ("when", children[0])

    def on_error(self, children: list[Token]) -> tuple[str, Any]:
        return ("on_error", children[0])

    def task(self, children: list[Token]) -> tuple[str, Any]:
        return ("task", children[0])

    def check(self, children: list[Val]) -> tuple[str, Any]:
        return ("check", children[0])

    def describe(self, children: list[Val]) -> tuple[str, Any]:
        return ("describe", children[0].value)

    def cache(self, children: list[Token]) -> tuple[str, Any]:
        return ("cache", children[0])

    def approve(self, children: list[Token]) -> tuple[str, Any]:
        return ("approve", children[0])

    def executor(self, children: list[Token]) -> tuple[str, Any]:
        return ("executor", children[0])

    def step_decl(self, children: list[Any]) -> _Item:
        return _Item("step", children, _pos(children[0]))

    def output_decl(self, children: list[Token]) -> _Item:
        return _Item("output", list(children), _pos(children[0]))

    def start(self, children: list[_Item]) -> list[_Item]:
        return children


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("dsl").joinpath("plan.lark").read_text(encoding="utf-8")
    # The LALR tables are built once per grammar and loaded from disk after that.
    return cached_lark(
        grammar,
        "plan",
        parser="lalr",
        lexer="contextual",
        transformer=_Builder(),
        _plugins={"ContextualLexer": PlanLexer},  # lark's lexer, its token loop made cheap
    )


_TERMINAL_NAMES = {
    "NAME": "a name",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "INT": "a number",
    "NUMBER": "a number",
    "DURATION": "a duration like `10s`",
    "$END": "the end of the file",
}


def _describe_expected(expected: set[str]) -> str:
    parser = _parser()
    words: set[str] = set()
    for name in expected:
        if name in _TERMINAL_NAMES:
            words.add(_TERMINAL_NAMES[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            words.add(name.lower())
            continue
        words.add(f"`{pattern.value}`" if pattern.type == "str" else name.lower())
    ordered = sorted(words)
    if len(ordered) > 8:
        return "one of " + ", ".join(ordered[:8]) + ", ..."
    if len(ordered) == 1:
        return ordered[0]
    return "one of " + ", ".join(ordered)


def _syntax_diagnostic(err: UnexpectedInput, source: str, file: str | None) -> Diagnostic:
    line = getattr(err, "line", None) or 1
    col = getattr(err, "column", None) or 1
    if isinstance(err, UnexpectedCharacters):
        start = err.pos_in_stream or 0
        char = source[start] if start < len(source) else ""
        if char == '"':
            if source[max(0, start - 2) : start + 1] == '"""':
                col = max(1, col - 2)
            if source.startswith('"""', max(0, start - 2)):
                return Diagnostic(
                    'unterminated string: `"""` is never closed',
                    Location(file, line, col, col + 3),
                    hint='close it with `"""`',
                    code="syntax",
                )
            return Diagnostic(
                "unterminated string",
                Location(file, line, col, col + 1),
                hint='close it with `"` on the same line; use `"""` for text over several lines',
                code="syntax",
            )
        shown = repr(char)[1:-1] if char.isprintable() else f"\\x{ord(char):02x}"
        return Diagnostic(
            f"unexpected character `{shown}`",
            Location(file, line, col, col + 1),
            hint=f"expected {_describe_expected(set(err.allowed or ()))}" if err.allowed else None,
            code="syntax",
        )
    if isinstance(err, UnexpectedToken):
        token = err.token
        if token.type == "$END":
            return Diagnostic(
                f"unexpected end of file; expected {_describe_expected(set(err.expected))}",
                Location(file, line, col, col + 1),
                code="syntax",
            )
        text = str(token)
        shown = text if len(text) <= 30 else text[:27] + "..."
        hint = None
        if token.type in ("STRING", "INT", "NUMBER", "LONG_STRING") and "NAME" in err.expected:
            hint = "arguments are named: write `tool(name: value)`"
        return Diagnostic(
            f"unexpected `{shown}`; expected {_describe_expected(set(err.expected))}",
            Location(file, line, col, col + max(1, min(len(text), 80))),
            hint=hint,
            code="syntax",
        )
    if isinstance(err, UnexpectedEOF):
        return Diagnostic(
            "unexpected end of file",
            Location(file, line, col),
            code="syntax",
        )
    return Diagnostic(str(err), Location(file, line, col), code="syntax")


def decode_source(data: bytes, file: str | None) -> str:
    """Bytes of a plan file -> text, or a located error for binary or oversized input."""
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(
            [
                Diagnostic(
                    f"plan is {len(data) / 1e6:.1f} MB; the limit is {MAX_PLAN_BYTES // 2**20} MiB",
                    Location(file),
                    hint="split the work into several plans",
                    code="too-large",
                )
            ]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise PlanError(
            [
                Diagnostic(
                    f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start}",
                    Location(file, line, col),
                    hint="plans are UTF-8 text; is this the right file?",
                    code="encoding",
                )
            ]
        ) from None
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise PlanError(
            [
                Diagnostic(
                    "binary data: NUL byte in plan text",
                    Location(file, line, col),
                    hint="plans are UTF-8 text; is this the right file?",
                    code="encoding",
                )
            ]
        )
    return text.removeprefix("\ufeff")


class Comment(NamedTuple):
    """A `# ...` comment: its 1-based line, its text, and whether code precedes it."""

    line: int
    text: str
    after_code: bool


# The grammar's string terminals, so `#` inside a string is not a comment.
_COMMENT_SCAN = re.compile(r'"""[\s\S]*?"""|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|#[^\n]*')


def scan_comments(source: str) -> list[Comment]:
    """The comments of `.plan` text, in order (the parser ignores them; `fmt` keeps them)."""
    comments: list[Comment] = []
    line = 1
    position = 0
    for match in _COMMENT_SCAN.finditer(source):
        if match.group(0)[0] != "#":
            continue
        line += source.count("\n", position, match.start())
        position = match.start()
        start_of_line = source.rfind("\n", 0, match.start()) + 1
        after_code = source[start_of_line : match.start()].strip() != ""
        comments.append(Comment(line, match.group(0).rstrip(), after_code))
    return comments


def default_plan_name(file: str | None) -> str:
    stem = PurePath(file).stem if file else "plan"
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem) or "plan"
    return name if re.match(r"[A-Za-z_]", name) else f"plan_{name}"


def parse_text(source: str, file: str | None = None) -> tuple[Plan, SourceMap]:
    """Parse `.plan` text into a Plan IR and its source map; raise PlanError."""
    with gc_paused():
        return _parse_text(source, file)


def _parse_text(source: str, file: str | None) -> tuple[Plan, SourceMap]:
    _counts.values = 0
    try:
        items: list[_Item] = _parser().parse(source)  # type: ignore[assignment]
    except UnexpectedInput as err:
        raise PlanError([_syntax_diagnostic(err, source, file)], source) from None
    except _SyntaxProblem as err:
        raise PlanError(
            [
                Diagnostic(
                    str(err),
                    Location(file, err.pos.line, err.pos.column, err.pos.end_column),
                    hint=err.hint,
                    code="syntax",
                )
            ],
            source,
        ) from None
    return _assemble(items, source, file)


def _record_val(smap: SourceMap, path: Path, val: Val) -> None:
    """Positions of a value and of every nested element."""
    stack: list[tuple[Path, Val]] = [(path, val)]
    while stack:
        current_path, current = stack.pop()
        if current.pos.line:
            smap.positions[current_path] = current.pos
        for key, child in current.children:
            stack.append(((*current_path, key), child))


def _assemble(items: list[_Item], source: str, file: str | None) -> tuple[Plan, SourceMap]:
    smap = SourceMap(file)
    positions = smap.positions
    problems: list[Diagnostic] = []

    def problem(pos: Pos, message: str, hint: str | None = None, code: str = "duplicate") -> None:
        problems.append(
            Diagnostic(
                message, Location(file, pos.line, pos.column, pos.end_column), hint, code=code
            )
        )

    name: str | None = None
    goal: str | None = None
    expected_cost: float | None = None
    inputs: list[InputDecl] = []
    tiers: dict[str, str] = {}
    records: list[RecordType] = []
    steps: list[Step] = []
    outputs: list[str] = []

    for item in items:
        kind = item.kind
        if kind == "plan":
            if name is not None:
                problem(item.pos, "a plan has one `plan` header; this is a second one")
                continue
            name, goal, cost = item.data
            positions[("name",)] = item.pos
            if cost is not None:
                if cost.value < 0:
                    problem(cost.pos, "expected_cost cannot be negative", code="invalid")
                expected_cost = float(cost.value)
                positions[("expected_cost_usd",)] = cost.pos
        elif kind == "input":
            input_name, type_, default, description = item.data
            path: Path = ("inputs", len(inputs))
            positions[path] = item.pos
            positions[(*path, "type")] = type_[1]
            if default is not None:
                _record_val(smap, (*path, "default"), default)
                if _contains_ref(default.value):
                    problem(
                        default.pos,
                        "an input's default must be a literal value, not a reference",
                        code="type",
                    )
                    continue
            inputs.append(
                InputDecl(
                    name=input_name,
                    type=type_[0],
                    default=default.value if default is not None else None,
                    description=description,
                )
            )
        elif kind == "tier":
            tier_name, model = item.data
            if tier_name in tiers:
                problem(item.pos, f"tier `{tier_name}` is declared twice")
                continue
            positions[("tiers", tier_name)] = item.pos
            tiers[tier_name] = model.value
        elif kind == "type":
            record_name, fields = item.data
            path = ("types", len(records))
            positions[path] = item.pos
            field_types: dict[str, str] = {}
            for field_token, field_type in fields:
                field_name = str(field_token)
                if field_name in field_types:
                    problem(
                        _pos(field_token), f"field `{field_name}` appears twice in `{record_name}`"
                    )
                    continue
                field_types[field_name] = field_type[0]
                positions[(*path, "fields", field_name)] = field_type[1]
            records.append(RecordType(name=record_name, fields=field_types))
        elif kind == "step":
            step = _build_step(item, len(steps), smap, problems)
            if step is not None:
                steps.append(step)
        elif kind == "output":
            for token in item.data:
                positions[("outputs", len(outputs))] = _pos(token)
                outputs.append(str(token))

    if problems:
        raise PlanError(problems, source)
    try:
        plan = Plan(
            name=name or default_plan_name(file),
            goal=goal,
            inputs=tuple(inputs),
            tiers=tiers,
            types=tuple(records),
            steps=tuple(steps),
            outputs=tuple(outputs),
            expected_cost_usd=expected_cost,
        )
    except ValidationError as err:  # names are checked by the grammar; defensive
        raise PlanError(
            [smap.diagnostic(tuple(e["loc"]), e["msg"], code="invalid") for e in err.errors()],
            source,
        ) from None
    return plan, smap


def _contains_ref(value: Any) -> bool:
    return any(isinstance(current, Ref) for current in walk(value))


_STEP_SETTINGS = {"tier", "model"}
# Every optional Step field's default, set once on a template step; each parsed step is
# a copy with its own fields (`model_copy` sets them without model_construct's per-field
# default resolution: 2 µs a step instead of 5). Every field is in the fields set, as
# when all are given to model_construct.
_STEP_DEFAULTS = {
    name: field.get_default(call_default_factory=True)
    for name, field in Step.model_fields.items()
    if not field.is_required() and name != "args"
}
_STEP_TEMPLATE = Step.model_construct(**{**_STEP_DEFAULTS, "id": "", "tool": "", "args": {}})


def _build_step(
    item: _Item, index: int, smap: SourceMap, problems: list[Diagnostic]
) -> Step | None:
    children = item.data
    file = smap.file
    positions = smap.positions
    path: Path = ("steps", index)
    name_token: Token = children[0]
    rest = children[1:]
    declared: tuple[str, Pos, int] | None = None
    if rest and isinstance(rest[0], tuple) and len(rest[0]) == 3 and isinstance(rest[0][1], Pos):
        declared = rest[0]
        rest = rest[1:]
    fan: tuple[Token, Val] | None = None
    if rest and isinstance(rest[0], tuple) and isinstance(rest[0][1], Val):
        fan = rest[0]
        rest = rest[1:]
    tool_token, args = rest[0]
    modifiers = rest[1:]

    def problem(pos: Pos, message: str, hint: str | None = None, code: str = "invalid") -> None:
        problems.append(
            Diagnostic(
                message, Location(file, pos.line, pos.column, pos.end_column), hint, code=code
            )
        )

    positions[path] = item.pos
    positions[(*path, "id")] = item.pos
    positions[(*path, "tool")] = _pos(tool_token)
    fields: dict[str, Any] = {"id": str(name_token), "tool": str(tool_token)}
    if declared is not None:
        fields["type"] = declared[0]
        positions[(*path, "type")] = declared[1]
    if fan is not None:
        var, over = fan
        if not isinstance(over.value, Ref):
            problem(over.pos, "`for ... in` needs a list input or step name")
            return None
        fields["for_each"] = FanOut(var=str(var), over=over.value)
        positions[(*path, "for_each")] = _pos(var)
        positions[(*path, "for_each", "over")] = over.pos
    arg_values: dict[str, Any] = {}
    ok = True
    for arg_token, val in args:
        arg_name = str(arg_token)
        if arg_name in arg_values or (arg_name in fields and arg_name in _STEP_SETTINGS):
            problem(_pos(arg_token), f"argument `{arg_name}` is given twice", code="duplicate")
            ok = False
            continue
        if arg_name in _STEP_SETTINGS:
            value = val.value
            if arg_name == "tier" and isinstance(value, Ref) and not value.path:
                fields["tier"] = value.ref
            elif isinstance(value, str):
                fields[arg_name] = value
            else:
                problem(
                    val.pos,
                    f"`{arg_name}` takes a {'tier name' if arg_name == 'tier' else 'model string'}",
                    hint='e.g. `tier: fast` or `model: "openai/gpt-4o-mini"`',
                    code="type",
                )
                ok = False
                continue
            positions[(*path, arg_name)] = val.pos
            continue
        arg_values[arg_name] = val.value
        if arg_name == TOOLS_ARG and is_agent_step(fields["tool"]):
            arg_values[arg_name] = names_from_refs(val.value)  # tool names, not references
        if val.children:
            _record_val(smap, (*path, "args", arg_name), val)
        elif val.pos.line:  # a scalar: only its own position
            positions[(*path, "args", arg_name)] = val.pos
    fields["args"] = arg_values
    seen: set[str] = set()
    for kind, value in modifiers:
        if kind in seen:
            problem(
                _first_pos(value),
                f"`{kind}` is given twice for step `{name_token}`",
                code="duplicate",
            )
            ok = False
            continue
        seen.add(kind)
        if kind == "after":
            fields["after"] = tuple(str(t) for t in value)
            for j, token in enumerate(value):
                positions[(*path, "after", j)] = _pos(token)
        elif kind == "retry":
            count = int(str(value)) if len(str(value)) <= 6 else 1_000_000
            if count < 0 or count > 100:
                problem(_pos(value), "retry count must be between 0 and 100")
                ok = False
                continue
            fields["retry"] = count
            positions[(*path, "retry")] = _pos(value)
        elif kind == "timeout":
            seconds = parse_duration(str(value))
            if not 0 < seconds <= MAX_TIMEOUT_S:
                problem(_pos(value), "timeout must be more than zero and at most a week (168h)")
                ok = False
                continue
            fields["timeout_s"] = seconds
            positions[(*path, "timeout_s")] = _pos(value)
        elif kind in ("when", "check"):
            fields[kind] = value.value
            positions[(*path, kind)] = value.pos
        elif kind == "on_error":
            fields["on_error"] = str(value)
            positions[(*path, "on_error")] = _pos(value)
        elif kind == "task":
            fields["task"] = str(value)
            positions[(*path, "task")] = _pos(value)
        elif kind == "describe":
            fields["description"] = value
        elif kind in ("cache", "approve"):
            fields[kind] = True
            positions[(*path, kind)] = _pos(value)
        elif kind == "executor":
            if str(value) not in EXECUTORS:
                problem(
                    _pos(value),
                    f"unknown executor `{value}`",
                    hint=f"executors: {', '.join(EXECUTORS)}",
                )
                ok = False
                continue
            fields["executor"] = str(value)
            positions[(*path, "executor")] = _pos(value)
    if not ok:
        return None
    task = fields.get("task")
    if task is not None and task not in TASK_TYPES:
        problems.append(
            smap.diagnostic(
                (*path, "task"),
                f"unknown task type `{task}`",
                hint=f"task types: {', '.join(TASK_TYPES)}",
                code="invalid",
            )
        )
        return None
    # The grammar and the checks above guarantee every field's constraints, so the
    # step is built without re-validating (validation was half the parse time).
    return _STEP_TEMPLATE.model_copy(update=fields)


def _first_pos(value: Any) -> Pos:
    if isinstance(value, Token):
        return _pos(value)
    if isinstance(value, Val):
        return value.pos
    if isinstance(value, list) and value:
        return _first_pos(value[0])
    return Pos(1, 1, 2)

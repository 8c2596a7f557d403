"""Plan types: parsing type strings, assignability, and Python/pydantic equivalents.

A plan type is written `str int float bool json`, `list[T]`, `dict[str, T]`, `T?`,
or the name of a record type declared in the plan. The IR stores types as canonical
strings; this module turns them into `Type` values the checker can compare and the
engine can validate results against.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, FiniteFloat, TypeAdapter, create_model

from .errors import PlanfileError

PRIMITIVES = ("str", "int", "float", "bool", "json")
Kind = Literal["str", "int", "float", "bool", "json", "list", "dict", "record", "null"]


@dataclass(frozen=True, slots=True)
class Type:
    """A resolved-or-named plan type; records are referred to by name."""

    kind: Kind
    item: Type | None = None  # element type of list and dict
    name: str | None = None  # record name
    optional: bool = False

    def __str__(self) -> str:
        if self.kind == "list":
            text = f"list[{self.item}]"
        elif self.kind == "dict":
            text = f"dict[str, {self.item}]"
        elif self.kind == "record":
            text = str(self.name)
        else:
            text = self.kind
        return text + ("?" if self.optional and self.kind != "null" else "")

    def required(self) -> Type:
        return Type(self.kind, self.item, self.name, False) if self.optional else self

    def as_optional(self) -> Type:
        return self if self.optional else Type(self.kind, self.item, self.name, True)


STR = Type("str")
INT = Type("int")
FLOAT = Type("float")
BOOL = Type("bool")
JSON = Type("json")
NULL = Type("null", optional=True)


class TypeSyntaxError(PlanfileError, ValueError):
    """A type string is malformed; `column` is 1-based within the string."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.column = column


_TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\[|\]|,|\?))")


@functools.lru_cache(maxsize=4096)
def parse_type(text: str) -> Type:
    """Parse `list[dict[str, City]]?` into a `Type`; raise TypeSyntaxError."""
    tokens: list[tuple[str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise TypeSyntaxError(f"unexpected {text[pos:].strip()[:1]!r} in type", pos + 1)
        value = match.group(1) or match.group(2)
        tokens.append((value, match.start(match.lastindex or 1) + 1))
        pos = match.end()
    index = 0

    def peek() -> str | None:
        return tokens[index][0] if index < len(tokens) else None

    def column() -> int:
        return tokens[index][1] if index < len(tokens) else len(text) + 1

    def expect(value: str) -> None:
        nonlocal index
        if peek() != value:
            got = peek()
            raise TypeSyntaxError(
                f"expected `{value}` in type, found {f'`{got}`' if got else 'the end'}", column()
            )
        index += 1

    def parse(depth: int) -> Type:
        nonlocal index
        if depth > 32:
            raise TypeSyntaxError("type nests too deeply (more than 32 levels)", column())
        word = peek()
        if word is None or not re.match(r"[A-Za-z_]", word):
            raise TypeSyntaxError(
                f"expected a type, found {f'`{word}`' if word else 'the end'}", column()
            )
        index += 1
        if word == "list":
            expect("[")
            result = Type("list", item=parse(depth + 1))
            expect("]")
        elif word == "dict":
            expect("[")
            key_col = column()
            key = parse(depth + 1)
            if key != STR:
                raise TypeSyntaxError("dict keys must be `str`", key_col)
            expect(",")
            result = Type("dict", item=parse(depth + 1))
            expect("]")
        elif word in PRIMITIVES:
            result = Type(word)  # type: ignore[arg-type]
        elif word == "any":
            result = JSON
        else:
            result = Type("record", name=word)
        if peek() == "?":
            index += 1
            result = result.as_optional()
        return result

    parsed = parse(0)
    if index != len(tokens):
        raise TypeSyntaxError(f"unexpected `{tokens[index][0]}` after type", column())
    return parsed


def record_names(t: Type) -> list[str]:
    """Every record name a type mentions (for name resolution)."""
    names: list[str] = []
    while t is not None:
        if t.kind == "record" and t.name:
            names.append(t.name)
        if t.item is None:
            break
        t = t.item
    return names


def is_assignable(source: Type, target: Type) -> bool:
    """Whether a value of type `source` may be passed where `target` is expected.

    `json` is dynamic both ways (checked when the plan runs); `int` widens to `float`;
    `T` fits `T?`, `T?` does not fit `T`.
    """
    if target.kind == "json" or source.kind == "json":
        return not (source.optional and not target.optional) or target.kind == "json"
    if source.kind == "null":
        return target.optional
    if source.optional and not target.optional:
        return False
    if source.kind == target.kind:
        if source.kind in ("list", "dict"):
            assert source.item is not None and target.item is not None
            return is_assignable(source.item, target.item)
        if source.kind == "record":
            return source.name == target.name
        return True
    return source.kind == "int" and target.kind == "float"


def literal_type(value: Any) -> Type:
    """The type of a JSON literal (`[1, 2.5]` is `list[float]`)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    if isinstance(value, list):
        return Type("list", item=join_types([literal_type(v) for v in value]))
    if isinstance(value, dict):
        return Type("dict", item=join_types([literal_type(v) for v in value.values()]))
    return JSON


def join_types(types: list[Type]) -> Type:
    """The narrowest type all of `types` fit (json when they disagree)."""
    if not types:
        return JSON
    optional = any(t.optional for t in types)
    concrete = [t.required() for t in types if t.kind != "null"]
    if not concrete:
        return NULL
    first = concrete[0]
    if all(t == first for t in concrete):
        result = first
    elif all(t.kind in ("int", "float") for t in concrete):
        result = FLOAT
    else:
        result = JSON
    return result.as_optional() if optional else result


def from_python(annotation: Any) -> Type:
    """Map a Python annotation (from a tool's signature) to a plan type."""
    if annotation is Any or annotation is object or annotation is None:
        return JSON
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            inner = from_python(non_none[0])
            return inner.as_optional() if len(non_none) < len(args) else inner
        return JSON.as_optional() if len(non_none) < len(args) else JSON
    if origin is Literal:
        return join_types([literal_type(a) for a in args])
    if origin in (list, tuple, set, frozenset):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return Type("list", item=from_python(args[0]))
        return Type("list", item=join_types([from_python(a) for a in args]) if args else JSON)
    if origin in (dict, Mapping) or annotation is dict:
        return Type("dict", item=from_python(args[1]) if len(args) == 2 else JSON)
    if annotation is list:
        return Type("list", item=JSON)
    simple = {str: STR, int: INT, float: FLOAT, bool: BOOL}
    if annotation in simple:
        return simple[annotation]
    return JSON


class RecordModelBase(BaseModel):
    """Base of the pydantic models generated for a plan's record types."""

    model_config = ConfigDict(extra="forbid")


def build_record_models(records: Mapping[str, Mapping[str, str]]) -> dict[str, type[BaseModel]]:
    """Pydantic models for a plan's record types (records may refer to each other).

    The same declarations give the same classes (cached): the checker, the engine, the
    model gateway and input parsing all call this, per plan or per step, and their
    `type_adapter`s are then built once.
    """
    key = tuple((name, tuple(fields.items())) for name, fields in records.items())
    return dict(_record_models(key))


@functools.lru_cache(maxsize=256)
def _record_models(
    records_key: tuple[tuple[str, tuple[tuple[str, str], ...]], ...],
) -> dict[str, type[BaseModel]]:
    records = {name: dict(fields) for name, fields in records_key}
    models: dict[str, type[BaseModel]] = {}
    building: set[str] = set()

    def model_for(name: str) -> type[BaseModel]:
        if name in models:
            return models[name]
        if name in building:  # recursive record: fall back to a dynamic field
            return dict  # type: ignore[return-value]
        building.add(name)
        fields: dict[str, Any] = {}
        for field_name, field_type in records[name].items():
            py = python_type(parse_type(field_type), model_for)
            default = None if parse_type(field_type).optional else ...
            fields[field_name] = (py, default)
        models[name] = create_model(name, __base__=RecordModelBase, **fields)
        building.discard(name)
        return models[name]

    for record in records:
        model_for(record)
    return models


def python_type(t: Type, record: Any) -> Any:
    """The Python annotation for a plan type; `record(name)` resolves record names."""
    base: Any
    if t.kind == "str":
        base = str
    elif t.kind == "int":
        base = int
    elif t.kind == "float":
        base = FiniteFloat  # nan and inf compare false with everything: never a plan value
    elif t.kind == "bool":
        base = bool
    elif t.kind == "list":
        assert t.item is not None
        base = list[python_type(t.item, record)]  # type: ignore[misc]
    elif t.kind == "dict":
        assert t.item is not None
        base = dict[str, python_type(t.item, record)]  # type: ignore[misc]
    elif t.kind == "record":
        base = record(t.name)
    elif t.kind == "null":
        return type(None)
    else:
        base = Any
    return Optional[base] if t.optional and base is not Any else base  # noqa: UP045


# Building a TypeAdapter costs ~100 µs (pydantic-core compiles a validator); a run of
# 10k steps of one type needs one. Keyed by the type and the record model classes it
# names (the classes themselves, so two runs' same-named records never share one).
_ADAPTERS: dict[tuple[Type, tuple[type[Any], ...]], TypeAdapter[Any]] = {}
_ADAPTERS_MAX = 1024


def type_adapter(t: Type, models: Mapping[str, type[BaseModel]]) -> TypeAdapter[Any]:
    """A pydantic TypeAdapter validating (and losslessly coercing) values of type `t`.

    Built once per type (and record classes): every caller (checker, engine, model
    gateway, inputs) shares the cache.
    """
    names = record_names(t)
    key = (t, tuple(models.get(name, dict) for name in names) if names else ())
    adapter = _ADAPTERS.get(key)
    if adapter is None:
        adapter = TypeAdapter(python_type(t, lambda name: models.get(name, dict)))
        if len(_ADAPTERS) >= _ADAPTERS_MAX:  # a long-lived server: drop the oldest
            del _ADAPTERS[next(iter(_ADAPTERS))]
        _ADAPTERS[key] = adapter
    return adapter

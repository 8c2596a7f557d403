"""The fast Step builder (`dsl.ir.fast_step`) makes exactly what `Step.model_validate` makes.

The JSON loader builds most steps without pydantic's validation; a step it builds that
way must equal, field for field and type for type, the validated one, and anything
validation would convert or refuse must be left to validation.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from dsl.ir import FanOut, Ref, Step, construct_ref, construct_step, fast_step

odd_text = st.sampled_from(["", "a", "a.b", "a b", "1a", "a\n", "é", "_x9", "a..b", "ok.x.y"])
names = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True), odd_text)
numbers = st.one_of(
    st.integers(-5, 200),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 5.0, 604800.0, 604800.5, float("inf"), float("nan")]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, names, st.text(max_size=8))
ref_dicts = st.one_of(
    st.builds(lambda r: {"ref": r}, st.one_of(names, numbers, st.none())),
    st.builds(lambda r, v: {"ref": r, "x": v}, names, scalars),
)
values = st.recursive(
    st.one_of(scalars, ref_dicts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(names, st.just("ref")), inner, max_size=3),
    ),
    max_leaves=8,
)
fan_outs = st.one_of(
    st.builds(lambda v, r: {"var": v, "over": {"ref": r}}, names, names),
    st.builds(lambda v, o: {"var": v, "over": o}, names, values),
    values,
)
field_values: dict[str, Any] = {
    "id": st.one_of(names, scalars),
    "tool": st.one_of(names, scalars),
    "args": st.one_of(
        st.dictionaries(st.one_of(names, st.just("ref")), values, max_size=4), values
    ),
    "type": st.one_of(st.none(), names, scalars),
    "for_each": st.one_of(st.none(), fan_outs),
    "after": st.one_of(st.lists(names, max_size=3), st.lists(scalars, max_size=2), scalars),
    "tier": st.one_of(st.none(), names, scalars),
    "model": st.one_of(st.none(), names, scalars),
    "task": st.one_of(st.sampled_from(["code", "search", "writing", "other"]), scalars),
    "retry": st.one_of(st.integers(-1, 101), scalars),
    "timeout_s": st.one_of(st.none(), numbers, scalars),
    "when": st.one_of(st.none(), st.text(max_size=8), scalars),
    "on_error": st.one_of(st.sampled_from(["fail", "skip"]), names, scalars),
    "check": st.one_of(st.none(), st.text(max_size=8), scalars),
    "description": st.one_of(st.none(), st.text(max_size=8), scalars),
    "cache": st.one_of(st.booleans(), scalars),
    "approve": st.one_of(st.booleans(), scalars),
    "executor": st.one_of(st.sampled_from(["llm", "agent", "other"]), scalars),
    "extra": scalars,
}


@st.composite
def step_dicts(draw: st.DrawFn) -> dict[str, Any]:
    step: dict[str, Any] = {"id": draw(names), "tool": draw(names)}
    for name in draw(st.lists(st.sampled_from(sorted(field_values)), max_size=6, unique=True)):
        step[name] = draw(field_values[name])
    for name in draw(st.lists(st.sampled_from(["id", "tool"]), max_size=1)):
        del step[name]
    return step


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, BaseModel):
        return a.model_fields_set == b.model_fields_set and same(a.__dict__, b.__dict__)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b)


@settings(max_examples=400, deadline=None)
@given(step_dicts())
def test_fast_step_is_validation(raw: dict[str, Any]) -> None:
    fast = fast_step(raw)
    try:
        validated = Step.model_validate(raw)
    except ValidationError:
        assert fast is None, "a step validation refuses was built"
        return
    if fast is not None:
        assert same(fast, validated)
        assert fast == validated
        assert fast.model_dump_json(exclude_defaults=True) == validated.model_dump_json(
            exclude_defaults=True
        )


def test_fast_step_builds_typical_steps() -> None:
    args: dict[str, Any] = {
        "query": "x {{ b }}",
        "n": 3,
        "w": 0.5,
        "r": {"ref": "b.c"},
        "l": [{"ref": "b"}],
    }
    raw = {
        "id": "a",
        "tool": "search",
        "args": args,
        "after": ["b"],
        "for_each": {"var": "item", "over": {"ref": "b"}},
        "timeout_s": 5,
        "retry": 2,
        "cache": True,
    }
    step = fast_step(raw)
    assert step is not None and same(step, Step.model_validate(raw))
    assert isinstance(step.args["r"], Ref) and isinstance(step.for_each, FanOut)
    assert step.timeout_s == 5.0 and type(step.timeout_s) is float
    assert step.args is not args and step.args["l"] is not args["l"]  # copies, as validated


@pytest.mark.parametrize(
    "raw",
    [
        {"id": "a", "tool": "t", "args": {"x": float("inf")}},
        {"id": "a", "tool": "t", "args": {"x": {"ref": "a b"}}},
        {"id": "a", "tool": "t", "retry": "3"},
        {"id": "a", "tool": "t", "timeout_s": 0},
        {"id": "a", "tool": "t", "cache": 1},
        {"id": "a b", "tool": "t"},
        {"id": "a", "tool": "t", "bogus": 1},
        {"tool": "t"},
    ],
)
def test_fast_step_leaves_the_unusual_to_validation(raw: dict[str, Any]) -> None:
    assert fast_step(raw) is None


def test_constructed_objects_equal_validated_ones() -> None:
    assert same(construct_ref("a.b"), Ref(ref="a.b"))
    fields = {"id": "a", "tool": "t", "after": ("b",)}
    assert same(construct_step(fields), Step.model_validate(fields))
    with pytest.raises(TypeError):
        construct_step({"id": "a", "tool": "t", "bogus": 1})

"""A step's result is checked against its declared type the same way whatever path the
check takes (the executor's shortcut for plain values of the exact type, or pydantic):
lossless values pass (coerced), nan/inf and mismatches fail naming the type."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from engine import Engine, load_plan
from stdlib_tools import tool

_VALUE: list[Any] = [None]


@tool
def give() -> Any:
    """Returns the value the test put in `_VALUE`."""
    return _VALUE[0]


_PY = {"int": int, "float": float, "str": str, "bool": bool}
_ENGINE = Engine(tools=[give])


def _expected(declared: str, value: Any) -> tuple[bool, Any]:
    """(passes, checked value): pydantic's answer; a non-finite float is refused."""
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(_PY[declared])
        checked = adapter.dump_python(adapter.validate_python(value), mode="python")
    except ValidationError:
        return False, None
    if isinstance(checked, float) and not math.isfinite(checked):
        return False, None  # they would poison later steps (and `--json`)
    return True, checked


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(_PY)),
    st.one_of(
        st.integers(-(2**70), 2**70),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.sampled_from(["1", "2.5", "true", "nan"]),
    ),
)
def test_a_result_passes_or_fails_its_declared_type_as_pydantic_says(
    declared: str, value: Any
) -> None:
    _VALUE[0] = value
    result = _ENGINE.run_sync(load_plan(f"step a: {declared} = give()", tools=[give]))
    record = result.steps["a"]
    passes, checked = _expected(declared, value)
    if passes:
        assert record.status == "succeeded", record.error
        assert type(record.output) is type(checked) and record.output == checked
    else:
        assert record.status == "failed"
        assert f"result does not fit `{declared}`" in (record.error or "")


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["int", "float", "str", "bool", "list[int]", "dict[str, int]"]),
    st.sampled_from([None, [], [1], {}, {"a": 1}, 3, "x"]),
)
def test_none_and_containers_are_checked_against_every_declared_type(
    declared: str, value: Any
) -> None:
    # A type without the executor's shortcut (a list, a dict) checks None too: a tool
    # that returns None where it declared `list[int]` fails its step.
    _VALUE[0] = value
    result = _ENGINE.run_sync(load_plan(f"step a: {declared} = give()", tools=[give]))
    record = result.steps["a"]
    py = {"list[int]": list[int], "dict[str, int]": dict[str, int], **_PY}[declared]
    try:
        checked = TypeAdapter(py).validate_python(value)
    except ValidationError:
        assert record.status == "failed"
        assert f"result does not fit `{declared}`" in (record.error or "")
    else:
        assert record.status == "succeeded", record.error
        assert record.output == checked

"""The JSON loader's plain-step path makes exactly what the general path makes.

A plain canonical step (`id`, `tool`, `args`, `after`) is built as its Step in one
pass, with no source-map entry per field (dsl/json_loader.py `load_plain_steps`,
`_JsonPaths`). Over generated plans, canonical and not, valid and not, the plan, each
step's fields and their types, the notes, every located error (the loader's and the
checker's) and where any path inside a step is located must equal what the general
path (the plain path switched off) gives.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.checker import check
from dsl.errors import PlanError
from dsl.json_loader import _depth, _depth_general, _Loader, load_json, load_json_text
from stdlib_tools import ToolRegistry, tool


@tool
def mean(xs: list[float], scale: float = 1.0) -> float:
    """The mean of `xs`, times `scale`."""
    return sum(xs) / len(xs) * scale


# A list parameter: text coerced to it (`"[1, NaN]"`) may still need pydantic.
TOOLS = ToolRegistry([*ToolRegistry.standard().values(), mean])

plain_ids = st.sampled_from(["a", "b", "c", "d", "s_1", "_x"])
odd_ids = st.sampled_from(["step 1", "café", "1", "2", "true", "a-b", ""])
ids = st.one_of(plain_ids, plain_ids, plain_ids, odd_ids, st.integers(1, 4), st.none())
tools = st.one_of(
    st.sampled_from(["calculate", "search", "json_query", "llm", "mean"]),
    st.sampled_from(["calculate", "search", "agent", "calc", "web-search", "Search", "", 3]),
)
texts = st.sampled_from(
    ["1 + 1", "{{ a }}", "{{ b.x }}", "5", " 7 ", "2.5", "true", "$1", "#E2", "[1, 2]", "[NaN]"]
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10), st.floats(), texts)
values = st.recursive(
    st.one_of(scalars, st.builds(lambda r: {"ref": r}, st.one_of(plain_ids, st.just("a.x")))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["ref", "k"]), inner)
    ),
    max_leaves=4,
)
arg_names = st.sampled_from(["expression", "query", "k", "prompt", "data", "xs", "scale"])
coercions = st.sampled_from(  # text a tool's parameter types turn into values
    [
        ("search", {"query": "x", "k": "5"}),
        ("search", {"query": 5, "k": " 7 "}),
        ("mean", {"xs": "[1, 2]", "scale": "2"}),
        ("mean", {"xs": "[NaN]"}),  # coerced, and then pydantic's to refuse
        ("mean", {"xs": '[1, {"ref": "a"}]'}),  # coerced, then a reference in it
    ]
)
args = st.one_of(
    st.dictionaries(arg_names, texts, max_size=2),
    st.dictionaries(arg_names, values, max_size=2),
    st.none(),
    texts,
)
after = st.one_of(
    st.lists(plain_ids, max_size=2),
    st.lists(st.one_of(plain_ids, odd_ids, st.integers(1, 4), st.just(["a"])), max_size=2),
    st.none(),
    plain_ids,
)


@st.composite
def steps(draw: st.DrawFn) -> dict[str, Any]:
    step: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        step["id"] = draw(ids)
    step["tool"] = draw(tools)
    if draw(st.integers(0, 3)):
        step["args"] = draw(args)
    if not draw(st.integers(0, 3)):
        step["tool"], step["args"] = draw(coercions)
    if draw(st.integers(0, 3)):
        step["after"] = draw(after)
    if not draw(st.integers(0, 9)):  # now and then a field only the general path reads
        key = draw(st.sampled_from(["when", "on_error", "depends_on", "tier", "retry"]))
        step[key] = draw(st.sampled_from(["fail", "a", "{{ a }}", 1, None]))
    return step


@st.composite
def plans(draw: st.DrawFn) -> Any:
    body = draw(st.lists(steps(), min_size=1, max_size=5))
    if draw(st.integers(0, 2)):  # most plans give every step its own plain id
        names = draw(st.permutations(["a", "b", "c", "d", "e"]))
        for step, name in zip(body, names, strict=False):
            step["id"] = name
    if draw(st.integers(0, 9)) == 0:
        body.insert(draw(st.integers(0, len(body))), draw(st.sampled_from(["do it", 3])))
    key = "steps" if draw(st.integers(0, 9)) else "plan"
    doc: dict[str, Any] = {key: body}
    if draw(st.booleans()):
        doc["outputs"] = [draw(plain_ids)]
    return doc


def _diagnostics(err: PlanError) -> list[tuple[Any, ...]]:
    return [(d.message, str(d.location), d.hint, d.severity, d.code) for d in err.diagnostics]


def _load(doc: Any, plain: bool, **kwargs: Any) -> Any:
    saved = _Loader.plain_tools
    if not plain:
        _Loader.plain_tools = lambda self: None  # type: ignore[method-assign]
    try:
        plan, smap = load_json(doc, "p.json", TOOLS, **kwargs)
    except PlanError as err:
        return ("error", _diagnostics(err))
    finally:
        _Loader.plain_tools = saved  # type: ignore[method-assign]
    probes: list[tuple[Any, ...]] = []
    for i, step in enumerate(plan.steps):
        probes += [("steps", i), ("steps", i, "id"), ("steps", i, "tool"), ("steps", i, "x")]
        probes += [("steps", i, "after", j) for j in range(len(step.after) + 1)]
        probes += [("steps", i, "after"), ("steps", i, "args"), ("steps", i, "id", 0)]
        probes += [("steps", i, "args", name, 0) for name in [*step.args, "zz"]]
        probes += [("steps", i, "args", name) for name in [*step.args, "zz"]]
    located = [str(smap.locate(p)) for p in probes]
    found = [(p in smap.json_paths, smap.json_paths.get(p)) for p in probes]
    fields = [
        (step.model_fields_set, {k: (v, type(v)) for k, v in step.__dict__.items()})
        for step in plan.steps
    ]
    try:
        checked: Any = [str(w) for w in check(plan, TOOLS, smap).warnings]
    except PlanError as err:
        checked = _diagnostics(err)
    notes = [(n.message, str(n.location)) for n in smap.notes]
    return ("ok", plan, fields, located, found, checked, notes)


@settings(max_examples=400, deadline=None)
@given(plans())
def test_plain_steps_load_as_the_general_path_does(doc: Any) -> None:
    assert _load(doc, plain=True) == _load(doc, plain=False)


@settings(max_examples=100, deadline=None)
@given(plans())
def test_plain_steps_with_a_tool_map_load_as_the_general_path_does(doc: Any) -> None:
    tool_map = {"calc": "calculate", "search": "calculate"}
    assert _load(doc, True, tool_map=tool_map) == _load(doc, False, tool_map=tool_map)


def test_a_canonical_plan_takes_the_plain_path_and_keeps_its_locations() -> None:
    doc = {
        "steps": [
            {"id": "a", "tool": "search", "args": {"query": "x", "k": "5"}},
            {"id": "b", "tool": "calculate", "args": {"expression": ["1"]}, "after": ["a"]},
        ]
    }
    plan, smap = load_json(doc, "p.json", TOOLS)
    assert plan.steps[0].args == {"query": "x", "k": 5}  # coerced, with its note
    assert [str(n.location) for n in smap.notes] == ["p.json:steps[0].args.k"]
    assert smap.json_paths.plain == list(plan.steps)  # type: ignore[attr-defined]
    assert not dict(smap.json_paths)  # no entry per field
    with pytest.raises(PlanError) as err:
        check(plan, TOOLS, smap)
    errors = [d for d in err.value.diagnostics if d.severity == "error"]
    assert [str(d.location) for d in errors] == ["p.json:steps[1].args.expression"]
    restored = pickle.loads(pickle.dumps(smap))  # a run may ship the plan to workers
    assert restored.locate(("steps", 1, "after", 0)) == smap.locate(("steps", 1, "after", 0))


def test_text_takes_the_plain_path_too() -> None:
    text = '{"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1"}}]}'
    plan, smap = load_json_text(text, "p.json", TOOLS)
    assert plan.steps[0].args == {"expression": "1"} and smap.json_paths.plain  # type: ignore[attr-defined]


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=20,
)


@given(json_values, st.integers(0, 70))
def test_depth_equals_the_general_walk(value: Any, nesting: int) -> None:
    for _ in range(nesting):
        value = [value] if nesting % 2 else {"k": value}
    assert _depth(value) == _depth_general(value)
    huge = [{"a": [value, 2**13_001]}]
    assert _depth(huge) == _depth_general(huge)

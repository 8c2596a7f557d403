"""The one-regex reading of `{{ name }}` templates (dsl.templates.template_names) finds
the names jinja2's own analysis finds, so a step's dependencies do not depend on which
path read its text: `{{ true }}` is a constant, not a step called `true`."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.checker import check
from dsl.json_loader import load_json_text
from dsl.templates import TemplateProblem, _parsed_names, template_names
from stdlib_tools import ToolRegistry

words = st.sampled_from(
    ["a", "b1", "_x", "true", "false", "none", "True", "False", "None", "loop", "self", "x_y"]
)
fields = st.lists(st.sampled_from(["b", "c", "true", "items"]), max_size=2)
spaces = st.sampled_from(["", " ", "  ", "\n", "\t"])
trims = st.sampled_from(["", "-"])


@st.composite
def substitutions(draw: st.DrawFn) -> str:
    name = draw(words) + "".join(f".{f}" for f in draw(fields))
    return f"{{{{{draw(trims)}{draw(spaces)}{name}{draw(spaces)}{draw(trims)}}}}}"


texts = st.lists(
    st.one_of(substitutions(), st.sampled_from(["", "x ", " y", "{", "}", "{ {", "é"])),
    min_size=1,
    max_size=5,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_fast_names_equal_jinja_names(text: str) -> None:
    try:
        expected = _parsed_names(text)
    except TemplateProblem:
        return  # e.g. `{{ {` pieces that jinja rejects: the fast path never takes those
    assert template_names(text) == expected


def test_when_true_is_a_constant_not_an_unknown_step() -> None:
    tools = ToolRegistry.standard()
    doc = {
        "name": "p",
        "steps": [
            {"id": "a", "tool": "calculate", "args": {"expression": "1"}, "when": "{{ true }}"},
            {"id": "b", "tool": "calculate", "args": {"expression": "{{ a }}{{ none }}"}},
        ],
    }
    plan, smap = load_json_text(json.dumps(doc), "p.json", tools)
    checked = check(plan, tools, smap)
    assert checked.deps == {"a": (), "b": ("a",)} or dict(checked.deps) == {"a": [], "b": ["a"]}


def test_a_step_named_like_a_jinja2_global_is_a_dependency(registry: ToolRegistry) -> None:
    """`{{ range|int }}` reads the step `range`, not jinja2's builtin; a global that names
    nothing of the plan (`range(3)`) is no unknown name."""
    from dsl.loader import parse_plan_text

    text = (
        "plan g\n"
        'step range: float = calculate(expression: "2 + 3")\n'
        'step b: float = calculate(expression: "{{ range|int }} * 2")\n'
        "output b\n"
    )
    plan, smap = parse_plan_text(text, "g.plan")
    checked = check(plan, registry, smap, source=text)
    assert list(checked.deps["b"]) == ["range"]
    alone = 'plan h\nstep c: str = llm(prompt: "{{ range(3)|list }} {{ dict(a=1) }}")\noutput c\n'
    plan, smap = parse_plan_text(alone, "h.plan")
    assert not check(plan, registry, smap, source=alone).deps["c"]

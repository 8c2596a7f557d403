"""The checker: names, dependencies, types, cycles, all errors in one pass."""

from __future__ import annotations

import pytest

from dsl import PlanError, check, parse_text
from dsl.checker import CheckedPlan
from stdlib_tools import ToolRegistry


def checked(text: str, registry: ToolRegistry) -> CheckedPlan:
    plan, smap = parse_text(text, "t.plan")
    return check(plan, registry, smap, source=text)


def problems(text: str, registry: ToolRegistry) -> list[tuple[str, str, str | None]]:
    with pytest.raises(PlanError) as info:
        checked(text, registry)
    return [(str(d.location), d.message, d.hint) for d in info.value.errors]


def test_dependencies_are_inferred(registry: ToolRegistry) -> None:
    """Bare references, template names and `after` all become dependencies."""
    result = checked(
        'input q: str = "x"\n'
        "step a: str = search(query: q)\n"
        'step b: float = calculate(expression: "1 + 1")\n'
        'step c: str = search(query: "{{ a }} {{ q }}") after b\n'
        "output c",
        registry,
    )
    assert result.deps == {"a": (), "b": (), "c": ("a", "b")}


def test_unknown_names_suggest_the_closest(registry: ToolRegistry) -> None:
    """Unknown tools, parameters and names come with a did-you-mean."""
    found = problems(
        'input salary: float = 1\nstep a = serch(query: "x")\n'
        'step b = calculate(expresion: "1")\nstep c = calculate(expression: "{{ salry }}")',
        registry,
    )
    assert ("t.plan:2:10", "unknown tool `serch`", "did you mean `search`?") in found
    assert any(m == "tool `calculate` has no parameter `expresion`" for _, m, _ in found)
    assert ("t.plan:4:32", "unknown name `salry`", "did you mean `salary`?") in found


def test_all_errors_in_one_pass_sorted(registry: ToolRegistry) -> None:
    """Every error is reported at once, in source order."""
    found = problems(
        'step a = search(query: 1)\nstep b = nope()\nstep c = calculate(expression: "1") after zz',
        registry,
    )
    lines = [int(loc.split(":")[1]) for loc, _, _ in found]
    assert lines == sorted(lines) and set(lines) == {1, 2, 3}


def test_cycle_is_reported_with_its_path(registry: ToolRegistry) -> None:
    """A dependency cycle names every step on it."""
    found = problems(
        'step a: str = search(query: "{{ c }}")\n'
        'step b: str = search(query: "{{ a }}")\n'
        'step c: str = search(query: "{{ b }}")',
        registry,
    )
    assert found == [
        ("t.plan:1:6", "dependency cycle: a -> b -> c -> a", found[0][2]),
    ]


def test_each_cycle_is_reported_once_at_its_first_step(registry: ToolRegistry) -> None:
    """Two separate cycles (one through `after`): one error each, at the earliest step
    on it, its path in execution order; steps that only wait on a cycle are not blamed."""
    found = problems(
        'step x = calculate(expression: "1")\n'
        'step p: str = search(query: "{{ q }}")\n'
        'step q: str = search(query: "{{ p }}")\n'
        'step r = calculate(expression: "1") after t\n'
        'step s = calculate(expression: "1") after r\n'
        'step t = calculate(expression: "1") after s\n'
        'step u = calculate(expression: "1") after t, x\n',
        registry,
    )
    assert [(loc, message) for loc, message, _ in found] == [
        ("t.plan:2:6", "dependency cycle: p -> q -> p"),
        ("t.plan:4:6", "dependency cycle: r -> s -> t -> r"),
    ]


def test_self_reference(registry: ToolRegistry) -> None:
    """A step that reads its own result is an error."""
    found = problems('step a: str = search(query: "{{ a }}")', registry)
    assert found[0][1] == "step `a` refers to its own result"


def test_duplicate_ids(registry: ToolRegistry) -> None:
    """Steps and inputs share one namespace; a repeat is an error."""
    found = problems(
        'input a: str = "x"\nstep a: str = search(query: "x")\nstep b = calculate(expression: "1")\n'
        'step b = calculate(expression: "2")',
        registry,
    )
    assert [m.split(" (")[0] for _, m, _ in found] == [
        "`a` is already defined",
        "`b` is already defined",
    ]


def test_type_mismatches(registry: ToolRegistry) -> None:
    """Argument, default and declared result types are checked."""
    found = problems(
        'input n: int = "three"\n'
        "step a: str = search(query: n)\n"
        'step b: int = calculate(expression: "1")\n'
        'step c: str = search(query: "x", k: 2.5)',
        registry,
    )
    messages = [m for _, m, _ in found]
    assert "input `n` is `int`, but the value is `str`" in messages
    assert "`query` of `search` is `str`, but the value is `int`" in messages
    assert "`calculate` returns `float`, but step `b` declares `int`" in messages
    assert "`k` of `search` is `int`, but the value is `float`" in messages


def test_int_widens_to_float_and_optional_does_not_narrow(registry: ToolRegistry) -> None:
    """`int` fits `float`; `str?` does not fit `str`."""
    checked('step a: str = search(query: "x", k: 2)', registry)
    found = problems("input q: str?\nstep a: str = search(query: q)", registry)
    assert "the value is `str?`" in found[0][1]


def test_record_fields(registry: ToolRegistry) -> None:
    """References into records are checked field by field."""
    base = 'type V { city: str, n: float }\nstep v: V = llm(prompt: "x")\n'
    checked(base + "step s: str = search(query: v.city)\noutput s", registry)
    found = problems(base + "step s: str = search(query: v.town)", registry)
    assert found[0][1] == "record `V` has no field `town`"
    found = problems(base + "step s: str = search(query: v.n)", registry)
    assert "the value is `float`" in found[0][1]


def test_unknown_record_type(registry: ToolRegistry) -> None:
    """A type name that is not declared is an error."""
    found = problems('step v: Verdict = llm(prompt: "x")', registry)
    assert found[0][1] == "unknown type `Verdict`"


def test_fan_out_types(registry: ToolRegistry) -> None:
    """`for x in xs` needs a list; the result is a list of the tool's results."""
    result = checked(
        'input qs: list[str] = ["a"]\nstep r = for q in qs: search(query: q)\noutput r', registry
    )
    assert str(result.result_types["r"]) == "list[str]"
    found = problems('input q: str = "a"\nstep r = for x in q: search(query: x)', registry)
    assert found[0][1] == "`for` needs a list, but `q` is `str`"
    found = problems(
        'input qs: list[str] = ["a"]\nstep r: str = for q in qs: search(query: q)', registry
    )
    assert "a `for` step produces a list" in found[0][1]


def test_unused_result_is_a_warning(registry: ToolRegistry) -> None:
    """A step nothing uses (with outputs declared) is a warning, not an error."""
    result = checked(
        'step a: str = search(query: "x")\nstep b: str = search(query: "y")\noutput a', registry
    )
    assert [(w.severity, w.message) for w in result.warnings] == [
        ("warning", "the result of step `b` is never used")
    ]


def test_outputs_default_to_sinks(registry: ToolRegistry) -> None:
    """Without `output`, the steps nothing depends on are the outputs."""
    result = checked(
        'step a: str = search(query: "x")\nstep b: str = search(query: "{{ a }}")\n'
        'step c = calculate(expression: "1")',
        registry,
    )
    assert result.outputs == ("b", "c")


def test_fallback_rules(registry: ToolRegistry) -> None:
    """A fallback must exist, fit the type, and not be used directly."""
    ok = checked(
        'step a: str = search(query: "x") on_error b\nstep b: str = search(query: "y")\noutput a',
        registry,
    )
    assert ok.fallbacks == {"b"}
    found = problems(
        'step a: str = search(query: "x") on_error b\nstep b: float = calculate(expression: "1")',
        registry,
    )
    assert "fallback `b` gives `float`" in found[0][1]
    found = problems(
        'step a: str = search(query: "x") on_error b\nstep b: str = search(query: "y")\n'
        'step c: str = search(query: "{{ b }}")',
        registry,
    )
    assert "cannot use it directly" in found[0][1]


def test_tiers(registry: ToolRegistry) -> None:
    """A step's tier must be declared (or built in); tier on a non-model tool warns."""
    found = problems('step a = llm(tier: fastest, prompt: "x")', registry)
    assert found[0][1:] == ("unknown tier `fastest`", "did you mean `fast`?")
    result = checked('step a = calculate(tier: fast, expression: "1")', registry)
    assert "calls no model" in result.warnings[0].message


def test_template_errors_and_sandbox_names(registry: ToolRegistry) -> None:
    """Malformed templates are located; jinja globals are not dependencies."""
    found = problems('step a = search(query: "{{ x")', registry)
    assert found[0][1].startswith("template error")
    result = checked(
        'step a = search(query: "{% for i in range(3) %}{{ i }}{% endfor %}")', registry
    )
    assert result.deps == {"a": ()}


def test_reserved_names(registry: ToolRegistry) -> None:
    """`true`, `false` and `null` cannot name inputs or steps (JSON plans included)."""
    from dsl.json_loader import load_json

    plan, smap = load_json(
        {"steps": [{"id": "null", "tool": "calculate", "args": {"expression": "1"}}]}
    )
    with pytest.raises(PlanError, match="reserved"):
        check(plan, registry, smap)

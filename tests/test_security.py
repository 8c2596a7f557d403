"""Plans are untrusted: the template sandbox, the calculator, the tool allowlist."""

from __future__ import annotations

import pytest

from dsl.templates import TemplateProblem, evaluate, render
from engine import Engine, load_plan
from engine.agent.planner import allowed_tools
from stdlib_tools import ToolRegistry

ATTACKS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('id') }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ config.__class__ }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "{{ 'x' * 100000000 }}",
    "{{ 2 ** 99999999 }}",
]


@pytest.mark.parametrize("template", ATTACKS)
def test_template_attacks_are_refused(template: str) -> None:
    """Attribute walks, huge ranges and huge repetitions fail with a clear error."""
    with pytest.raises(TemplateProblem) as info:
        render(template, {"config": {}})
    assert "Traceback" not in str(info.value)


def test_attack_in_a_plan_fails_only_that_step() -> None:
    """A malicious template fails its step with a sandbox message; nothing leaks."""
    plan = load_plan(
        "step a: str = search(query: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\")\n"
        'step b: float = calculate(expression: "1 + 1")\noutput a, b'
    )
    result = Engine().run_sync(plan)
    record = result.steps["a"]
    assert record.status == "failed" and "sandbox" in record.error
    assert "subprocess" not in result.dumps() and result.steps["b"].output == 2.0


def test_conditions_are_sandboxed_too() -> None:
    """`when` and `check` expressions run in the same sandbox."""
    with pytest.raises(TemplateProblem):
        evaluate("().__class__.__bases__[0].__subclasses__()", {})


def test_model_written_plans_get_only_safe_tools(registry: ToolRegistry) -> None:
    """By default an LLM plan cannot reach the network or user tools."""
    tools = allowed_tools(registry)
    assert "http_get" not in tools and "calculate" in tools
    assert "http_get" in allowed_tools(registry, ["http_get"])

"""Plans are untrusted: the template sandbox, the calculator, the tool allowlist."""

from __future__ import annotations

from pathlib import Path

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


# --- the render budget (issue 11, items 1, 2 and 4) ----------------------------------

HUGE_VALUES = [
    "{{ ((9**9999)**9999) > 0 }}",
    "{{ ('%01500000000d' % 1)|length }}",
    "{{ '%*d'|format(1500000000, 1)|length }}",
    "{{ '{:>{w}}'.format(1, w=1500000000)|length }}",
    "{{ 'x'|center(1500000000)|length }}",
    "{{ 'x'.ljust(1500000000)|length }}",
    "{{ 'x'|indent(1500000000)|length }}",
    "{% set a = 'x' * 5000000 %}{{ (a ~ a ~ a)|length }}",
    "{% set a = 'x' * 5000000 %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a|length }}",
    "{{ ('x' * 1000000)|replace('x', 'xxxxxxxxxxxxxxxxxxxx')|length }}",
    "{{ (['x' * 1000000] * 100)|join|length }}",
    "{{ range(10)|batch(1000000000, 0)|list|length }}",
    "{{ lipsum(100000000)|length }}",
    "{{ ('x ' * 500000)|wordwrap(1)|length }}",
]


@pytest.mark.parametrize("template", HUGE_VALUES)
def test_templates_cannot_build_huge_values(template: str) -> None:
    """Every intermediate value is bounded before it is built: a clear error, at once."""
    import time

    started = time.perf_counter()
    with pytest.raises(TemplateProblem, match="sandbox"):
        render(template, {})
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "{% for i in range(100000) %}{{ xs|sort|length }}{% endfor %}",
    ],
)
def test_templates_have_a_work_budget(template: str) -> None:
    """Nested loops, exponential macros and filters in big loops stop at the budget."""
    with pytest.raises(TemplateProblem, match=r"steps|characters or items"):
        render(template, {"xs": list(range(100_000))})


def test_a_render_stops_at_its_deadline() -> None:
    """A render given a deadline stops by itself when it passes."""
    import time

    slow = "{% for i in range(900) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
    started = time.perf_counter()
    with pytest.raises(TemplateProblem, match="deadline"):
        render(slow, {}, deadline=time.monotonic() + 0.05)
    assert time.perf_counter() - started < 0.5


def test_long_filter_chains_are_a_located_error_fast() -> None:
    """`x|upper|upper|...` checks in milliseconds; past the nesting limit it is an error,
    never a RecursionError."""
    import time

    from dsl.templates import expression_names, template_names

    started = time.perf_counter()
    assert template_names("{{ x" + "|upper" * 90 + " }}") == {"x"}
    for count in (400, 5000):
        with pytest.raises(TemplateProblem, match="nests"):
            template_names("{{ x" + "|upper" * count + " }}")
        with pytest.raises(TemplateProblem, match="nests"):
            expression_names("x" + "|upper" * count)
    assert time.perf_counter() - started < 2


def test_checking_never_evaluates_a_template() -> None:
    """The checker reads names only: no constant folding runs a filter at check time."""
    from dsl.templates import template_names

    assert template_names("{{ 'x'|center(1500000000) ~ y }}") == {"y"}


def test_ordinary_templates_still_render() -> None:
    """The budget leaves normal templates alone."""
    text = (
        "{{ name }} {% for x in xs %}{{ loop.index }}{{ x ~ '!' }}{% endfor %} "
        "{{ 2 ** 10 }} {{ 'ab' * 2 }} {{ '%05d' % 3 }} {{ xs|join(',') }} {{ 'a'.center(5) }}"
    )
    assert render(text, {"name": "w", "xs": [1, 2]}) == "w 11!22! 1024 abab 00003 1,2   a  "
    assert evaluate("xs|length > 1 and name ~ '!' == 'w!'", {"xs": [1, 2], "name": "w"})


def test_rendering_does_not_block_the_event_loop() -> None:
    """A slow template renders in a worker: the loop keeps running, and the step's
    timeout ends the wait."""
    import asyncio
    import functools

    from dsl.templates import render_in_worker

    slow = "{% for i in range(3000) %}{% for j in range(300) %}{% endfor %}{% endfor %}"

    async def main() -> tuple[int, BaseException | None]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        error: BaseException | None = None
        try:
            await render_in_worker(functools.partial(render, slow, {}), 0.3)
        except (TimeoutError, TemplateProblem) as err:
            error = err
        task.cancel()
        return ticks, error

    ticks, error = asyncio.run(main())
    assert error is not None and ticks >= 3  # a blocked loop would tick once


def test_a_hostile_template_fails_its_step_within_the_timeout() -> None:
    """The issue's plan: the step fails fast with a clear error, the run goes on."""
    import time

    plan = load_plan(
        'step r: json = json_query(data: "{{ ((9**9999)**9999) > 0 }}", expression: "@")\n'
        "    timeout 2s\n"
        'step s: json = json_query(data: "{% for i in range(900) %}{% for j in range(1000) %}'
        '{% endfor %}{% endfor %}", expression: "@")\n'
        "    timeout 50ms\n"
        'step b: float = calculate(expression: "1 + 1")\noutput r, s, b'
    )
    started = time.perf_counter()
    result = Engine().run_sync(plan)
    assert time.perf_counter() - started < 5
    assert result.steps["r"].status == "failed" and "sandbox" in (result.steps["r"].error or "")
    assert result.steps["s"].status == "failed"
    assert result.steps["b"].output == 2.0


# --- parser memory (issue 11, item 5) ------------------------------------------------

_PEAK_RSS = """
import resource, sys
from dsl import PlanError
from dsl.parser import parse_text
text = open(sys.argv[1], encoding="utf-8").read()
try:
    plan, _ = parse_text(text, "big.plan")
    print("ok", len(plan.steps))
except PlanError as err:
    print("error", err.diagnostics[0].message)
# VmHWM is this process's own peak; ru_maxrss also counts the parent's at fork time.
try:
    status = open("/proc/self/status").read()
    print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
except (OSError, IndexError):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.parametrize(
    ("literals", "size", "expected"),
    [(4, 1_000_000, "ok 4"), (1, 20_000_000, "error string of 20,000,000 characters")],
)
def test_big_string_literals_parse_in_bounded_memory(
    tmp_path: Path, literals: int, size: int, expected: str
) -> None:
    """Strings lex without a regex stack per character (a 5 MB literal needed 1.7 GB);
    a literal over the limit is a located error, not a memory blow-up."""
    import subprocess
    import sys

    plan = tmp_path / "big.plan"
    plan.write_text(
        "".join(f'step a{i}: str = llm(prompt: "{"x" * size}")\n' for i in range(literals))
    )
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(plan)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.splitlines()
    assert out[0].startswith(expected)
    assert int(out[1]) < 200, f"peak RSS {out[1]} MB"  # was 340 MB per 1 MB literal


# --- inputs (issue 11, item 13) ------------------------------------------------------


@pytest.mark.parametrize("raw", ["[NaN, Infinity]", "NaN", "-Infinity", '{"a": [1, NaN]}'])
def test_nan_and_infinity_inputs_are_refused(registry: ToolRegistry, raw: str) -> None:
    """`--input j=[NaN, Infinity]` is not JSON: a clear error naming the input, not
    floats that later print as strings."""
    from dsl import check, parse_text
    from dsl.errors import InputError
    from engine.cli.common import parse_inputs

    plan, smap = parse_text(
        'input j: json\ninput f: float = 1\nstep a: json = json_query(data: j, expression: "@")'
    )
    checked = check(plan, registry, smap)
    with pytest.raises(InputError) as info:
        parse_inputs([f"j={raw}"], checked)
    assert "not a JSON number" in str(info.value.diagnostics[0].message)
    with pytest.raises(InputError):
        parse_inputs(["f=NaN"], checked)
    assert parse_inputs(["j=[1, 2.5, null]"], checked) == {"j": [1, 2.5, None]}


def test_only_computing_templates_leave_the_event_loop() -> None:
    """Plain substitutions render inline (cheap); anything that computes goes to a worker."""
    from dsl.templates import needs_worker

    assert not needs_worker({"q": "{{ topic }} in {{ city.name }}", "n": 3, "r": ["plain"]})
    assert needs_worker({"q": ["x", {"deep": "{{ xs|join(',') }}"}]})
    assert needs_worker("{% for x in xs %}{{ x }}{% endfor %}")


def test_dense_literal_data_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A plan of a million inline numbers (each ~1 KB while parsing; an 8 MiB one needed
    3.6 GB) stops at the literal-value cap with a located error."""
    import subprocess
    import sys

    plan = tmp_path / "big.plan"
    plan.write_text("input a: list[int] = [" + "1, " * 1_000_000 + "1]\n")
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(plan)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.splitlines()
    assert out[0] == "error plan holds more than 250,000 literal values"
    assert int(out[1]) < 300, f"peak RSS {out[1]} MB"

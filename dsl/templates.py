"""jinja2 templates in a sandbox: finding the names a template uses, and rendering it.

Plans may be written by an LLM, so every template and condition renders in jinja2's
ImmutableSandboxedEnvironment: attribute walks such as `''.__class__.__mro__` are
refused, containers cannot be mutated, and `*`/`**` are bounded so a template cannot
build a gigabyte string.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_RENDERED_CHARS = 10_000_000
MAX_POWER_EXPONENT = 10_000


class TemplateProblem(Exception):
    """A template is malformed or failed to render; `line` is 1-based within it."""

    def __init__(self, message: str, line: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.line = line
        self.hint = hint


class _PlanSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
            return left**right
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if (
            isinstance(sequence, str | list | tuple)
            and isinstance(count, int)
            and len(sequence) * count > MAX_RENDERED_CHARS
        ):
            raise SecurityError("repetition would exceed the size limit")
        return left * right


@functools.cache
def environment() -> jinja2.Environment:
    env = _PlanSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    return env


_SIMPLE_VAR = re.compile(
    r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}"
)


def _parse(text: str) -> nodes.Template:
    try:
        return environment().parse(text)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"template error: {err.message}", err.lineno) from None
    except RecursionError:
        raise TemplateProblem("template nests too deeply") from None


@functools.lru_cache(maxsize=65536)
def template_names(text: str) -> frozenset[str]:
    """The top-level names a template reads (its dependencies); raise TemplateProblem."""
    if "{%" not in text and "{#" not in text:
        remainder = _SIMPLE_VAR.sub("", text)
        if "{{" not in remainder:
            return frozenset(m.group(1) for m in _SIMPLE_VAR.finditer(text))
    ast = _parse(text)
    return frozenset(meta.find_undeclared_variables(ast)) - set(environment().globals)


@functools.lru_cache(maxsize=16384)
def expression_names(text: str) -> frozenset[str]:
    """The names a condition expression (`when`, `check`) reads; raise TemplateProblem."""
    return template_names("{{ " + unwrap_expression(text) + " }}")


def unwrap_expression(text: str) -> str:
    """Accept `when "{{ x > 1 }}"` as well as `when "x > 1"`."""
    stripped = text.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        return stripped[2:-2].strip()
    return stripped


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> jinja2.Template:
    try:
        return environment().from_string(text)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"template error: {err.message}", err.lineno) from None


def render(text: str, values: Mapping[str, Any]) -> str:
    """Render a template with `values`; raise TemplateProblem with a clear reason."""
    try:
        out = _compiled(text).render(values)
    except SecurityError as err:
        raise TemplateProblem(
            f"template refused by the sandbox: {err}",
            hint="templates may read values, not Python internals",
        ) from None
    except jinja2.UndefinedError as err:
        raise TemplateProblem(f"template error: {err.message}") from None
    except jinja2.TemplateError as err:
        raise TemplateProblem(f"template error: {err}") from None
    except (ArithmeticError, TypeError, ValueError, RecursionError) as err:
        raise TemplateProblem(f"template error: {err}") from None
    if len(out) > MAX_RENDERED_CHARS:
        raise TemplateProblem(f"template rendered {len(out)} characters; the limit is 10M")
    return out


def evaluate(expression: str, values: Mapping[str, Any]) -> Any:
    """Evaluate a condition expression (`when`, `check`) in the sandbox."""
    try:
        compiled = environment().compile_expression(unwrap_expression(expression))
        return compiled(**values)
    except SecurityError as err:
        raise TemplateProblem(f"expression refused by the sandbox: {err}") from None
    except jinja2.TemplateError as err:
        raise TemplateProblem(f"expression error: {err}") from None
    except (ArithmeticError, TypeError, ValueError, RecursionError) as err:
        raise TemplateProblem(f"expression error: {err}") from None

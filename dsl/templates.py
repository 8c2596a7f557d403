"""jinja2 templates in a sandbox: finding the names a template uses, and rendering it.

Plans may be written by an LLM, so every template and condition renders in
`PlanSandbox` (dsl/template_sandbox.py): attribute walks such as `''.__class__.__mro__`
are refused, containers cannot be mutated, every intermediate value is size-checked and
each render has a step, work and time budget. `render_in_worker` runs rendering off the
event loop under the step's deadline.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator
from jinja2.environment import TemplateExpression
from jinja2.parser import Parser
from jinja2.sandbox import SecurityError

from .errors import PlanfileError
from .ir import is_template
from .template_sandbox import (
    MAX_VALUE_CHARS,
    PlanSandbox,
    TemplateLimit,
    budget_scope,
    prepare,
    set_thread_deadline,
)
from .values import walk

MAX_RENDERED_CHARS = MAX_VALUE_CHARS
T = TypeVar("T")


class TemplateProblem(PlanfileError):
    """A template is malformed or failed to render; `line` is 1-based within it."""

    def __init__(self, message: str, line: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.line = line
        self.hint = hint


@functools.cache
def environment() -> jinja2.Environment:
    return PlanSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


_SIMPLE_VAR = re.compile(
    r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}"
)
_LIMIT_HINT = "templates may read and shape values; they cannot build huge ones or loop for long"


def _limit_problem(err: TemplateLimit) -> TemplateProblem:
    return TemplateProblem(f"template refused by the sandbox: {err}", hint=_LIMIT_HINT)


def _parse(text: str) -> nodes.Template:
    try:
        return prepare(environment().parse(text))
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"template error: {err.message}", err.lineno) from None
    except TemplateLimit as err:
        raise _limit_problem(err) from None
    except ValueError as err:  # e.g. an integer literal over Python's 4,300 digits
        raise TemplateProblem(f"template error: {err}") from None
    except RecursionError:
        raise TemplateProblem("template nests too deeply") from None


class _NameFinder(meta.TrackingCodeGenerator):
    """jinja2's name tracker without its constant folder (which evaluates filters)."""

    def __init__(self, environment: jinja2.Environment) -> None:
        CodeGenerator.__init__(
            self, environment, "<introspection>", "<introspection>", optimized=False
        )
        self.undeclared_identifiers: set[str] = set()

    def enter_frame(self, frame: Any) -> None:
        # jinja2's tracker leaves out its globals; a step or input named `range` is what
        # the template reads, so every resolved name is kept (see `is_global`).
        CodeGenerator.enter_frame(self, frame)
        for action, param in frame.symbols.loads.values():
            if action == "resolve":
                self.undeclared_identifiers.add(param)


def _simple_names(text: str) -> list[str] | None:
    """The names of a template made only of `{{ name }}` / `{{ a.b }}` substitutions (one
    regex pass: `split` yields text, name, fields, text, ...), or None for any other."""
    if "{%" in text or "{#" in text:
        return None
    parts = _SIMPLE_VAR.split(text)
    if "{{" in "".join(parts[::3]):
        return None
    return parts[1::3]


@functools.lru_cache(maxsize=65536)
def _only_names(text: str) -> bool:
    return _simple_names(text) is not None


def template_names(text: str) -> frozenset[str]:
    """The top-level names a template reads (its dependencies); raise TemplateProblem.

    `{{ name }}` substitutions are read with one regex pass, uncached (a cache entry cost
    as much as the pass, and a plan's texts are mostly distinct); anything else is parsed
    by jinja2, once per text."""
    simple = _simple_names(text)
    if simple is not None and _CONSTANTS.isdisjoint(simple):
        return frozenset(simple)
    return _parsed_names(text)


# What `{{ word }}` may hold that jinja2 never reads from the values (its constants, and
# `self`, the template): such a text is parsed, so no step `true` becomes a dependency. A
# global (`{{ range }}`) stays a name here: a value of that name is what jinja2 renders.
_CONSTANTS = frozenset({"true", "false", "none", "True", "False", "None", "self"})


@functools.lru_cache(maxsize=16384)
def _parsed_names(text: str) -> frozenset[str]:
    ast = _parse(text)
    finder = _NameFinder(environment())
    try:
        finder.visit(ast)
    except jinja2.TemplateSyntaxError as err:  # e.g. an unknown filter or test
        raise TemplateProblem(f"template error: {err.message}", err.lineno) from None
    except RecursionError:
        raise TemplateProblem("template nests too deeply") from None
    # jinja2's globals (`range`, `dict`, ...) stay in: a step or input of that name is
    # what the template renders, so it is a dependency; the checker drops a global that
    # names nothing of the plan's (`is_global`).
    return frozenset(finder.undeclared_identifiers)


def is_global(name: str) -> bool:
    """Whether jinja2 provides `name` when the plan has nothing of that name."""
    return name in environment().globals


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


def _compile(ast: nodes.Template) -> jinja2.Template:
    try:
        return environment().from_string(ast)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"template error: {err.message}", err.lineno) from None
    except RecursionError:
        raise TemplateProblem("template nests too deeply") from None


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> jinja2.Template:
    return _compile(_parse(text))


@functools.lru_cache(maxsize=4096)
def _compiled_expression(text: str) -> TemplateExpression:
    source = unwrap_expression(text)
    env = environment()
    try:
        parser = Parser(env, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise jinja2.TemplateSyntaxError(
                "unexpected text after the expression", parser.stream.current.lineno
            )
        body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
        ast = prepare(nodes.Template(body, lineno=1))
        ast.set_environment(env)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"expression error: {err.message}", err.lineno) from None
    except TemplateLimit as err:
        raise _limit_problem(err) from None
    except ValueError as err:
        raise TemplateProblem(f"expression error: {err}") from None
    except RecursionError:
        raise TemplateProblem("expression nests too deeply") from None
    return TemplateExpression(_compile(ast), undefined_to_none=True)


def _run(what: str, work: Callable[[], T], deadline: float | None) -> T:
    """Run one render under a fresh budget; map every failure to TemplateProblem."""
    try:
        with budget_scope(deadline):
            return work()
    except TemplateProblem:
        raise
    except TemplateLimit as err:
        raise _limit_problem(err) from None
    except SecurityError as err:
        raise TemplateProblem(
            f"{what} refused by the sandbox: {err}",
            hint="templates may read values, not Python internals",
        ) from None
    except jinja2.UndefinedError as err:
        raise TemplateProblem(f"{what} error: {err.message}") from None
    except jinja2.TemplateError as err:
        raise TemplateProblem(f"{what} error: {err}") from None
    except MemoryError:
        raise TemplateProblem(f"{what} ran out of memory", hint=_LIMIT_HINT) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as err:
        raise TemplateProblem(f"{what} error: {err}") from None


def render(text: str, values: Mapping[str, Any], *, deadline: float | None = None) -> str:
    """Render a template with `values` under the sandbox budget; raise TemplateProblem.

    `deadline` is a `time.monotonic()` instant; without one the thread's deadline (set by
    `render_in_worker`) or a default of a few seconds applies.
    """
    template = _compiled(text)

    def work() -> str:
        parts: list[str] = []
        total = 0
        for chunk in template.generate(values):
            total += len(chunk)
            if total > MAX_RENDERED_CHARS:
                raise TemplateProblem(
                    f"template renders over {MAX_RENDERED_CHARS:,} characters", hint=_LIMIT_HINT
                )
            parts.append(chunk)
        return "".join(parts)

    return _run("template", work, deadline)


def evaluate(expression: str, values: Mapping[str, Any], *, deadline: float | None = None) -> Any:
    """Evaluate a condition expression (`when`, `check`) in the sandbox."""
    compiled = _compiled_expression(expression)
    return _run("expression", lambda: compiled(**values), deadline)


def needs_worker(value: Any) -> bool:
    """Whether an argument value holds a template that does more than substitute names
    (`{{ x }}`, `{{ a.b }}` cost no more than their values): those render off the loop."""
    return any(
        isinstance(current, str) and is_template(current) and not _only_names(current)
        for current in walk(value)
    )


async def render_in_worker(work: Callable[[], T], timeout: float | None) -> T:
    """Run template work (e.g. resolving a step's arguments) in a worker thread.

    The event loop stays free, and the renders inside `work` get the deadline, so the
    thread stops by itself soon after `timeout` seconds; the caller gets TimeoutError.
    """
    deadline = time.monotonic() + timeout if timeout is not None else None

    def in_thread() -> T:
        set_thread_deadline(deadline)
        try:
            return work()
        finally:
            set_thread_deadline(None)

    import asyncio  # here, not at the top: `planfile check` never needs the event loop

    task = asyncio.to_thread(in_thread)
    if timeout is None:
        return await task
    return await asyncio.wait_for(task, timeout)

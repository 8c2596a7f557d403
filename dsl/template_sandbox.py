"""The jinja2 sandbox plans render in, with a budget on every value and on each render.

A template may be written by a model, so the sandbox bounds what one render can cost:

- the size of every intermediate value (strings, lists, dicts, ints), checked *before*
  an operation that could build a huge one (`*`, `**`, `%` and `format` widths,
  `center`/`ljust`/`zfill`/`indent`/`replace`/`join`/`batch`/`slice`) and after every
  operator, `~`, filter and call;
- the number of steps (loop iterations, calls, filters, operators) and the units of data
  they touch, so nested `range` loops or a filter inside a big loop end early;
- the wall time: a deadline checked at every step, so a worker thread rendering a hostile
  template stops by itself soon after the step's timeout.

Each single operation is bounded by the size checks, so the step and deadline checks run
often enough. The budget lives in a thread-local, so renders in worker threads do not
share it. Constant folding is switched off: a template is never evaluated at check time.

The module runs past 400 lines because each amplifying filter and str method needs its
own pre-check, and those belong next to the sandbox that applies them.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import _PassArg

MAX_VALUE_CHARS = 10_000_000  # any string, or a container's total size, and the output
MAX_INT_BITS = 100_000  # about 30,000 decimal digits
MAX_POWER_EXPONENT = 10_000
MAX_ITEMS = 100_000  # `batch`/`slice` counts, like jinja2's own `range` limit
MAX_STEPS = 500_000  # loop iterations, calls, filters and operators in one render
MAX_WORK = 20_000_000  # characters and items those steps touch
DEFAULT_SECONDS = 10.0  # a render with no deadline of its own
ON_LOOP_SECONDS = 1.0  # one on an event loop thread (a condition), which it blocks
# Text that `wordwrap` takes: textwrap's cost grows faster than its input (a 1M-character
# string at width 1 took 36 s), so the input is capped, not only the output.
MAX_WRAP_CHARS = 100_000
# `lipsum(n, min, max)`: n paragraphs of min..max words, generated in one call.
MAX_LIPSUM_WORDS = 100_000
MAX_DEPTH = 100  # nesting of one expression (`x|f|f|...`, `((...))`)


class TemplateLimit(SecurityError):
    """A template would exceed one of the render limits."""


class Budget:
    """What one render may still spend; `tick` charges it and enforces the deadline."""

    __slots__ = ("deadline", "steps", "work")

    def __init__(self, deadline: float | None = None) -> None:
        self.steps = 0
        self.work = 0
        self.deadline = deadline if deadline is not None else time.monotonic() + DEFAULT_SECONDS

    def tick(self, work: int = 0) -> None:
        self.steps += 1
        self.work += work
        if self.steps > MAX_STEPS:
            raise TemplateLimit(f"template takes more than {MAX_STEPS:,} steps")
        if self.work > MAX_WORK:
            raise TemplateLimit(f"template touches more than {MAX_WORK:,} characters or items")
        if (self.steps & 0xFF == 0 or work > 10_000) and time.monotonic() > self.deadline:
            raise TemplateLimit("template ran past its deadline")


_local = threading.local()


def current_budget() -> Budget:
    """The budget of the render running in this thread (a fresh one outside a render)."""
    budget: Budget | None = getattr(_local, "budget", None)
    return budget if budget is not None else Budget()


class budget_scope:
    """`with budget_scope(deadline):` one render's budget for this thread."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.outer: Budget | None = None

    def __enter__(self) -> Budget:
        self.outer = getattr(_local, "budget", None)
        deadline = self.deadline
        if deadline is None:
            deadline = getattr(_local, "deadline", None)
        if deadline is None and _on_event_loop():
            # `when`/`check` conditions evaluate on the run's event loop: keep them short.
            deadline = time.monotonic() + ON_LOOP_SECONDS
        _local.budget = Budget(deadline)
        return _local.budget

    def __exit__(self, *exc: object) -> None:
        _local.budget = self.outer


def _on_event_loop() -> bool:
    # No loop can be running unless asyncio was imported; not importing it here keeps
    # it (~50 ms with ssl and sockets) out of `planfile check`'s start-up.
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def set_thread_deadline(deadline: float | None) -> None:
    """The deadline renders in this thread get when they are not given one."""
    _local.deadline = deadline


# --- sizes ------------------------------------------------------------------------


def size_of(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters `value` takes; the walk stops once past `limit`."""
    total = 0
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str | bytes):
            total += len(current)
        elif isinstance(current, bool) or current is None or isinstance(current, float):
            total += 4
        elif isinstance(current, int):
            total += current.bit_length() // 3 + 1
        elif isinstance(current, dict):
            total += 2 * len(current)
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list | tuple | set | frozenset):
            total += len(current)
            stack.extend(current)
        else:
            total += 8
        if total > limit:
            break
    return total


def check_value(value: Any) -> Any:
    """`value`, or TemplateLimit if it is too big to keep."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"a number over {MAX_INT_BITS:,} bits")
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise TemplateLimit(f"a string of {len(value):,} characters")
        return value
    if (
        isinstance(value, list | tuple | dict | set | frozenset)
        and size_of(value) > MAX_VALUE_CHARS
    ):
        raise TemplateLimit(f"a value of over {MAX_VALUE_CHARS:,} characters")
    return value


def _within(estimate: float, what: str) -> None:
    if estimate > MAX_VALUE_CHARS:
        raise TemplateLimit(f"{what} would build about {estimate:,.0f} characters")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def check_format(text: str, args: Iterable[Any], percent: bool) -> None:
    """Refuse `%`/`format` widths and precisions that would build a huge string."""
    variable = False
    for match in (_PERCENT_SPEC if percent else _BRACE_SPEC).finditer(text):
        spec = match.group(0)
        variable = variable or "*" in spec or (not percent and "{" in match.group(1))
        for digits in re.findall(r"\d+", spec if percent else match.group(1)):
            if len(digits) > 8 or int(digits) > MAX_VALUE_CHARS:
                raise TemplateLimit(f"format width {digits[:12]} is too large")
    if variable:
        for arg in args:
            if isinstance(arg, int) and abs(arg) > MAX_VALUE_CHARS:
                raise TemplateLimit(f"format width {arg} is too large")


def _replace_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = len(text) + 1 if not old else text.count(old)
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _join_size(items: list[Any], separator: str) -> int:
    return size_of(items) + len(separator) * max(len(items) - 1, 0)


# --- operators ----------------------------------------------------------------------


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_POWER_EXPONENT:
        raise TemplateLimit(f"exponent {exponent} is too large")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 1 and abs(base) > 1:
        bits = exponent * math.log2(abs(base))
        if bits > MAX_INT_BITS:
            raise TemplateLimit(f"a power of about {bits:,.0f} bits")
    return base**exponent


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise TemplateLimit(f"a product over {MAX_INT_BITS:,} bits")
        return left * right
    sequence, count = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(sequence, str | list | tuple) and isinstance(count, int):
        _within(size_of(sequence) * max(count, 0), "repetition")
    return left * right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        check_format(left, right if isinstance(right, tuple) else (right,), percent=True)
    return left % right


# --- filters and calls -------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _pre_center(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 0, "width", 80)
    if isinstance(width, int):
        _within(width, "`center`")


def _pre_indent(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 0, "width", 4)
    unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = str(value) if isinstance(value, str) else ""
    _within(len(text) + (text.count("\n") + 1) * unit, "`indent`")


def _pre_count(name: str, default: Any) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], None]:
    def check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        count = _arg(args, kwargs, 0, name, default)
        if isinstance(count, int) and count > MAX_ITEMS:
            raise TemplateLimit(f"{name} {count} is over {MAX_ITEMS:,}")

    return check


def _pre_format(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if isinstance(value, str):
        check_format(value, (*args, *kwargs.values()), percent=True)


def _pre_replace(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
    count = _arg(args, kwargs, 2, "count", None)
    if isinstance(value, str) and isinstance(old, str) and isinstance(new, str):
        _within(
            _replace_size(value, old, new, count if isinstance(count, int) else -1), "`replace`"
        )


def _pre_join(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    separator = _arg(args, kwargs, 0, "d", "")
    if isinstance(value, list | tuple):
        _within(_join_size(list(value), str(separator)), "`join`")


def _pre_wordwrap(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _arg(args, kwargs, 0, "width", 79)
    wrap = _arg(args, kwargs, 2, "wrapstring", None) or "\n"
    if isinstance(value, str) and len(value) > MAX_WRAP_CHARS:
        raise TemplateLimit(f"`wordwrap` takes at most {MAX_WRAP_CHARS:,} characters")
    if isinstance(value, str) and isinstance(width, int) and width > 0:
        _within(len(value) + (len(value) // width + 1) * len(str(wrap)), "`wordwrap`")


def _pre_sum(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    start = _arg(args, kwargs, 1, "start", 0)
    if not isinstance(start, int | float) and isinstance(value, list | tuple):
        # Summing lists copies the running total once per item.
        current_budget().tick(len(value) * size_of(value))


_FILTER_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], None]] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "batch": _pre_count("linecount", 0),
    "slice": _pre_count("slices", 0),
    "format": _pre_format,
    "replace": _pre_replace,
    "join": _pre_join,
    "wordwrap": _pre_wordwrap,
    "sum": _pre_sum,
}


# Filters that call back into Python once per item cost far more per item than a copy.
_PER_ITEM_FILTERS = frozenset(
    {"sort", "unique", "map", "select", "reject", "selectattr", "rejectattr", "groupby"}
    | {"dictsort", "sum", "min", "max", "tojson", "pprint"}
)


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(function) is not None else 0
    check = _FILTER_CHECKS.get(name)
    weight = 20 if name in _PER_ITEM_FILTERS else 1

    @functools.wraps(function)  # keeps `jinja_pass_arg`, which jinja2 reads
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        sized = isinstance(value, str | list | tuple | dict)
        current_budget().tick(weight * len(value) if sized and value is not None else 1)
        if check is not None:
            check(value, args[skip + 1 :], kwargs)
        return check_value(function(*args, **kwargs))

    return guarded


def _check_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _arg(args, kwargs, 0, "width", 0)
        if isinstance(width, int):
            _within(width, f"`{name}`")
    elif name == "expandtabs":
        size = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(size, int):
            _within(len(text) + text.count("\t") * size, "`expandtabs`")
    elif name == "replace":
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        count = _arg(args, kwargs, 2, "count", -1)
        if isinstance(old, str) and isinstance(new, str):
            _within(
                _replace_size(text, old, new, count if isinstance(count, int) else -1), "`replace`"
            )
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            _within(_join_size(list(items), text), "`join`")
    elif name in ("format", "format_map"):
        values = list(args) + list(kwargs.values())
        if name == "format_map" and args and isinstance(args[0], dict):
            values = list(args[0].values())
        check_format(text, values, percent=False)


def _iterate(iterable: Any) -> Iterator[Any]:
    """Every `{% for %}` loop goes through here, one budget step per item."""
    budget = current_budget()
    for item in iterable:
        budget.tick()
        yield item


def _concat(parts: list[Any]) -> str:
    """`a ~ b ~ c`, refused before it grows past the size limit."""
    budget = current_budget()
    total = 0
    texts: list[str] = []
    for part in parts:
        text = str(part)
        total += len(text)
        _within(total, "`~`")
        texts.append(text)
    budget.tick(total)
    return "".join(texts)


def _guard_lipsum(lipsum: Callable[..., Any]) -> Callable[..., Any]:
    """jinja2's `lipsum` builds all its text in one call: bound it before it starts."""

    @functools.wraps(lipsum)
    def guarded(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100) -> Any:
        counts = [v for v in (n, min, max) if isinstance(v, int)]
        if any(v < 0 for v in counts) or (
            isinstance(n, int) and isinstance(max, int) and n * max > MAX_LIPSUM_WORDS
        ):
            raise TemplateLimit(f"`lipsum` makes at most {MAX_LIPSUM_WORDS:,} words")
        current_budget().tick(n * max if isinstance(n, int) and isinstance(max, int) else 1)
        return lipsum(n, html, min, max)

    return guarded


class PlanSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox plus the budget: every operator, filter and call is
    charged and size-checked."""

    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, **options)
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.filters["_planfile_iterate"] = _iterate
        self.filters["_planfile_concat"] = _concat
        self.globals["lipsum"] = _guard_lipsum(cast(Callable[..., Any], self.globals["lipsum"]))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        current_budget().tick()
        if operator == "**":
            return check_value(_power(left, right))
        if operator == "*":
            return check_value(_multiply(left, right))
        if operator == "%":
            return check_value(_modulo(left, right))
        return check_value(self.binop_table[operator](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        current_budget().tick(len(owner) if isinstance(owner, str) else 1)
        if isinstance(owner, str):
            _check_str_method(owner, getattr(target, "__name__", ""), args, kwargs)
        return check_value(super().call(__context, __obj, *args, **kwargs))


def _filter_node(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


def prepare(template: nodes.Template) -> nodes.Template:
    """Check nesting and route loops and `~` through the budget (in place, no recursion)."""
    stack: list[tuple[nodes.Node, int]] = [(template, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TemplateLimit(f"template nests more than {MAX_DEPTH} levels deep")
        for child in node.iter_child_nodes():
            stack.append((child, depth + 1))
        if isinstance(node, nodes.For) and isinstance(node.iter, nodes.Expr):
            node.iter = _filter_node(node.iter, "_planfile_iterate")
        for name in node.fields:
            value = getattr(node, name, None)
            if isinstance(value, nodes.Concat):
                setattr(node, name, _concat_call(value))
            elif isinstance(value, list):
                setattr(
                    node,
                    name,
                    [_concat_call(v) if isinstance(v, nodes.Concat) else v for v in value],
                )
    return template


def _concat_call(node: nodes.Concat) -> nodes.Filter:
    return _filter_node(nodes.List(list(node.nodes), lineno=node.lineno), "_planfile_concat")

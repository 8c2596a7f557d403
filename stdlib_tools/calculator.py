"""The `calculate` tool: arithmetic by walking Python's AST, never eval or exec.

Only numbers, `+ - * / // % **`, parentheses, unary minus and `min max abs round sqrt`
are accepted. Exponents and result sizes are bounded before they are computed, so
`9**9**9**9` fails at once instead of eating the machine.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from dsl.errors import ToolError

MAX_EXPRESSION_CHARS = 10_000
MAX_INT_BITS = 4_096  # about 1,233 decimal digits
MAX_MAGNITUDE_DIGITS = 400.0


class CalculationError(ToolError, ValueError):
    """The expression is not plain arithmetic, or its result is out of bounds."""


Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}


def _sqrt(x: Number) -> float:
    if x < 0:
        raise CalculationError("sqrt of a negative number")
    return math.sqrt(x)


def _round(x: Number, digits: Number = 0) -> Number:
    if not isinstance(digits, int) or isinstance(digits, bool) or abs(digits) > 100:
        raise CalculationError("round() takes a whole number of digits between -100 and 100")
    return round(x, digits) if digits else round(x)


_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    # name: (function, min args, max args)
    "min": (min, 1, 1000),
    "max": (max, 1, 1000),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "sqrt": (_sqrt, 1, 1),
}


def _check_size(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("result is too large (over about 1,200 digits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("result is not a finite number")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if base == 0 and exponent < 0:
        raise CalculationError("zero cannot be raised to a negative power")
    if abs(base) > 1 and exponent > 0:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_MAGNITUDE_DIGITS:
            raise CalculationError(f"{base} ** {exponent} is too large (about 10^{digits:.3g})")
    if isinstance(exponent, float) and base < 0 and not exponent.is_integer():
        raise CalculationError("a negative number to a fractional power is not a real number")
    try:
        return _check_size(base**exponent)
    except OverflowError:
        raise CalculationError(f"{base} ** {exponent} is too large") from None


def _binary(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Pow):
        return _power(left, right)
    function = _BINARY.get(type(op))
    if function is None:
        raise CalculationError(f"operator {type(op).__name__} is not allowed")
    if (
        isinstance(op, ast.Mult)
        and isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1
    ):
        raise CalculationError("result is too large (over about 1,200 digits)")
    try:
        return _check_size(function(left, right))
    except ZeroDivisionError:
        raise CalculationError(f"division by zero ({_SYMBOLS[type(op)]})") from None
    except OverflowError:
        raise CalculationError("result is too large") from None


def _call(node: ast.Call, args: list[Number]) -> Number:
    assert isinstance(node.func, ast.Name)
    function, _, _ = _FUNCTIONS[node.func.id]
    try:
        return _check_size(function(*args))
    except (OverflowError, ValueError) as err:
        raise CalculationError(f"{node.func.id}(): {err}") from None


def _children(node: ast.AST) -> list[ast.AST]:
    """The operands of an allowed node (raising for anything not allowed)."""
    if isinstance(node, ast.Expression):
        return [node.body]
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculationError(f"only numbers are allowed, not {value!r}")
        return []
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return [node.operand]
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            shown = node.func.id if isinstance(node.func, ast.Name) else "that"
            raise CalculationError(
                f"function `{shown}` is not allowed (allowed: {', '.join(_FUNCTIONS)})"
            )
        if node.keywords:
            raise CalculationError("keyword arguments are not allowed")
        _, low, high = _FUNCTIONS[node.func.id]
        if not low <= len(node.args) <= high:
            raise CalculationError(f"{node.func.id}() takes {low} to {high} arguments")
        return list(node.args)
    if isinstance(node, ast.Name):
        raise CalculationError(f"names are not allowed: `{node.id}`")
    if isinstance(node, ast.Attribute):
        raise CalculationError("attribute access is not allowed")
    if isinstance(node, ast.Tuple):
        raise CalculationError("commas separate function arguments only; write 150000, not 150,000")
    raise CalculationError(f"{type(node).__name__} is not allowed in arithmetic")


def _evaluate(root: ast.AST) -> Number:
    """Post-order walk with an explicit stack: a flat sum of thousands of terms is a
    left-deep tree as deep as it is long, so recursion would fail on it."""
    values: list[Number] = []
    stack: list[tuple[ast.AST, bool]] = [(root, False)]
    while stack:
        node, operands_done = stack.pop()
        if not operands_done:
            children = _children(node)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children))
            continue
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # _children checked it
            values.append(_check_size(node.value))
        elif isinstance(node, ast.UnaryOp):
            operand = values.pop()
            values.append(-operand if isinstance(node.op, ast.USub) else operand)
        elif isinstance(node, ast.BinOp):
            right = values.pop()
            left = values.pop()
            values.append(_binary(node.op, left, right))
        elif isinstance(node, ast.Call):
            count = len(node.args)
            args = values[len(values) - count :]
            del values[len(values) - count :]
            values.append(_call(node, args))
    (result,) = values
    return result


def as_float(value: Number) -> float:
    """The result as a float, or a CalculationError saying it does not fit in one."""
    try:
        return float(value)
    except OverflowError:
        digits = len(str(abs(int(value))))
        raise CalculationError(
            f"result has {digits} digits; results must be below about 1.8e308"
        ) from None


def evaluate(expression: str) -> Number:
    """Evaluate arithmetic safely; raise CalculationError on anything else."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculationError("empty expression")
    try:
        tree: ast.AST = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise CalculationError(f"not an arithmetic expression: {err.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        tree = _parse_long_sum(text)
    return _evaluate(tree)


_EXPONENT_END = re.compile(r"(?:^|[^A-Za-z0-9_.])[0-9][0-9_]*(?:\.[0-9_]*)?[eE]$")


def _parse_long_sum(text: str) -> ast.AST:
    """Python's parser recurses once per operator of a chain, so a sum of ~3,000 terms
    fails there; split it at the top-level `+`/`-` and parse the terms one by one."""
    terms: list[tuple[type[ast.operator], str]] = []
    depth = 0
    start = 0
    operator_kind: type[ast.operator] = ast.Add
    previous = ""
    for index, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif (
            char in "+-"
            and depth == 0
            and (previous.isalnum() or previous in "._)]")
            and not _EXPONENT_END.search(text[start:index].rstrip())
        ):
            terms.append((operator_kind, text[start:index]))
            operator_kind = ast.Add if char == "+" else ast.Sub
            start = index + 1
        if not char.isspace():
            previous = char
    terms.append((operator_kind, text[start:]))
    try:
        parsed = [(kind, ast.parse(term.strip(), mode="eval").body) for kind, term in terms]
    except SyntaxError as err:
        raise CalculationError(f"not an arithmetic expression: {err.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise CalculationError("expression nests too deeply") from None
    if len(parsed) < 2:
        raise CalculationError("expression nests too deeply")
    tree = parsed[0][1]
    for kind, node in parsed[1:]:
        tree = ast.BinOp(left=tree, op=kind(), right=node)
    return ast.Expression(body=tree)

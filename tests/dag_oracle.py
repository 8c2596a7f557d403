"""Brute-force oracles for the DAG algorithms (test-only), and random DAG plans.

Each oracle enumerates every path, which is hopeless beyond a few dozen nodes and
obviously right below that: the production code (dsl/dag.py, engine/run/latency.py)
must agree with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

from hypothesis import strategies as st

from dsl import check, parse_text
from dsl.checker import CheckedPlan
from stdlib_tools import ToolRegistry


def all_paths(deps: Sequence[Sequence[int]]) -> list[list[int]]:
    """Every path (dependencies first) in a DAG given as node -> nodes it waits for."""
    users: list[list[int]] = [[] for _ in deps]
    for node, needs in enumerate(deps):
        for need in needs:
            users[need].append(node)

    @cache
    def paths_from(node: int) -> tuple[tuple[int, ...], ...]:
        longer = [(node, *rest) for user in users[node] for rest in paths_from(user)]
        return ((node,), *longer)

    return [list(path) for node in range(len(deps)) for path in paths_from(node)]


def longest_total(deps: Sequence[Sequence[int]], weights: Sequence[float]) -> float:
    """The largest total weight of any path."""
    return max((sum(weights[n] for n in path) for path in all_paths(deps)), default=0.0)


def tails(deps: Sequence[Sequence[int]], weights: Sequence[float]) -> list[float]:
    """For each node, the largest total weight of a path starting at it."""
    best = [0.0] * len(deps)
    for path in all_paths(deps):
        best[path[0]] = max(best[path[0]], sum(weights[n] for n in path))
    return best


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 12) -> tuple[list[list[int]], list[float]]:
    """A random DAG (node -> earlier nodes it waits for) with a weight per node."""
    n = draw(st.integers(1, max_nodes))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    weights = [draw(st.floats(0, 10, allow_subnormal=False)) for _ in range(n)]
    return deps, weights


def plan_of(deps: Sequence[Sequence[int]], shuffle: Sequence[int] | None = None) -> CheckedPlan:
    """A checked plan with the DAG's shape: step `s{i}` waits (`after`) for its deps.

    `shuffle` lists the nodes in the order the steps are written (plan order need not
    be a topological order).
    """
    lines = []
    for node in shuffle if shuffle is not None else range(len(deps)):
        after = f" after {', '.join(f's{d}' for d in deps[node])}" if deps[node] else ""
        lines.append(f'step s{node} = calculate(expression: "1"){after}')
    plan, smap = parse_text("\n".join(lines) + "\n")
    return check(plan, ToolRegistry.standard(), smap)


def path_total(path: Sequence[str], weights: Mapping[str, float]) -> float:
    return sum(weights.get(step, 0.0) for step in path)

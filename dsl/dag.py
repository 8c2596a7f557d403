"""A checked plan compiled to a networkx DiGraph: cycles, topological order, longest path.

`CheckedPlan.graph` compiles a plan once (on first use) into a `PlanGraph`: one node per
step in plan order, an edge from each dependency to its user. Everything that needs the
plan's shape reads it from there: the static critical path (`planfile graph`), the
observed one (run results, the HTML report), the exports (engine/observe/export.py),
and the scheduler, which takes the integer form (`PlanGraph.compact`) for its hot loop.

A run reads the graph once: `compact` walks networkx's adjacency for the dependency and
successor lists and takes networkx's topological order, and every later pass (the
schedule, its priorities, the critical path at the end) runs on those integer lists.

networkx costs ~95-125 ms to import, more than checking a 1,000-step plan, so the checker
imports this module only to explain a cycle it found: the graph of a valid plan is
compiled when something asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import networkx as nx

from dsl.errors import gc_paused

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan


@dataclass(frozen=True)
class CompactDag:
    """The plan's DAG as integers (node = plan position), for the scheduler's hot loop."""

    names: list[str]
    """Step ids in plan order: node `i` is `names[i]`."""
    index: dict[str, int]
    deps: list[list[int]]
    """Node -> the nodes it waits for."""
    successors: list[list[int]]
    """Node -> the nodes waiting for it (shared, never changed: the scheduler and the
    priorities read the same lists)."""
    order: list[int]
    """A topological order of the nodes (dependencies first)."""


class PlanGraph:
    """A checked plan as an `nx.DiGraph`, with the views derived from it computed once."""

    def __init__(self, checked: CheckedPlan):
        # Not the plan itself: the plan caches this graph, and a cycle would keep both
        # alive until the collector runs.
        self.fallbacks = checked.fallbacks
        graph = nx.DiGraph(name=checked.plan.name)
        with gc_paused():  # tens of thousands of small dicts, no reference cycles
            graph.add_nodes_from(checked.deps)  # plan order: networkx keeps insertion order
            graph.add_edges_from((dep, user) for user, deps in checked.deps.items() for dep in deps)
        self.nx = graph

    @cached_property
    def order(self) -> list[str]:
        """Step ids in a topological order (dependencies first)."""
        return list(nx.topological_sort(self.nx))

    @cached_property
    def compact(self) -> CompactDag:
        """The graph as integer lists, read from networkx's adjacency once."""
        graph = self.nx
        names = list(graph)
        index = {name: i for i, name in enumerate(names)}
        with gc_paused():
            return CompactDag(
                names=names,
                index=index,
                # The adjacency dicts straight (a view per node costs ~1 us more each).
                deps=[
                    [index[dep] for dep in needs]
                    for _, needs in graph.reverse(copy=False).adjacency()
                ],
                successors=[[index[user] for user in users] for _, users in graph.adjacency()],
                order=[index[name] for name in self.order],
            )

    def longest_path(self, weights: Mapping[str, float]) -> tuple[float, list[str]]:
        """The chain of steps with the largest total weight: (total, steps in order).

        Node-weighted `nx.dag_longest_path`: the same dynamic programme over networkx's
        topological order and predecessor lists, in their integer form (`compact`).
        networkx's own function takes edge weights; moving node weights onto a copy of
        the graph costs ~14x (210 ms against 15 ms for 10,000 steps), and run results
        pay this at the end of every run. Ties keep the earliest predecessor, so a
        zero-weight step never starts a chain, and the earliest end in the order.
        """
        dag = self.compact
        names, deps, order = dag.names, dag.deps, dag.order
        if not order:
            return 0.0, []
        weight = weights.get
        finish = [0.0] * len(names)
        parent = [-1] * len(names)
        for node in order:
            start = 0.0
            best = -1
            for dep in deps[node]:
                if finish[dep] > start:
                    start = finish[dep]
                    best = dep
            finish[node] = start + weight(names[node], 0.0)
            parent[node] = best
        end = max(order, key=finish.__getitem__)
        path = [end]
        while (previous := parent[path[-1]]) >= 0:
            path.append(previous)
        return finish[end], [names[node] for node in reversed(path)]

    def critical_path(self, durations: Mapping[str, float]) -> tuple[float, list[str]]:
        """The longest chain of expected durations (fallbacks, which run only when their
        primary fails, count for nothing): (seconds, steps)."""
        fallbacks = self.fallbacks
        if not fallbacks:
            return self.longest_path(durations)
        return self.longest_path(
            {step: seconds for step, seconds in durations.items() if step not in fallbacks}
        )


def find_cycles(
    deps: Mapping[str, Collection[str]], position: Callable[[str], int]
) -> list[list[str]]:
    """One cycle per strongly connected group of steps, in execution order, each starting
    at its earliest step (by `position`), earliest first; [] for a DAG.

    The checker calls this only once its counting pass found a cycle (so that checking
    a valid plan never imports networkx).
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(deps)
    graph.add_edges_from(
        (need, node) for node, needs in deps.items() for need in needs if need in deps
    )
    cycles: list[list[str]] = []
    for group in nx.strongly_connected_components(graph):
        if len(group) == 1 and not graph.has_edge(*group, *group):
            continue
        edges = nx.find_cycle(graph.subgraph(group), source=min(group, key=position))
        cycle = [edge[0] for edge in edges]
        start = cycle.index(min(cycle, key=position))
        cycles.append(cycle[start:] + cycle[:start])
    cycles.sort(key=lambda cycle: position(cycle[0]))
    return cycles

"""A checked plan compiled to a networkx DiGraph: cycles, topological order, longest path.

`CheckedPlan.graph` compiles a plan once (on first use) into a `PlanGraph`: one node per
step in plan order, an edge from each dependency to its user. Everything that needs the
plan's shape reads it from there: the static critical path (`planfile graph`), the
observed one (run results, the HTML report), the exports (engine/observe/export.py),
and the scheduler, which takes the integer form (`PlanGraph.compact`) for its hot loop.

A run reads the graph once: `compact` walks networkx's adjacency for the dependency and
successor lists and takes networkx's topological order (plan order where that is the
same, see `in_generation_order`), and every later pass (the schedule, its priorities,
the critical path at the end) runs on those integer lists.

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
        self.nx = _digraph(checked.plan.name, checked.deps)

    @cached_property
    def order(self) -> list[str]:
        """Step ids in networkx's topological order (`nx.topological_sort`: dependencies
        first, generation by generation)."""
        names = self.compact.names
        return [names[node] for node in self.compact.order]

    @cached_property
    def compact(self) -> CompactDag:
        """The graph as integer lists, read from networkx's adjacency once."""
        graph = self.nx
        names = list(graph)
        index = dict(zip(names, range(len(names)), strict=True))
        at = index.__getitem__  # mapped in C: no comprehension frame per node
        with gc_paused():
            deps = [list(map(at, needs)) for _, needs in graph.reverse(copy=False).adjacency()]
            return CompactDag(
                names=names,
                index=index,
                # The adjacency dicts straight (a view per node costs ~1 us more each).
                deps=deps,
                successors=[list(map(at, users)) for _, users in graph.adjacency()],
                # networkx's order; plan order where that is the same (most plans).
                order=list(range(len(names)))
                if in_generation_order(deps)
                else list(map(at, nx.topological_sort(graph))),
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


def in_generation_order(deps: list[list[int]]) -> bool:
    """Whether `nx.topological_sort` lists this DAG's nodes (node -> the nodes it waits
    for, both as plan positions, the DiGraph `_digraph` builds) in plan order, 0..n-1.

    networkx's order is its `topological_generations`, each in turn: generation 0 is the
    nodes without dependencies, in node order; a node joins the next generation when
    the last of its dependencies is taken, so generation k+1 lists its nodes by where
    their last dependency of generation k stands, then (sharing it) in that node's
    successor order, which is plan order. So plan order is networkx's exactly when
    every dependency comes earlier and (generation, position of that last dependency)
    never decreases along the plan: one pass, ~1/5 of networkx's walk on a 10,000-step
    chain. tests/test_dag.py holds the answer to networkx's own on random DAGs.
    """
    generation = [0] * len(deps)
    previous = (0, -1)
    for node, needs in enumerate(deps):
        if not needs:
            here = (0, -1)
        elif len(needs) == 1:
            need = needs[0]
            if need >= node:
                return False
            here = (generation[need] + 1, need)
        else:
            if max(needs) >= node:
                return False
            level = max([generation[need] for need in needs])
            here = (level + 1, max([need for need in needs if generation[need] == level]))
        if here < previous:
            return False
        generation[node] = here[0]
        previous = here
    return True


def _digraph(name: str, deps: Mapping[str, Collection[str]]) -> nx.DiGraph:
    """The DiGraph `add_nodes_from(deps)` + `add_edges_from(dep -> user)` builds (nodes
    in plan order, each node's successors in plan order and predecessors in `deps`
    order, one attribute dict per edge shared by both sides), written straight into
    its adjacency dicts: networkx's documented dict-of-dicts structure, without a
    Python call and four membership tests per edge (~2x cheaper at 10,000 steps;
    tests/test_dag.py holds the two equal). Every dependency is a node of `deps` (the
    checker resolved them)."""
    graph = nx.DiGraph(name=name)
    with gc_paused():  # tens of thousands of small dicts, no reference cycles
        succ: dict[str, dict[str, dict[str, object]]] = {node: {} for node in deps}
        pred: dict[str, dict[str, dict[str, object]]] = {node: {} for node in deps}
        for user, needs in deps.items():
            if needs:
                into = pred[user]
                for need in needs:
                    into[need] = succ[need][user] = {}
        # Assigned, not filled in place: networkx's descriptors then reset its views.
        graph._node = {node: {} for node in deps}
        graph._succ = succ  # also `_adj`
        graph._pred = pred
    return graph


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

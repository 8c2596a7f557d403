"""The compiled plan graph: networkx underneath, one longest path, against brute force."""

from __future__ import annotations

import itertools
import subprocess
import sys

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st

from dsl import check, parse_text
from dsl.dag import in_generation_order
from engine.observe.export import to_dot, to_json, to_mermaid
from stdlib_tools import ToolRegistry

from .dag_oracle import dags, longest_total, path_total, plan_of


@given(dags(), st.randoms(use_true_random=False))
def test_longest_path_equals_brute_force(
    dag: tuple[list[list[int]], list[float]], rng: object
) -> None:
    """On random DAGs written in any order, the critical path is a real chain whose total
    is the largest of any path, and equals networkx's own edge-weighted longest path."""
    deps, weights = dag
    shuffle = list(range(len(deps)))
    rng.shuffle(shuffle)  # type: ignore[attr-defined]
    graph = plan_of(deps, shuffle).graph
    by_name = {f"s{i}": w for i, w in enumerate(weights)}
    total, path = graph.longest_path(by_name)
    assert total == sum(by_name[s] for s in path)  # same additions, in path order
    assert abs(total - longest_total(deps, weights)) < 1e-9
    assert all(graph.nx.has_edge(a, b) for a, b in itertools.pairwise(path))
    # networkx's edge-weighted form: each edge carries its source's weight, into a sink.
    split = nx.DiGraph()
    split.add_weighted_edges_from((u, v, by_name[u]) for u, v in graph.nx.edges)
    split.add_weighted_edges_from((u, "END", by_name[u]) for u in graph.nx)
    assert abs(total - nx.dag_longest_path_length(split)) < 1e-9
    assert abs(path_total(nx.dag_longest_path(split)[:-1], by_name) - total) < 1e-9


@given(dags(max_nodes=30), st.randoms(use_true_random=False))
def test_orders_are_topological(dag: tuple[list[list[int]], list[float]], rng: object) -> None:
    """The graph's order and the scheduler's integer form put dependencies first."""
    deps, _ = dag
    shuffle = list(range(len(deps)))
    rng.shuffle(shuffle)  # type: ignore[attr-defined]
    checked = plan_of(deps, shuffle)
    place = {step: i for i, step in enumerate(checked.graph.order)}
    assert all(place[d] < place[s] for s, needs in checked.deps.items() for d in needs)
    compact = checked.graph.compact
    assert compact.names == [step.id for step in checked.plan.steps]
    position = {node: i for i, node in enumerate(compact.order)}
    assert sorted(position) == list(range(len(deps)))
    for node, needs in enumerate(compact.deps):
        assert {compact.names[d] for d in needs} == set(checked.deps[compact.names[node]])
        assert all(position[d] < position[node] for d in needs)


@given(dags(max_nodes=14), st.randoms(use_true_random=False), st.booleans())
def test_order_is_networkx_topological_sort(
    dag: tuple[list[list[int]], list[float]], rng: object, sort: bool
) -> None:
    """The order is networkx's `topological_sort`, also where plan order is taken for it
    (`in_generation_order`: exactly when the two agree). Plans written in generation
    order (`sort`), where the shortcut applies, and in any order."""
    deps, _ = dag
    shuffle = list(range(len(deps)))
    rng.shuffle(shuffle)  # type: ignore[attr-defined]
    if sort:  # by generation, then by the position of each node's last dependency
        level: list[int] = []
        for needs in deps:
            level.append(1 + max((level[d] for d in needs), default=-1))
        shuffle.sort(key=lambda n: (level[n], n))
    checked = plan_of(deps, shuffle)
    compact = checked.graph.compact
    expected = list(nx.topological_sort(checked.graph.nx))
    assert [compact.names[n] for n in compact.order] == expected == checked.graph.order
    assert in_generation_order(compact.deps) == (expected == compact.names)


def test_generation_order_shortcut_on_common_shapes() -> None:
    none: list[list[int]] = [[]]
    chain = none + [[i - 1] for i in range(1, 50)]
    fan_out = none + [[0] for _ in range(49)]
    layered = none * 5 + [[i - 5, i - 4] if i % 5 != 4 else [i - 5] for i in range(5, 20)]
    for deps in (chain, fan_out, layered):
        assert in_generation_order(deps)
        assert plan_of(deps).graph.compact.order == list(range(len(deps)))
    assert not in_generation_order([[], [0], []])  # networkx: s0, s2, then s1
    assert plan_of([[], [0], []]).graph.order == ["s0", "s2", "s1"]


def test_graph_equals_the_one_networkx_builds() -> None:
    """`_digraph` writes networkx's adjacency itself: the same graph, in the same order,
    as `add_nodes_from` + `add_edges_from`."""
    checked = plan_of([[], [0], [0, 1], [], [3, 2]], [3, 0, 4, 1, 2])
    built = checked.graph.nx
    expected = nx.DiGraph(name=checked.plan.name)
    expected.add_nodes_from(checked.deps)
    expected.add_edges_from((d, u) for u, ds in checked.deps.items() for d in ds)
    assert nx.utils.graphs_equal(built, expected)
    assert list(built) == list(expected) and list(built.edges) == list(expected.edges)
    assert all(list(built.pred[n]) == list(expected.pred[n]) for n in expected)
    assert all(built.succ[u][v] is built.pred[v][u] for u, v in built.edges)
    built.add_edge("s0", "s3", weight=2)  # still a graph networkx can change
    assert built.pred["s3"]["s0"] == {"weight": 2} and built.nodes["s0"] == {}


def test_graph_is_compiled_once_per_checked_plan() -> None:
    checked = plan_of([[], [0]])
    assert checked.graph is checked.graph
    assert checked.graph.compact is checked.graph.compact


def fallback_plan() -> str:
    return (
        'step a: str = search(query: "x") on_error b\n'
        'step b: str = search(query: "slow fallback")\n'
        'step c = calculate(expression: "1") after a\n'
    )


def test_static_critical_path_skips_fallbacks_and_exports_use_the_graph() -> None:
    plan, smap = parse_text(fallback_plan())
    checked = check(plan, ToolRegistry.standard(), smap)
    durations = {"a": 1.0, "b": 50.0, "c": 2.0}
    assert checked.graph.critical_path(durations) == (3.0, ["a", "c"])
    doc = to_json(checked, durations)
    assert doc["critical_path"] == {"steps": ["a", "c"], "estimated_s": 3.0}
    assert doc["edges"] == [{"from": "a", "to": "c"}]
    assert [n["id"] for n in doc["nodes"]] == ["a", "b", "c"]
    assert "    a --> c" in to_mermaid(checked) and 'b(["b: search"])' in to_mermaid(checked)
    assert '"a" -> "c";' in to_dot(checked, {"a": "failed"})


def test_checking_a_valid_plan_does_not_import_networkx() -> None:
    """networkx costs ~95 ms to import: `planfile check` of a valid plan must not pay it."""
    code = (
        "import sys\n"
        "from dsl import check, parse_text\n"
        "from stdlib_tools import ToolRegistry\n"
        'plan, smap = parse_text(\'step a = calculate(expression: "1")\\n'
        'step b = calculate(expression: "{{ a }}")\\n\')\n'
        "check(plan, ToolRegistry.standard(), smap)\n"
        "print('networkx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

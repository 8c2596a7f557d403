"""Parse + check + compile of generated plans: 100 to 100,000 steps, three shapes.

Reported per step (`extra_info["us_per_step"]`) so linear growth is visible; the
100,000-step case also reports peak memory, measured in a fresh process. Compiling is
`CheckedPlan.graph`: the networkx DiGraph, its topological order and the scheduler's
integer form. `planfile check` of a 10,000-step plan is also timed as a whole process
(target <= 0.8 s), since that is what a user waits for.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from plangen import SHAPES

from dsl import check, parse_text
from stdlib_tools import ToolRegistry

REGISTRY = ToolRegistry.standard()
SIZES = [100, 1_000, 10_000]


def compile_text(text: str) -> Any:
    plan, smap = parse_text(text)
    graph = check(plan, REGISTRY, smap, source=text).graph
    assert len(graph.compact.order) == len(plan.steps)  # the order and the integer form
    return graph.nx


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_parse_check_compile(benchmark: Any, shape: str, size: int) -> None:
    text = SHAPES[shape](size)
    rounds = 5 if size <= 1_000 else 3
    graph = benchmark.pedantic(
        compile_text, args=(text,), rounds=rounds, iterations=1, warmup_rounds=1
    )
    assert graph.number_of_nodes() == size
    benchmark.extra_info["us_per_step"] = round(benchmark.stats.stats.median / size * 1e6, 2)


@pytest.mark.parametrize("size", SIZES)
def test_check_only(benchmark: Any, size: int) -> None:
    """Parse + check (what `planfile check` does) on random DAGs."""
    text = SHAPES["random"](size)

    def run() -> None:
        plan, smap = parse_text(text)
        check(plan, REGISTRY, smap, source=text)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["us_per_step"] = round(benchmark.stats.stats.median / size * 1e6, 2)


_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
from plangen import SHAPES
from dsl import check, parse_text
from stdlib_tools import ToolRegistry
text = SHAPES[{shape!r}](100_000)
start = time.perf_counter()
plan, smap = parse_text(text)
checked = check(plan, ToolRegistry.standard(), smap, source=text)
graph = checked.graph.compact  # the networkx graph and the scheduler's arrays
elapsed = time.perf_counter() - start
print(json.dumps({{"seconds": elapsed, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


@pytest.mark.parametrize("shape", list(SHAPES))
def test_100k_steps_fit_in_memory(benchmark: Any, shape: str) -> None:
    """100,000 steps parse, check and compile in a fresh process under 1 GB."""
    bench = str(Path(__file__).resolve().parent)

    def run() -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD.format(bench=bench, shape=shape)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "us_per_step": round(result["seconds"] / 100_000 * 1e6, 2),
            "maxrss_mb": round(result["maxrss_mb"]),
        }
    )
    assert result["maxrss_mb"] < 1024
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def _check_process(path: Path) -> float:
    """Run `planfile check PATH` in a fresh process; its CPU time (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "check", str(path)], capture_output=True, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_planfile_check_10k_whole_process(benchmark: Any, shape: str, tmp_path: Path) -> None:
    """`planfile check` of a 10,000-step `.plan` in a fresh process (target <= 0.8 s):
    start-up, imports, parse and check. A valid plan never imports networkx. CPU time is
    reported beside the wall time: on a busy machine it is the steadier figure."""
    path = tmp_path / f"{shape}.plan"
    path.write_text(SHAPES[shape](10_000))
    cpu: list[float] = []
    benchmark.pedantic(
        lambda: cpu.append(_check_process(path)), rounds=3, iterations=1, warmup_rounds=1
    )
    benchmark.extra_info["seconds"] = round(benchmark.stats.stats.median, 3)
    benchmark.extra_info["cpu_seconds"] = round(sorted(cpu[-3:])[1], 3)  # the timed rounds


def test_planfile_check_one_step_start_up(benchmark: Any, tmp_path: Path) -> None:
    """`planfile check` of a one-step plan in a fresh process (target <= 0.3 s): what a
    user waits for on every small plan (imports, the cached parser tables, the check)."""
    path = tmp_path / "one.plan"
    path.write_text(SHAPES["chain"](1))
    cpu: list[float] = []
    benchmark.pedantic(
        lambda: cpu.append(_check_process(path)), rounds=5, iterations=1, warmup_rounds=1
    )
    benchmark.extra_info["seconds"] = round(benchmark.stats.stats.median, 3)
    benchmark.extra_info["cpu_seconds"] = round(sorted(cpu[-5:])[2], 3)  # the timed rounds

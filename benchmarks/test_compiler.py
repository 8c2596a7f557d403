"""Parse + check + compile of generated plans: 100 to 100,000 steps, three shapes.

Reported per step (`extra_info["us_per_step"]`) so linear growth is visible; the
100,000-step case also reports peak memory, measured in a fresh process.
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
from dsl.dag import compile_graph
from stdlib_tools import ToolRegistry

REGISTRY = ToolRegistry.standard()
SIZES = [100, 1_000, 10_000]


def compile_text(text: str) -> Any:
    plan, smap = parse_text(text)
    checked = check(plan, REGISTRY, smap, source=text)
    return compile_graph(checked)


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
from dsl.dag import compile_graph
from stdlib_tools import ToolRegistry
text = SHAPES[{shape!r}](100_000)
start = time.perf_counter()
plan, smap = parse_text(text)
checked = check(plan, ToolRegistry.standard(), smap, source=text)
graph = compile_graph(checked)
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

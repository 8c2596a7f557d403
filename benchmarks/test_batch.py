"""`planfile batch`: runs per second and overhead per run, and memory at 100,000 rows.

1. Throughput (10,000 rows of a 4-step plan, every step a model call answered by
   litellm's mock response, priced from litellm's table): `planfile batch` as a fresh
   process (the user's path: journal, audit log, ledger, batch store, results file; its
   start-up cancels out as wall(N) - wall(1 row)), against the same 10,000 runs as one
   plain `asyncio.gather` of `Engine.run` in this process (same engine settings, journal
   and audit on), and against the bare model calls alone (4 x 10,000
   `litellm.acompletion` mock calls, 64 at a time). µs of engine overhead per run =
   (µs per run) - (bare calls' µs per run).
2. Scale (marked `batch_scale`, minutes): 100,000 rows of a 4-step plan of async no-op
   tool steps through `planfile batch`; the CLI's RSS is sampled every 0.5 s against the
   rows done, and its peak compared with a 10,000-row batch's.

Sizes: PLANFILE_BENCH_BATCH_ROWS (default 10000), PLANFILE_BENCH_BATCH_SCALE (100000).
Run alone: .venv/bin/pytest benchmarks/test_batch.py -s (add `-m batch_scale` for 2.)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("PLANFILE_BENCH_BATCH_ROWS", "10000"))
SCALE = int(os.environ.get("PLANFILE_BENCH_BATCH_SCALE", "100000"))
MODEL = "openai/gpt-4o-mini"

MODEL_PLAN = f"""plan four "four model calls a row" expected_cost 0.0001
input topic: str
step a: str = llm(model: "{MODEL}", prompt: "a {{{{ topic }}}}", max_tokens: 20)
step b: str = llm(model: "{MODEL}", prompt: "b {{{{ topic }}}}", max_tokens: 20)
step c: str = llm(model: "{MODEL}", prompt: "c {{{{ a }}}} {{{{ b }}}}", max_tokens: 20)
step d: str = llm(model: "{MODEL}", prompt: "d {{{{ c }}}}", max_tokens: 20)
output d
"""
NOOP_PLAN = """plan four_noops "four no-op steps a row"
input topic: str
step a = anoop()
step b = anoop()
step c = anoop()
    after a, b
step d = anoop()
    after c
output d
"""
NOOP_TOOLS = '''from stdlib_tools import tool


@tool
async def anoop() -> int:
    """Do nothing, asynchronously."""
    return 0
'''
CONFIG = f'[models."{MODEL}"]\napi_key = "sk-test"\n'
SUMMARY: list[str] = []


def summary_lines() -> list[str]:
    return SUMMARY


def _rows(path: Path, count: int) -> Path:
    with path.open("w") as file:
        for i in range(count):
            file.write(f'{{"topic": "t{i}"}}\n')
    return path


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PLANFILE_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }


def _batch(
    tmp: Path, plan: Path, rows: Path, extra: list[str], sample: bool = False
) -> dict[str, Any]:
    """`planfile batch` in a fresh process: wall, peak RSS, and RSS samples by rows done."""
    out = tmp / f"{rows.stem}.out.jsonl"
    args = [sys.executable, "-m", "engine.cli", "batch", str(plan), "--inputs", str(rows)]
    args += ["-o", str(out), "-q", "--max-runs", "64", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=tmp, env=_env(tmp / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    samples: list[tuple[int, int]] = []  # (result lines, RSS kB)
    while proc.poll() is None:
        if sample:
            rss = _rss_kb(proc.pid)
            if rss:
                samples.append((_lines(out), rss))
        time.sleep(0.5)
    wall = time.perf_counter() - start
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    return {"wall_s": wall, "samples": samples, "lines": _lines(out), "peak_kb": _peak(samples)}


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _peak(samples: list[tuple[int, int]]) -> int:
    return max((rss for _, rss in samples), default=0)


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(1 for _ in file)
    except FileNotFoundError:
        return 0


async def _bare_calls(calls: int, width: int = 64) -> None:
    """The model calls alone: litellm mock responses, `width` at a time."""
    import litellm

    gate = asyncio.Semaphore(width)

    async def one(i: int) -> None:
        async with gate:
            await litellm.acompletion(
                model=MODEL,
                messages=[{"role": "user", "content": f"a t{i}"}],
                mock_response="ok",
                api_key="sk-test",
                max_tokens=20,
            )

    await asyncio.gather(*(one(i) for i in range(calls)))


def test_batch_throughput_against_gather(benchmark: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """10,000 rows: `planfile batch` vs a plain gather of Engine.run vs the bare calls."""
    plan = tmp_path / "four.plan"
    plan.write_text(MODEL_PLAN)
    (tmp_path / "planfile.toml").write_text(CONFIG)
    mock = ["--mock", "ok"]
    one = _batch(tmp_path, plan, _rows(tmp_path / "one.jsonl", 1), mock)
    full = _batch(tmp_path, plan, _rows(tmp_path / "many.jsonl", ROWS), mock)
    assert full["lines"] == ROWS
    batch_us = (full["wall_s"] - one["wall_s"]) / (ROWS - 1) * 1e6

    # The same runs in this process: one engine, configured as the CLI's, one gather.
    from engine import Engine, load_plan
    from engine.config import load_config
    from engine.store.journal import Journal

    monkeypatch.setenv("PLANFILE_HOME", str(tmp_path / "home-gather"))
    config = load_config(str(tmp_path / "planfile.toml"))
    checked = load_plan(MODEL_PLAN)
    engine = Engine(config=config, settings={"mock_response": "ok"}, journal=Journal(), audit=True)

    async def gather() -> float:
        await engine.run(checked, {"topic": "warm-up"})
        start = time.perf_counter()
        results = await asyncio.gather(
            *(engine.run(checked, {"topic": f"t{i}"}) for i in range(ROWS))
        )
        assert all(r.ok for r in results)
        return time.perf_counter() - start

    gather_us = asyncio.run(gather()) / ROWS * 1e6
    engine.close()

    async def bare() -> float:
        await _bare_calls(4)
        start = time.perf_counter()
        await _bare_calls(4 * ROWS)
        return time.perf_counter() - start

    bare_us = asyncio.run(bare()) / ROWS * 1e6
    figures = {
        "rows": ROWS,
        "batch_runs_per_s": round(1e6 / batch_us, 1),
        "gather_runs_per_s": round(1e6 / gather_us, 1),
        "batch_us_per_run": round(batch_us, 1),
        "gather_us_per_run": round(gather_us, 1),
        "bare_calls_us_per_run": round(bare_us, 1),
        "batch_engine_overhead_us_per_run": round(batch_us - bare_us, 1),
        "gather_engine_overhead_us_per_run": round(gather_us - bare_us, 1),
        "batch_over_gather": round(batch_us / gather_us, 3),
    }
    SUMMARY.append(f"batch throughput: {json.dumps(figures)}")
    print(figures)
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(figures)


@pytest.mark.batch_scale
def test_batch_memory_does_not_grow_with_rows_done(benchmark: Any, tmp_path: Path) -> None:
    """100,000 rows: RSS sampled against rows done, and the peak against 10,000 rows."""
    plan = tmp_path / "noops.plan"
    plan.write_text(NOOP_PLAN)
    tools = tmp_path / "noop_tools.py"
    tools.write_text(NOOP_TOOLS)
    extra = ["--tools", str(tools)]
    small = _batch(tmp_path, plan, _rows(tmp_path / "small.jsonl", SCALE // 10), extra, True)
    large = _batch(tmp_path, plan, _rows(tmp_path / "large.jsonl", SCALE), extra, True)
    assert large["lines"] == SCALE
    samples = [s for s in large["samples"] if s[0] > 0]
    early = [rss for done, rss in samples if done <= SCALE * 0.2]
    late = [rss for done, rss in samples if done >= SCALE * 0.8]
    figures = {
        "rows": SCALE,
        "wall_s": round(large["wall_s"], 1),
        "runs_per_s": round(SCALE / large["wall_s"], 1),
        "peak_rss_mb_small": round(small["peak_kb"] / 1024, 1),
        "peak_rss_mb_large": round(large["peak_kb"] / 1024, 1),
        "rss_mb_at_20pct": round(max(early, default=0) / 1024, 1),
        "rss_mb_after_80pct": round(max(late, default=0) / 1024, 1),
        "large_over_small_peak": round(large["peak_kb"] / max(small["peak_kb"], 1), 3),
    }
    SUMMARY.append(f"batch scale: {json.dumps(figures)}")
    print(figures)
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(figures)

"""The planner evaluation on the user's path: `planfile eval-planner` in a fresh process,
the embedded model (nothing configured), on the tuned and the held-out goals separately,
with the llm-only baseline beside it. Slow: minutes of the real 135M model on the CPU.

Each split's figures go to the benchmark's extra_info (and `report.py` prints them); the
full per-goal report is written next to the benchmark JSON as planner_eval_<split>.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.models.local_model import available

ROOT = Path(__file__).resolve().parent.parent
GOALS = ROOT / "benchmarks" / "planner_goals"
# Per goal; a goal past it counts as a failure, and the run goes on.
GOAL_TIMEOUT_S = 300
# The whole command: every goal at its deadline, plus start-up.
COMMAND_TIMEOUT_S = 60 * 60 * 3


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="embedded model not installed")
@pytest.mark.parametrize("split", ["heldout", "tuned"])
def test_planner_eval(benchmark: Any, split: str, tmp_path: Path) -> None:
    report_path = Path(os.environ.get("PLANFILE_EVAL_DIR", tmp_path)) / f"planner_eval_{split}.json"
    command = [
        *(sys.executable, "-m", "engine.cli", "eval-planner", str(GOALS / f"{split}.jsonl")),
        *("--baseline", "llm-only", "--timeout", str(GOAL_TIMEOUT_S), "-o", str(report_path)),
    ]

    def run() -> dict[str, Any]:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            env={**os.environ, "PLANFILE_HOME": str(tmp_path / "home")},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return dict(json.loads(report_path.read_text(encoding="utf-8")))

    report = benchmark.pedantic(run, rounds=1, iterations=1)
    figures = report["splits"][split]
    baseline = report["baseline"]["splits"][split]
    benchmark.extra_info.update(
        {
            "split": split,
            "planner": report["planner"],
            **figures,
            **{f"baseline_{key}": value for key, value in baseline.items()},
        }
    )
    assert figures["goals"] == baseline["goals"] >= 20

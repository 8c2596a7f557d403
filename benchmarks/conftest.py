"""Benchmarks run offline, like the tests."""

import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config):  # type: ignore[no-untyped-def]
    # `-m user_path` runs the CLI end-to-end benchmark alone (benchmarks/test_user_path.py).
    config.addinivalue_line("markers", "user_path: the `planfile run` subprocess benchmark")
    config.addinivalue_line("markers", "batch_scale: the 100,000-row `planfile batch` run")


def pytest_terminal_summary(terminalreporter):  # type: ignore[no-untyped-def]
    # The user-path benchmark's µs/step table (fixtures' output is captured; this is not).
    for name in ("benchmarks.test_user_path", "test_user_path"):
        module = sys.modules.get(name)
        if module is not None:
            for line in module.summary_lines():
                terminalreporter.write_line(line)
            break
    module = sys.modules.get("benchmarks.test_batch") or sys.modules.get("test_batch")
    if module is not None:
        for line in module.summary_lines():
            terminalreporter.write_line(line)

"""The README's promises: its Python examples run, its commands exist, .ci/run matches."""

from __future__ import annotations

import re

import pytest

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_python_examples_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every ```python block in the README executes, in order, from the repository root."""
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {}
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.startswith("succeeded ") and "run_finished" in out


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls exactly the README's test command."""
    commands = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)
    test_command = commands[1].strip()
    assert test_command.endswith("pytest")
    assert test_command in (ROOT / ".ci" / "run").read_text()

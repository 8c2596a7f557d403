"""The audit log: one JSON line per event, phases, replans, and secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.config import Config, ModelSettings
from engine.observe.audit import REDACTED, AuditLog, secrets_from


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_run_writes_the_audit_log(
    planfile_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` writes $PLANFILE_HOME/audit/RUN.jsonl and --audit FILE: plan, steps, the end."""
    plan = tmp_path / "p.plan"
    plan.write_text(
        'step a: float = calculate(expression: "6 * 7")\nstep b: float = calculate(expression: "1 / 0")'
    )
    extra = tmp_path / "audit.jsonl"
    assert main(["run", str(plan), "--json", "--audit", str(extra)]) == 1
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    for path in (planfile_home / "audit" / f"{run_id}.jsonl", extra):
        events = lines(path)
        kinds = [e["event"] for e in events]
        assert kinds[0] == "plan" and kinds[-1] == "run_finished"
        assert {"step_succeeded", "step_failed"} <= set(kinds)
        failed = next(e for e in events if e["event"] == "step_failed")
        assert failed["step"] == "b" and "division by zero" in str(failed["error"])
        assert all(e["phase"] == "execution" and e["run_id"] == run_id for e in events)


def test_secrets_are_redacted(tmp_path: Path) -> None:
    """Configured keys and *_API_KEY variables never reach the file."""
    config = Config(
        models={"m": ModelSettings(api_key="sk-config-secret", api_key_env="MY_PROVIDER_KEY")}
    )
    secrets = secrets_from(
        config,
        {
            "OPENAI_API_KEY": "sk-env-secret-1",
            "MY_PROVIDER_KEY": "pk-named-secret",
            "HOME": "/root",
        },
    )
    with AuditLog([tmp_path / "a.jsonl"], secrets) as log:  # buffered: written on close
        log.write(
            "execution",
            "step_failed",
            error="401 for sk-config-secret, sk-env-secret-1 and pk-named-secret at /root",
        )
    text = (tmp_path / "a.jsonl").read_text()
    assert "secret" not in text.replace("[redacted]", "") and text.count(REDACTED) == 3
    assert "/root" in text


def test_ask_audit_has_planning_and_execution_phases(
    planfile_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ask` logs the planning attempts and cost, then the execution."""
    from .scripted_provider import Reply, registered

    provider = registered()
    provider.reset()
    provider.add(
        "planner",
        Reply(
            {
                "goal": "g",
                "steps": [
                    {
                        "id": "x",
                        "tool": "calculate",
                        "args": {"expression": "2 + 2"},
                        "depends_on": [],
                        "description": "d",
                    }
                ],
                "outputs": ["x"],
            }
        ),
    )
    provider.default["standard"] = Reply("four")
    config = tmp_path / "planfile.toml"
    config.write_text('[tiers]\nplanner = "pftest/planner"\nstandard = "pftest/standard"\n')
    extra = tmp_path / "audit.jsonl"
    assert (
        main(
            [
                "ask",
                "What is 2 + 2?",
                "--no-cache",
                "--json",
                "--config",
                str(config),
                "--audit",
                str(extra),
            ]
        )
        == 0
    )
    phases = [(e["phase"], e["event"]) for e in lines(extra)]
    assert phases[0] == ("planning", "attempt") and ("planning", "cost") in phases
    assert phases[-1] == ("execution", "run_finished")

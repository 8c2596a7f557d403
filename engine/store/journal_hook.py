"""The run journal as a run hook: records each round's steps (and agent steps' inner
calls), the run's end, and approvals.

`Engine(journal=...)` and `Engine(hooks=[JournalHook(journal)])` are the same thing. Per
step the run calls the round's `RunLog.finished`, a bare `deque.append` (no Python
frame): the hook binds it as its `step_final` when the round starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import JournalError
from engine.run.hooks import RunHook, RunView
from engine.run.result import RunResult, StepRecord
from engine.store.journal import Journal, RunLog


class JournalHook(RunHook):
    """Journals every run of the engine it is given to."""

    def __init__(self, journal: Journal):
        self.journal = journal

    def open(self, run: RunView) -> _JournalRun:
        return _JournalRun(self.journal)


class _JournalRun(RunHook):
    """One run's side of the journal: the current round's log."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.log: RunLog | None = None

    def round_started(self, run: RunView, carried: Mapping[str, StepRecord]) -> None:
        def broke(err: JournalError) -> None:
            # Stop: work that could not be recorded would be lost to `resume`.
            run.stop("journal", f"{err}; the run stopped")

        checked = run.checked
        self.log = self.journal.run_started(
            run.run_id,
            checked.plan_json,
            checked.plan.name,
            dict(run.inputs),
            checked.source_map.file if checked.source_map else None,
            run.records,
            broke,
            carried,
        )
        # Each step is queued the moment it is final (a bare deque append), so a killed
        # run keeps it.
        self.step_final = self.log.finished  # type: ignore[method-assign, assignment]
        # An agent step's inner calls go out with the step records (within ~50 ms).
        self.agent_call = self.log.agent_call  # type: ignore[method-assign]

    def step_final(self, step_id: str) -> None:  # rebound per round in round_started
        if self.log is not None:
            self.log.finished(step_id)

    def agent_call(self, step_id: str, call: dict[str, Any]) -> None:  # rebound per round
        if self.log is not None:
            self.log.agent_call(step_id, call)

    def round_ended(self, run: RunView) -> None:
        if self.log is not None:
            self.journal.detach(self.log)

    def run_finished(self, run: RunView, result: RunResult) -> None:
        try:
            self.journal.run_finished(result)
        except JournalError as err:
            # The result is still returned (and printed): the run's work is not lost,
            # only its record. Records that could not be written stay queued.
            message = f"the run's end could not be journaled: {err}"
            result.error = result.error or message
            result.warnings.append(message)
            run.warn(f"warning: {message}")

    def approval(self, run: RunView, step_id: str, arguments: dict[str, Any]) -> bool | None:
        """A decision recorded with `planfile approve/reject`, if any."""
        recorded = self.journal.decision(run.run_id, step_id)
        return None if recorded is None else recorded == "approved"

    def approval_decided(self, run: RunView, step_id: str, approved: bool) -> None:
        self.journal.decide(run.run_id, step_id, "approved" if approved else "rejected")

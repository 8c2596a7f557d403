"""The engine's phases of the error tree: one `PlanfileError` subclass per phase.

The root (`PlanfileError`, `ExitCode`), the plan and input phases (`PlanError`,
`InputError`) and `ToolError` (a tool refused its job; `stdlib_tools` sits below
`engine`) live in `dsl.errors`, because `dsl` imports nothing from `engine`; they are
re-exported here so that `engine.errors` names the whole tree. Concrete errors
stay in the module that raises them and subclass a phase here, for example
`engine.store.journal.JournalLocked(JournalError)` or
`engine.models.gateway.ModelCallError(ProviderError)`. Tool loading
(`stdlib_tools.registry.ToolLoadError`) subclasses the root directly, since
`stdlib_tools` sits below `engine`.

Exit codes (what the CLI returns for each phase) are on the classes: see `ExitCode`.
The table of classes and exit codes is in specs/cli.md.
"""

from __future__ import annotations

from dsl.errors import ExitCode, InputError, Location, PlanError, PlanfileError, ToolError

__all__ = [
    "ApprovalError",
    "BudgetExceeded",
    "ConfigError",
    "ExitCode",
    "InputError",
    "JournalError",
    "Location",
    "PlanError",
    "PlanfileError",
    "ProviderError",
    "RunError",
    "RunSetupError",
    "StoreError",
    "ToolError",
    "UsageError",
]


class UsageError(PlanfileError):
    """The command line is wrong: a malformed flag value, a missing argument."""

    phase = "command line"


class ConfigError(PlanfileError, ValueError):
    """The config file is missing, malformed, or has unknown or mistyped keys."""

    phase = "configuration"


class RunSetupError(PlanfileError, ValueError):
    """A run could not start: bad engine options, an unknown replan policy, no journal."""

    phase = "run set-up"


class ProviderError(PlanfileError):
    """A model or its provider could not do the job (auth, unknown model, bad replies)."""

    phase = "provider"
    exit_code = ExitCode.FAILED


class BudgetExceeded(PlanfileError):
    """A call could cost more than what remains of a budget; it was not made."""

    phase = "budget"
    exit_code = ExitCode.BUDGET

    def __init__(self, scope: str, needed: float, remaining: float, model: str):
        self.scope = scope
        self.needed = needed
        self.remaining = remaining
        self.model = model
        super().__init__(
            f"{scope} budget exhausted: a call to `{model}` could cost ${needed:.6f}, "
            f"${max(remaining, 0):.6f} remains",
            hint="raise the budget (--budget USD, or `[budget]` in planfile.toml)",
        )


class StoreError(PlanfileError, RuntimeError):
    """The journal or another store could not be read or written (path in the message)."""

    phase = "store"


class JournalError(StoreError):
    """The journal is unreadable, corrupt, from a newer planfile, or has no such run."""


class ApprovalError(PlanfileError):
    """An approval decision names a step or run that does not wait for one."""

    phase = "approvals"


class RunError(PlanfileError):
    """A step failed during a run; recorded on the step, it fails the run (exit 1)."""

    phase = "run"
    exit_code = ExitCode.FAILED

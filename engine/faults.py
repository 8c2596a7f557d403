"""One fault classifier for tool calls and model calls: is an exception worth a retry?

Both the step executor (a tool raised) and the model gateway (litellm raised) ask
`classify(err)`; they differ only in what they do with an `UNKNOWN` fault: a step has
an explicit retry budget and retries it, a provider call retries only `TRANSIENT`.

Provider exceptions are recognised by class name (anywhere in the MRO), not by
import: litellm and httpx are heavy to import, may be absent, and their classes move
between versions, while these names have stayed stable.
"""

from __future__ import annotations

from enum import StrEnum

from dsl.errors import ExitCode, PlanfileError


class Fault(StrEnum):
    """What kind of failure an exception is."""

    TRANSIENT = "transient"  # timeouts, lost connections, rate limits, 5xx: retry
    AUTH = "auth"  # the provider rejected the credentials: fix the key
    UNKNOWN_MODEL = "unknown_model"  # no such model or provider: fix the model string
    PERMANENT = "permanent"  # bad arguments, wrong types, refused: a retry cannot help
    UNKNOWN = "unknown"  # anything else (a tool's own RuntimeError, an OSError)


class TransientError(PlanfileError):
    """Raise from a tool to ask for a retry (a transient fault, e.g. a busy service)."""

    phase = "run"
    exit_code = ExitCode.FAILED
    transient = True


_AUTH_NAMES = frozenset({"AuthenticationError", "PermissionDeniedError"})
_TRANSIENT_NAMES = frozenset(
    {
        # litellm / openai
        "RateLimitError",
        "ServiceUnavailableError",
        "InternalServerError",
        "APIConnectionError",
        "Timeout",
        "APITimeoutError",
        "BadGatewayError",
        # httpx
        "TransportError",
        "ConnectError",
        "ReadTimeout",
    }
)
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    ValueError,  # includes pydantic's ValidationError and json's JSONDecodeError
    TypeError,
    LookupError,
    ArithmeticError,
    PermissionError,
    FileNotFoundError,
    IsADirectoryError,
    NotImplementedError,
)


def classify(err: BaseException) -> Fault:
    """The fault an exception stands for (see `Fault`)."""
    if isinstance(err, PlanfileError):
        # planfile's own errors say so; e.g. a model's unusable reply is transient,
        # since the retry escalates to a stronger tier.
        return Fault.TRANSIENT if err.transient else Fault.PERMANENT
    names = {cls.__name__ for cls in type(err).__mro__}
    if names & _AUTH_NAMES:
        return Fault.AUTH
    if "NotFoundError" in names or (
        "BadRequestError" in names and "LLM Provider NOT provided" in str(err)
    ):
        return Fault.UNKNOWN_MODEL
    if names & _TRANSIENT_NAMES or isinstance(err, TimeoutError | ConnectionError):
        return Fault.TRANSIENT
    status = getattr(err, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return Fault.TRANSIENT
    if "BadRequestError" in names or isinstance(err, _PERMANENT_TYPES):
        return Fault.PERMANENT
    return Fault.UNKNOWN


def worth_retrying(err: BaseException) -> bool:
    """For a step's tool call: retry transient and unknown faults, never permanent ones."""
    return classify(err) in (Fault.TRANSIENT, Fault.UNKNOWN)

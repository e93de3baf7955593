"""Error classes: the one vocabulary for failures, shared by SDK, coordinator and agent."""

from enum import StrEnum


class ErrorClass(StrEnum):
    # Refused at submit: the job can never render.
    INVALID_JOB = "INVALID_JOB"
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    # The template itself is broken: retrying will not help.
    TEMPLATE_LOAD_ERROR = "TEMPLATE_LOAD_ERROR"
    TEMPLATE_SCRIPT_ERROR = "TEMPLATE_SCRIPT_ERROR"
    TEMPLATE_READY_TIMEOUT = "TEMPLATE_READY_TIMEOUT"
    # The template tried to leave its page: a popup, window.open, a navigation away.
    TEMPLATE_FORBIDDEN = "TEMPLATE_FORBIDDEN"
    # Its renderer grew past the agent's page memory limit and was killed.
    TEMPLATE_RESOURCE_LIMIT = "TEMPLATE_RESOURCE_LIMIT"
    # A frame never returned while its renderer kept busy: an endless loop in the template.
    TEMPLATE_FRAME_TIMEOUT = "TEMPLATE_FRAME_TIMEOUT"
    # The template relies on something the agent cannot drive (e.g. an animation runtime).
    TEMPLATE_UNSUPPORTED = "TEMPLATE_UNSUPPORTED"
    # The machine or the farm failed: another attempt may succeed.
    CAPTURE_TIMEOUT = "CAPTURE_TIMEOUT"
    BROWSER_CRASHED = "BROWSER_CRASHED"
    ENCODE_ERROR = "ENCODE_ERROR"
    OUTPUT_ERROR = "OUTPUT_ERROR"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    AGENT_LOST = "AGENT_LOST"
    # Handed back by draining agents (spot interruptions, scale-in) more often than the
    # interruption budget allows: the fleet's trouble, not the job's, counted apart from attempts.
    INTERRUPTED = "INTERRUPTED"
    INTERNAL = "INTERNAL"


RETRYABLE: frozenset[ErrorClass] = frozenset(
    {
        ErrorClass.CAPTURE_TIMEOUT,
        ErrorClass.BROWSER_CRASHED,
        ErrorClass.ENCODE_ERROR,
        ErrorClass.OUTPUT_ERROR,
        ErrorClass.LEASE_EXPIRED,
        ErrorClass.AGENT_LOST,
        ErrorClass.INTERNAL,
    }
)


class FramefleetError(Exception):
    """A failure with an error class; ``str()`` is the human message."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE

    def __str__(self) -> str:
        return f"{self.error_class}: {self.args[0]}"

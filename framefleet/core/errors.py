"""Error classes: the one vocabulary for failures, shared by SDK, coordinator and agent."""

from enum import StrEnum
from typing import cast

from framefleet.v1 import framefleet_pb2 as pb


class ErrorClass(StrEnum):
    # Each class is also ERROR_CLASS_<name> in the proto's ErrorClass enum, which is how it
    # travels (tests/test_error_classes.py fails until both have it).
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


# --- on the wire: the proto's ErrorClass enum (ERROR_CLASS_ + the name) ----------------------

WIRE_PREFIX = "ERROR_CLASS_"


def to_wire(error_class: ErrorClass | str | None) -> pb.ErrorClass:
    """The enum for a class (or a stored class name); UNSPECIFIED for none."""
    if not error_class:
        return pb.ERROR_CLASS_UNSPECIFIED
    name = error_class if error_class in ErrorClass.__members__ else ErrorClass.INTERNAL
    return cast(pb.ErrorClass, pb.ErrorClass.Value(WIRE_PREFIX + name))


def from_wire(value: int, name: str = "") -> ErrorClass | None:
    """The class of a wire message: its enum, else (from a peer that predates the enum) its
    ``error_class`` name; None when neither is set. A class this build does not know is
    INTERNAL."""
    if value:
        wire = pb.ErrorClass.Name(value) if value in pb.ErrorClass.values() else ""
        return ErrorClass.__members__.get(wire.removeprefix(WIRE_PREFIX), ErrorClass.INTERNAL)
    if name:
        return ErrorClass.__members__.get(name, ErrorClass.INTERNAL)
    return None

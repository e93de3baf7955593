"""Every Assign is hostile until checked, even over mutual TLS: a coordinator (or something
posing as one) may send anything. Its ids, keys, URLs, frame range and counts are checked with
limits before the agent uses any of them; a bad one fails that job with a class, never the
agent. Where its output may go is outputs.confine's rule (the agent's --output-root)."""

from __future__ import annotations

import re

from framefleet import outputs
from framefleet.core import chunks, jobspec, sources
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs.confine import confined, place
from framefleet.v1 import framefleet_pb2 as pb

# A job id names the job's chunk objects (outputs beside its output): a plain name, no dots.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_KEY = 256  # source key, content key, isolation group: hashes and ids, far shorter
MAX_TRACE_ENTRIES, MAX_TRACE_CHARS = 8, 512


def _invalid(message: str) -> FramefleetError:
    return FramefleetError(ErrorClass.INVALID_JOB, f"assignment refused: {message}")


def job_id_error(job_id: str) -> FramefleetError | None:
    if JOB_ID.fullmatch(job_id):
        return None
    message = f"job id {job_id[:80]!r} is not a plain name (it names the job's chunk objects)"
    return FramefleetError(ErrorClass.OUTPUT_ERROR, message)


def check(assign: pb.Assign, roots: list[str]) -> None:
    """Raises FramefleetError (OUTPUT_ERROR for where the output goes, INVALID_JOB for the
    rest) unless ``assign`` is within limits; the spec is checked as at submit."""
    error = job_id_error(assign.lease.job_id)
    if error is not None:
        raise error
    for name in ("source_key", "content_key", "isolation_group"):
        if len(getattr(assign, name)) > MAX_KEY:
            raise _invalid(f"{name} is longer than {MAX_KEY} characters")
    trace = assign.trace_context
    if len(trace) > MAX_TRACE_ENTRIES or any(
        len(k) + len(v) > MAX_TRACE_CHARS for k, v in trace.items()
    ):
        raise _invalid("trace context too large")
    with confined(roots):
        place(assign.output_url)  # OUTPUT_ERROR: not normalised, or outside the roots
    if not outputs.supports(assign.output_url):
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, "no sink for the output URL's scheme")
    if len(assign.chunk_urls) > chunks.MAX_CHUNKS:
        raise _invalid(f"{len(assign.chunk_urls)} chunks: at most {chunks.MAX_CHUNKS}")
    if assign.chunk_urls:
        if assign.first_frame or assign.end_frame:
            raise _invalid("an assembly renders no frames")
        return  # an assembly: its spec is not rendered
    if assign.end_frame and not assign.first_frame < assign.end_frame <= jobspec.MAX_FRAMES:
        raise _invalid(f"frames {assign.first_frame}..{assign.end_frame} are not a range")
    if assign.first_frame and not assign.end_frame:
        raise _invalid("a chunk's range has no end")
    # The submit's checks of what the agent renders (not of its name: the coordinator's).
    spec = assign.spec
    jobspec.check_limits(spec)
    sources.source_for(spec).validate(spec, variants=False)
    chunks.check(spec)
    output = jobspec.resolve_output(spec.output, open_length=jobspec.open_length(spec))
    if output.frames and assign.end_frame > output.frames:
        raise _invalid(f"frames up to {assign.end_frame} in a {output.frames}-frame video")

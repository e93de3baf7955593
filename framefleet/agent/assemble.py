"""The assembly of a chunked render: an Assign with ``chunk_urls`` renders nothing; its output
becomes the chunks joined in order, by the sink (S3 copies parts server-side; a local file is
concatenated), and then the chunk objects are deleted. The bytes never pass through the
coordinator. Redone after a lost agent, it gives the same output."""

from __future__ import annotations

import logging
import time

from framefleet import outputs
from framefleet.agent.assign_check import job_id_error
from framefleet.agent.render import RenderResult
from framefleet.core import chunks
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.telemetry import tracer
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.agent")


async def assemble(assign: pb.Assign) -> RenderResult:
    """Joins the job's chunks into its output; returns the output's size (frames 0: the chunks
    counted theirs)."""
    # The chunk names are this agent's own derivation from the (checked) job id and output,
    # never the coordinator's list: only this job's own chunks are read and deleted, however
    # the Assign was written. The list only says how many there are, and must agree.
    error = job_id_error(assign.lease.job_id)
    if error is not None:
        raise error
    count = len(assign.chunk_urls)
    if not 0 < count <= chunks.MAX_CHUNKS:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"{count} chunks to assemble")
    parts = [chunks.chunk_url(assign.output_url, assign.lease.job_id, i) for i in range(count)]
    if list(assign.chunk_urls) != parts:
        message = f"the chunks to assemble are not job {assign.lease.job_id}'s chunks of its output"
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, message)
    started = time.perf_counter()
    with tracer.start_as_current_span("assemble_chunks") as span:
        span.set_attribute("framefleet.chunks", len(parts))
        size = await outputs.assemble(parts, assign.output_url)
        span.set_attribute("framefleet.output.bytes", size)
    joined = time.perf_counter()
    for url in parts:
        try:
            await outputs.delete(url)
        except FramefleetError:
            # The output is complete; the coordinator deletes leftovers when the job ends.
            log.warning("deleting an assembled chunk failed", extra={"url": url})
    done = time.perf_counter()
    stages = {"assemble": joined - started, "delete": done - joined}
    return RenderResult(assign.output_url, size, 0, done - started, stages)

"""The agent's job executor: runs each Assign as a task on a free slot, reports progress and the
outcome (Completed, Failed, or Released when handed back), and keeps each outcome until the
coordinator acknowledges it. A Cancel (client cancel, stale lease, expiry) discards the job's
work: its task is cancelled, which aborts its upload.

It talks to the coordinator only through ``send`` (the stream link's outbox) and renders through
a Renderer, so tests drive it with fakes of both."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.trace import Status, StatusCode

from framefleet.agent import assign_check, metrics
from framefleet.agent.assemble import assemble
from framefleet.agent.limits import RenderLimits
from framefleet.agent.page_pool import PagePool
from framefleet.agent.render import ProgressCallback, RenderResult, render
from framefleet.agent.run_to_end import run_to_end
from framefleet.core import sources, telemetry
from framefleet.core.errors import ErrorClass, FramefleetError, to_wire
from framefleet.core.source_cache import HeldSources, source_size
from framefleet.outputs.confine import confine_task
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.agent")

PROGRESS_INTERVAL = 0.25  # seconds between progress messages per job


class Renderer(Protocol):
    async def __call__(self, assign: pb.Assign, on_progress: ProgressCallback) -> RenderResult:
        """Renders the job (its spec complete with its source); raises FramefleetError."""
        ...


class PageRenderer:
    """Renders on a page from the pool, one page per slot."""

    def __init__(self, pages: PagePool, limits: RenderLimits) -> None:
        self.pages = pages
        self.limits = limits

    async def __call__(self, assign: pb.Assign, on_progress: ProgressCallback) -> RenderResult:
        page = await self.pages.acquire(assign.isolation_group)
        metrics.SLOTS_BUSY.inc()
        try:
            result = await render(assign, page, self.limits, on_progress)
        except BaseException:
            metrics.SLOTS_BUSY.dec()
            await self.pages.release(page, assign.isolation_group)
            raise
        metrics.SLOTS_BUSY.dec()
        # The output is committed: a Cancel now must not lose the result on the way out.
        await run_to_end(self.pages.release(page, assign.isolation_group))
        return result


@dataclass
class LeasedJob:
    lease: pb.LeaseRef
    task: asyncio.Task[None] | None = None
    # The Completed/Failed/Released message, kept until the coordinator acknowledges it.
    result: pb.ConnectRequest | None = None
    last_progress: float = 0.0


def failed(lease: pb.LeaseRef, error: FramefleetError) -> pb.ConnectRequest:
    message = pb.Failed(
        lease=lease,
        error_class=error.error_class,
        error=to_wire(error.error_class),
        message=str(error.args[0]),
        retryable=error.retryable,
    )
    return pb.ConnectRequest(failed=message)


class JobExecutor:
    def __init__(
        self,
        renderer: Renderer | None,
        send: Callable[[pb.ConnectRequest], None],
        on_drain: Callable[[], None],
        agent_id: str = "",
        output_roots: list[str] | None = None,
        assembler: Callable[[pb.Assign], Awaitable[RenderResult]] = assemble,
    ) -> None:
        """``renderer`` None completes every job at once without rendering (the noop mode that
        measures the coordinator alone); ``on_drain`` is called when the coordinator asks the
        agent to drain; ``output_roots`` are where it may write (empty: anywhere);
        ``assembler`` joins a chunked render's chunks (an Assign with ``chunk_urls``)."""
        self._renderer = renderer
        self._send = send
        self._on_drain = on_drain
        self._agent_id = agent_id
        self._output_roots = output_roots or []
        self._assembler = assembler
        self.jobs: dict[str, LeasedJob] = {}
        self.draining = False
        # Job sources by key, as the coordinator sent them on this stream, and the ledger both
        # ends keep of them (framefleet/core/source_cache.py): bounded, the oldest dropped.
        self._sources: dict[str, pb.JobSpec] = {}
        self._held = HeldSources()
        self._acked = asyncio.Event()

    # --- what the stream link asks --------------------------------------------------------

    def leases(self) -> list[pb.LeaseRef]:
        return [job.lease for job in self.jobs.values()]

    def unacknowledged(self) -> list[pb.ConnectRequest]:
        return [job.result for job in self.jobs.values() if job.result is not None]

    def stream_opened(self) -> None:
        """A new stream's coordinator knows of no source sent before: start both ledgers empty."""
        self._sources.clear()
        self._held = HeldSources()

    def handle(self, message: pb.ConnectResponse, bundled: bool = False) -> None:
        kind = message.WhichOneof("message")
        if kind == "bundle":
            if bundled:  # the coordinator bundles messages, never bundles
                log.warning("ignored a bundle inside a bundle")
                return
            for inner in message.bundle.messages:
                self.handle(inner, bundled=True)
        elif kind == "assign":
            self.start(message.assign)
        elif kind == "cancel":
            self.drop(message.cancel.lease, message.cancel.reason)
        elif kind == "ack":
            self.acknowledged(message.ack.lease)
        elif kind == "drain":
            self._on_drain()

    # --- jobs ------------------------------------------------------------------------------

    def start(self, assign: pb.Assign) -> None:
        job = LeasedJob(lease=assign.lease)
        try:
            self._start(job, assign)
        except Exception as e:  # whatever an Assign holds, it fails its job, not the agent
            log.exception("assignment crashed", extra={"job_id": assign.lease.job_id[:80]})
            error = FramefleetError(ErrorClass.INTERNAL, f"assignment refused: {e!r}"[:500])
            self._finish(job, failed(assign.lease, error))

    def _start(self, job: LeasedJob, assign: pb.Assign) -> None:
        self.jobs[assign.lease.job_id] = job
        # The coordinator sends a source once per stream while this agent holds it; later jobs
        # name it by key. Recorded before anything can refuse the job: the ledgers must agree.
        if assign.spec.WhichOneof(sources.ONEOF) is not None:
            source = sources.source_only(assign.spec)
            self._sources[assign.source_key] = source
            for dropped in self._held.add(assign.source_key, source_size(source)):
                del self._sources[dropped]
        elif self._held.use(assign.source_key):
            assign.spec.MergeFrom(self._sources[assign.source_key])
        else:
            message = f"source {assign.source_key} was never sent to this agent"
            self._finish(job, failed(assign.lease, FramefleetError(ErrorClass.INTERNAL, message)))
            return
        if self.draining:
            released = pb.Released(lease=assign.lease, reason="agent draining")
            self._finish(job, pb.ConnectRequest(released=released))
            return
        try:
            assign_check.check(assign, self._output_roots)
        except FramefleetError as e:
            # A coordinator (or something posing as one) sending what this agent must not do:
            # that job fails with its class, the agent goes on.
            log.warning("refused an assignment", extra={"job_id": assign.lease.job_id[:80],
                        "error_class": e.error_class, "error": str(e.args[0])})  # fmt: skip
            self._finish(job, failed(assign.lease, e))
            return
        if self._renderer is None:
            completed = pb.Completed(lease=assign.lease, output_url=assign.output_url)
            self._finish(job, pb.ConnectRequest(completed=completed))
            return
        job.task = asyncio.create_task(self._run(job, assign, self._renderer))

    def drop(self, lease: pb.LeaseRef, reason: str) -> None:
        """The lease is gone (cancelled, expired or stale): stop and discard the work."""
        job = self.jobs.get(lease.job_id)
        if job is None or job.lease.fencing_token != lease.fencing_token:
            return
        del self.jobs[lease.job_id]
        if job.task is not None:
            job.task.cancel()
        log.info("job dropped", extra={"job_id": lease.job_id, "reason": reason})

    def acknowledged(self, lease: pb.LeaseRef) -> None:
        job = self.jobs.get(lease.job_id)
        if job is not None and job.lease == lease and job.result is not None:
            del self.jobs[lease.job_id]
            self._acked.set()

    def _finish(self, job: LeasedJob, result: pb.ConnectRequest) -> None:
        job.result = result
        self._send(result)

    # --- draining --------------------------------------------------------------------------

    async def hand_back(self, why: str, grace: float) -> None:
        """Takes no new work; gives running jobs ``grace`` seconds, then releases the rest."""
        self.draining = True
        running = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        if running:
            await asyncio.wait(running, timeout=grace)
        for job in list(self.jobs.values()):
            if job.task is not None and not job.task.done():
                job.task.cancel()
                reason = f"agent draining ({why}): grace period over"
                released = pb.Released(lease=job.lease, reason=reason)
                self._finish(job, pb.ConnectRequest(released=released))

    async def all_acknowledged(self) -> None:
        """Returns once the coordinator has acknowledged every result."""
        while self.unacknowledged():
            self._acked.clear()
            await self._acked.wait()

    def cancel_all(self) -> None:
        for job in self.jobs.values():
            if job.task is not None:
                job.task.cancel()

    # --- one job ---------------------------------------------------------------------------

    async def _run(self, job: LeasedJob, assign: pb.Assign, renderer: Renderer) -> None:
        lease = assign.lease
        # Every path this job's task (and what it starts) touches stays under the roots.
        confine_task(self._output_roots)

        def progress(done: int, total: int, fps: float, upload_id: str) -> None:
            now = time.monotonic()
            if now - job.last_progress >= PROGRESS_INTERVAL:
                job.last_progress = now
                message = pb.Progress(
                    lease=lease, frames_done=done, frames_total=total, fps=fps, upload_id=upload_id
                )
                self._send(pb.ConnectRequest(progress=message))

        attributes: dict[str, str | int] = {
            "framefleet.job.id": lease.job_id,
            "framefleet.job.attempt": assign.attempt,
            "framefleet.job.content_key": assign.content_key,
            "framefleet.agent.id": self._agent_id,
        }
        parent = telemetry.extract(assign.trace_context)
        with telemetry.tracer.start_as_current_span(
            "render", context=parent, attributes=attributes
        ) as span:
            try:
                if assign.first_frame or assign.end_frame:  # one chunk of a split job
                    span.set_attribute("framefleet.chunk.index", assign.chunk_index)
                if assign.chunk_urls:  # a chunked render's assembly: nothing to draw
                    span.set_attribute("framefleet.chunk.assembly", True)
                    result = await self._assembler(assign)
                else:
                    result = await renderer(assign, progress)
            except Exception as e:
                error = e if isinstance(e, FramefleetError) else None
                if error is None:
                    log.exception("render crashed", extra={"job_id": lease.job_id})
                    error = FramefleetError(ErrorClass.INTERNAL, repr(e))
                log.warning(
                    "render failed",
                    extra={"job_id": lease.job_id, "error_class": error.error_class,
                           "error": str(error.args[0])},
                )  # fmt: skip
                metrics.RENDERS.labels(error.error_class).inc()
                span.set_attribute("framefleet.error.class", error.error_class)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                self._finish(job, failed(lease, error))
            else:
                stages = {k: round(v, 3) for k, v in result.stages.items()}
                log.info(
                    "render finished",
                    extra={"job_id": lease.job_id, "frames": result.frames, "stages": stages,
                           "frames_reused": result.frames_reused,
                           "bytes": result.output_bytes, "seconds": round(result.seconds, 3)},
                )  # fmt: skip
                metrics.RENDERS.labels("succeeded").inc()
                metrics.FRAMES.inc(result.frames)
                metrics.BYTES_WRITTEN.inc(result.output_bytes)
                metrics.RENDER_SECONDS.observe(result.seconds)
                completed = pb.Completed(
                    lease=lease,
                    output_url=result.output_url,
                    output_bytes=result.output_bytes,
                    frames=result.frames,
                    render_seconds=result.seconds,
                )
                self._finish(job, pb.ConnectRequest(completed=completed))

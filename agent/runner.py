"""The agent process: one bidirectional stream to the coordinator, a page per slot, and a task
per leased job.

The coordinator sets the heartbeat cadence; every heartbeat states the full set of leases held.
Results are kept until the coordinator acknowledges them and are sent again after a reconnect.
A Cancel (client cancel, stale lease, expiry) discards the job's work: its upload is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field

import grpc.aio as aio
from opentelemetry.trace import Status, StatusCode

from agent import metrics
from agent.browser import CHROMIUM
from agent.page_pool import PagePool
from agent.render import RenderLimits, render
from agent.spot_notice import DRAIN_GRACE, POLL_INTERVAL, watch_spot_notice
from framefleet.core import sources, telemetry
from framefleet.core.backoff import Backoff
from framefleet.core.channel import Tls, open_channel
from framefleet.core.errors import ErrorClass, FramefleetError, to_wire
from framefleet.core.outbox import take_ready
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc
from outputs.roots import within

log = logging.getLogger("framefleet.agent")

PROGRESS_INTERVAL = 0.25  # seconds between progress messages per job
RECONNECT = Backoff(base=0.4, cap=5.0)
ACK_WAIT = 5.0  # seconds a draining agent waits for its last results to be acknowledged


def _bundle(messages: list[pb.ConnectRequest]) -> pb.ConnectRequest:
    return pb.ConnectRequest(bundle=pb.RequestBundle(messages=messages))


@dataclass
class AgentConfig:
    coordinator: str
    agent_id: str
    slots: int
    labels: dict[str, str] = field(default_factory=dict)
    limits: RenderLimits = field(default_factory=RenderLimits)
    chromium: str = CHROMIUM
    # On SIGTERM: how long running jobs may take before they are handed back.
    drain_grace: float = DRAIN_GRACE
    # Poll this spot instance-action URL and drain when an interruption is announced.
    spot_notice_url: str | None = None
    spot_poll_interval: float = POLL_INTERVAL
    # Recycle a page after this many renders, or when its JavaScript heap passes this bound.
    page_renders: int = 500
    page_heap_bytes: int = 512 * 1024 * 1024
    # Kill a renderer whose resident memory passes this (0: no limit); the job fails as
    # TEMPLATE_RESOURCE_LIMIT.
    page_memory_bytes: int = 2048 * 1024 * 1024
    # Chromium's sandbox (off anyway as root): off only where the kernel has no unprivileged
    # user namespaces.
    chromium_sandbox: bool = True
    # Where this agent may write (URL or directory prefixes); empty: wherever it is told.
    output_roots: list[str] = field(default_factory=list)
    # TLS to the coordinator; its certificate (cert, key) is the agent's identity.
    tls: Tls | None = None
    # Test and benchmark mode: complete every job at once without rendering, to measure the
    # coordinator alone.
    noop: bool = False


@dataclass
class LeasedJob:
    lease: pb.LeaseRef
    task: asyncio.Task[None] | None = None
    # The Completed/Failed/Released message, kept until the coordinator acknowledges it.
    result: pb.ConnectRequest | None = None
    last_progress: float = 0.0


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.jobs: dict[str, LeasedJob] = {}
        self.draining = False
        self.pages = PagePool(
            config.chromium,
            config.slots,
            config.page_renders,
            config.page_heap_bytes,
            config.page_memory_bytes,
            config.chromium_sandbox,
        )
        # Job sources by key, as the coordinator sent them (kept for the process's life).
        self._sources: dict[str, pb.JobSpec] = {}
        self._outbox: asyncio.Queue[pb.ConnectRequest] | None = None
        self._done = asyncio.Event()
        self._acked = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    async def ready(self) -> str | None:
        """None while connected to the coordinator with a browser up, else why not."""
        if self.draining:
            return "draining"
        if self._outbox is None:
            return f"not connected to {self.config.coordinator}"
        if not self.config.noop and not self.pages.browser_up():
            return "browser not running"
        return None

    async def run(self) -> None:
        if not self.config.output_roots:
            log.warning("no --output-root: this agent writes wherever its coordinator says")
        try:
            if not self.config.noop:
                await self.pages.start()
            background = [asyncio.create_task(self._stay_connected())]
            if self.config.spot_notice_url:
                background.append(asyncio.create_task(self._watch_spot_notice()))
            await self._done.wait()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        finally:
            for job in self.jobs.values():
                if job.task is not None:
                    job.task.cancel()
            await self.pages.close()

    async def _watch_spot_notice(self) -> None:
        assert self.config.spot_notice_url is not None

        async def interrupted(action: str) -> None:
            await self.drain(f"spot interruption ({action})")

        await watch_spot_notice(
            self.config.spot_notice_url, self.config.spot_poll_interval, interrupted
        )

    async def drain(self, why: str = "SIGTERM") -> None:
        """Take no new work, give running jobs the grace period, hand back the rest, exit."""
        if self.draining:
            return
        self.draining = True
        log.info("draining", extra={"why": why, "jobs": len(self.jobs)})
        self._send(self._heartbeat())
        running = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        if running:
            await asyncio.wait(running, timeout=self.config.drain_grace)
        for job in list(self.jobs.values()):
            if job.task is not None and not job.task.done():
                job.task.cancel()
                reason = f"agent draining ({why}): grace period over"
                self._finish(
                    job, pb.ConnectRequest(released=pb.Released(lease=job.lease, reason=reason))
                )
        # Wait briefly for the coordinator to acknowledge what we report.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_WAIT):
                while any(j.result is not None for j in self.jobs.values()):
                    self._acked.clear()
                    await self._acked.wait()
        self._done.set()

    # --- the stream ------------------------------------------------------------------------

    async def _stay_connected(self) -> None:
        failures = 0
        while True:
            try:
                async with open_channel(self.config.coordinator, self.config.tls) as channel:
                    if await self._session(pb_grpc.AgentServiceStub(channel)):
                        failures = 0
            except aio.AioRpcError as e:
                log.warning("coordinator stream ended", extra={"code": e.code().name})
            except Exception:
                log.exception("coordinator stream failed")
            failures += 1
            await asyncio.sleep(RECONNECT.delay(failures))

    async def _session(self, stub: pb_grpc.AgentServiceStub) -> bool:
        """One stream; returns True if the coordinator welcomed us."""
        call = stub.Connect()
        hello = pb.Hello(
            agent_id=self.config.agent_id,
            slots=self.config.slots,
            labels=self.config.labels,
            leases=[job.lease for job in self.jobs.values()],
        )
        await call.write(pb.ConnectRequest(hello=hello))
        first = await call.read()
        if first is aio.EOF or first.WhichOneof("message") != "welcome":
            return False
        interval = first.welcome.heartbeat_interval_ms / 1000
        outbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        self._outbox = outbox
        for job in self.jobs.values():
            if job.result is not None:
                outbox.put_nowait(job.result)
        log.info(
            "connected",
            extra={"coordinator": self.config.coordinator, "epoch": first.welcome.session_epoch},
        )

        async def write() -> None:
            while True:
                await call.write(await take_ready(outbox, _bundle))

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(interval)
                outbox.put_nowait(self._heartbeat())

        helpers = [asyncio.create_task(write()), asyncio.create_task(heartbeat())]
        try:
            while True:
                message = await call.read()
                if message is aio.EOF:
                    return True
                self._handle(message)
        finally:
            self._outbox = None
            for task in helpers:
                task.cancel()
            call.cancel()

    def _send(self, message: pb.ConnectRequest) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(message)

    def _heartbeat(self) -> pb.ConnectRequest:
        leases = [job.lease for job in self.jobs.values()]
        return pb.ConnectRequest(heartbeat=pb.Heartbeat(leases=leases, draining=self.draining))

    def _handle(self, message: pb.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "bundle":
            for inner in message.bundle.messages:
                self._handle(inner)
        elif kind == "assign":
            self._start(message.assign)
        elif kind == "cancel":
            self._drop(message.cancel.lease, message.cancel.reason)
        elif kind == "ack":
            job = self.jobs.get(message.ack.lease.job_id)
            if job is not None and job.lease == message.ack.lease and job.result is not None:
                del self.jobs[job.lease.job_id]
                self._acked.set()
        elif kind == "drain":
            asyncio.get_running_loop().create_task(self.drain())

    # --- jobs ------------------------------------------------------------------------------

    def _start(self, assign: pb.Assign) -> None:
        job = LeasedJob(lease=assign.lease)
        self.jobs[assign.lease.job_id] = job
        if self.draining:
            released = pb.Released(lease=assign.lease, reason="agent draining")
            self._finish(job, pb.ConnectRequest(released=released))
            return
        # The coordinator sends each source once per stream; later jobs name it by key.
        if assign.spec.WhichOneof(sources.ONEOF) is not None:
            self._sources[assign.source_key] = sources.source_only(assign.spec)
        elif assign.source_key in self._sources:
            assign.spec.MergeFrom(self._sources[assign.source_key])
        else:
            failed = pb.Failed(
                lease=assign.lease,
                error_class=ErrorClass.INTERNAL,
                error=to_wire(ErrorClass.INTERNAL),
                message=f"source {assign.source_key} was never sent to this agent",
                retryable=True,
            )
            self._finish(job, pb.ConnectRequest(failed=failed))
            return
        roots = self.config.output_roots
        if roots and not within(assign.output_url, roots):
            # A coordinator (or something posing as one) aiming this agent at a file.
            log.warning("refused an output outside --output-root", extra={"url": assign.output_url})
            failed = pb.Failed(
                lease=assign.lease,
                error_class=ErrorClass.OUTPUT_ERROR,
                message=f"{assign.output_url} is outside this agent's --output-root",
            )
            self._finish(job, pb.ConnectRequest(failed=failed))
            return
        if self.config.noop:
            completed = pb.Completed(lease=assign.lease, output_url=assign.output_url)
            self._finish(job, pb.ConnectRequest(completed=completed))
            return
        job.task = asyncio.create_task(self._render(job, assign))

    def _drop(self, lease: pb.LeaseRef, reason: str) -> None:
        """The lease is gone (cancelled, expired or stale): stop and discard the work."""
        job = self.jobs.get(lease.job_id)
        if job is None or job.lease.fencing_token != lease.fencing_token:
            return
        del self.jobs[lease.job_id]
        if job.task is not None:
            job.task.cancel()
        log.info("job dropped", extra={"job_id": lease.job_id, "reason": reason})

    def _finish(self, job: LeasedJob, result: pb.ConnectRequest) -> None:
        job.result = result
        self._send(result)

    async def _render(self, job: LeasedJob, assign: pb.Assign) -> None:
        lease = assign.lease

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
            "framefleet.agent.id": self.config.agent_id,
        }
        parent = telemetry.extract(assign.trace_context)
        page = await self.pages.acquire(assign.isolation_group)
        metrics.SLOTS_BUSY.inc()
        with telemetry.tracer.start_as_current_span(
            "render", context=parent, attributes=attributes
        ) as span:
            try:
                result = await render(assign, page, self.config.limits, progress)
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
                failed = pb.Failed(
                    lease=lease,
                    error_class=error.error_class,
                    error=to_wire(error.error_class),
                    message=str(error.args[0]),
                    retryable=error.retryable,
                )
                self._finish(job, pb.ConnectRequest(failed=failed))
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
            finally:
                metrics.SLOTS_BUSY.dec()
                await self.pages.release(page, assign.isolation_group)


async def run_agent(agent: Agent) -> None:
    """Runs until drained; SIGTERM and SIGINT start the drain."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(agent.drain()))
    await agent.run()

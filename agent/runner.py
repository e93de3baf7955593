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
import random
import signal
import time
from dataclasses import dataclass, field

import grpc.aio as aio

from agent.browser import CHROMIUM, Chromium
from agent.render import RenderLimits, render
from agent.spot_notice import watch_spot_notice
from agent.template_page import TemplatePage
from framefleet.errors import ErrorClass, FramefleetError
from framefleet.jobspec import GRPC_OPTIONS
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc

log = logging.getLogger("framefleet.agent")

PROGRESS_INTERVAL = 0.25  # seconds between progress messages per job
RECONNECT_MIN, RECONNECT_MAX = 0.2, 5.0
ACK_WAIT = 5.0  # seconds a draining agent waits for its last results to be acknowledged


@dataclass
class AgentConfig:
    coordinator: str
    agent_id: str
    slots: int
    labels: dict[str, str] = field(default_factory=dict)
    limits: RenderLimits = field(default_factory=RenderLimits)
    chromium: str = CHROMIUM
    # On SIGTERM: how long running jobs may take before they are handed back.
    drain_grace: float = 10.0
    # Poll this spot instance-action URL and drain when an interruption is announced.
    spot_notice_url: str | None = None
    spot_poll_interval: float = 5.0


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
        self._pages: asyncio.Queue[TemplatePage] = asyncio.Queue()
        self._outbox: asyncio.Queue[pb.ConnectRequest] | None = None
        self._chromium: Chromium | None = None
        self._done = asyncio.Event()
        self._acked = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        self._chromium = await Chromium.launch(self.config.chromium)
        try:
            for _ in range(self.config.slots):
                self._pages.put_nowait(await self._new_page())
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
            await self._chromium.close()

    async def _new_page(self) -> TemplatePage:
        assert self._chromium is not None
        context = await self._chromium.browser.new_context(device_scale_factor=1)
        return await TemplatePage.open(context)

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
        delay = RECONNECT_MIN
        while True:
            try:
                async with aio.insecure_channel(
                    self.config.coordinator, options=GRPC_OPTIONS
                ) as channel:
                    if await self._session(pb_grpc.AgentServiceStub(channel)):
                        delay = RECONNECT_MIN
            except aio.AioRpcError as e:
                log.warning("coordinator stream ended", extra={"code": e.code().name})
            except Exception:
                log.exception("coordinator stream failed")
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(RECONNECT_MAX, delay * 2)

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
                await call.write(await outbox.get())

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
        if kind == "assign":
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
            self._finish(
                job,
                pb.ConnectRequest(
                    released=pb.Released(lease=assign.lease, reason="agent draining")
                ),
            )
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

        def progress(done: int, total: int, fps: float) -> None:
            now = time.monotonic()
            if now - job.last_progress >= PROGRESS_INTERVAL:
                job.last_progress = now
                message = pb.Progress(lease=lease, frames_done=done, frames_total=total, fps=fps)
                self._send(pb.ConnectRequest(progress=message))

        page = await self._pages.get()
        try:
            result = await render(assign, page, self.config.limits, progress)
        except Exception as e:
            error = e if isinstance(e, FramefleetError) else None
            if error is None:
                log.exception("render crashed", extra={"job_id": lease.job_id})
                error = FramefleetError(ErrorClass.INTERNAL, repr(e))
            log.warning(
                "render failed",
                extra={"job_id": lease.job_id, "error_class": error.error_class, "error": str(e)},
            )
            failed = pb.Failed(
                lease=lease,
                error_class=error.error_class,
                message=str(error.args[0]),
                retryable=error.retryable,
            )
            self._finish(job, pb.ConnectRequest(failed=failed))
        else:
            stages = {k: round(v, 3) for k, v in result.stages.items()}
            log.info(
                "render finished",
                extra={"job_id": lease.job_id, "frames": result.frames, "stages": stages,
                       "bytes": result.output_bytes, "seconds": round(result.seconds, 3)},
            )  # fmt: skip
            completed = pb.Completed(
                lease=lease,
                output_url=result.output_url,
                output_bytes=result.output_bytes,
                frames=result.frames,
                render_seconds=result.seconds,
            )
            self._finish(job, pb.ConnectRequest(completed=completed))
        finally:
            if not page.healthy:
                # A crashed or hung page is replaced, never reused.
                with contextlib.suppress(Exception):
                    await page.close()
                page = await self._new_page()
            self._pages.put_nowait(page)


async def run_agent(config: AgentConfig) -> None:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(agent.drain()))
    await agent.run()

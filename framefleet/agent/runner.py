"""The agent process: its configuration, and the parts wired together: a page per slot, the job
executor (framefleet/agent/executor.py: runs Assigns, reports outcomes) and the stream link to the
coordinator (agent/link.py: Hello/Welcome, heartbeats, reconnects, resending results). Draining
(SIGTERM, a spot notice, the coordinator's Drain) is orchestrated here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

from playwright.async_api import Playwright

from framefleet.agent.browser import CHROMIUM
from framefleet.agent.executor import JobExecutor, PageRenderer
from framefleet.agent.limits import MIB, PAGE_HEAP_MB, PAGE_MEMORY_MB, PAGE_RENDERS, RenderLimits
from framefleet.agent.link import Coordinator, StreamLink
from framefleet.agent.page_pool import PagePool
from framefleet.agent.spot_notice import DRAIN_GRACE, POLL_INTERVAL, watch_spot_notice
from framefleet.core.channel import Tls, open_channel
from framefleet.core.jobspec import RENDERER_VERSION
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc

log = logging.getLogger("framefleet.agent")

ACK_WAIT = 5.0  # seconds a draining agent waits for its last results to be acknowledged


def _version() -> str:
    """Sent in Hello's labels, for the console: the package and the renderer version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{version('framefleet-farm')} (renderer {RENDERER_VERSION})"
    except PackageNotFoundError:
        return f"renderer {RENDERER_VERSION}"


VERSION = _version()


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
    page_renders: int = PAGE_RENDERS
    page_heap_bytes: int = PAGE_HEAP_MB * MIB
    # Kill a renderer whose resident memory passes this (0: no limit); the job fails as
    # TEMPLATE_RESOURCE_LIMIT.
    page_memory_bytes: int = PAGE_MEMORY_MB * MIB
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


class Agent:
    """The process: a page pool, the job executor, and the stream link that feeds it."""

    def __init__(self, config: AgentConfig, driver: Awaitable[Playwright] | None = None) -> None:
        """``driver``: Playwright's driver, being started for this agent's Chromiums (else
        the pages start one)."""
        self.config = config
        self.pages = PagePool(
            config.chromium,
            config.slots,
            config.page_renders,
            config.page_heap_bytes,
            config.page_memory_bytes,
            config.chromium_sandbox,
            driver,
        )
        renderer = None if config.noop else PageRenderer(self.pages, config.limits)
        self.executor = JobExecutor(
            renderer, self._send, self._drain_requested, config.agent_id, config.output_roots
        )
        hello = pb.Hello(
            agent_id=config.agent_id,
            slots=config.slots,
            labels={"version": VERSION, **config.labels},
        )
        self.link = StreamLink(self._connect, hello, self.executor)
        self._done = asyncio.Event()

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Coordinator]:
        async with open_channel(self.config.coordinator, self.config.tls) as channel:
            yield pb_grpc.AgentServiceStub(channel)

    def _send(self, message: pb.ConnectRequest) -> None:
        self.link.send(message)

    def _drain_requested(self) -> None:
        asyncio.get_running_loop().create_task(self.drain("asked by the coordinator"))

    @property
    def draining(self) -> bool:
        return self.executor.draining

    # --- lifecycle -------------------------------------------------------------------------

    async def ready(self) -> str | None:
        """None while connected to the coordinator with a browser up, else why not."""
        if self.draining:
            return "draining"
        if not self.link.connected.is_set():
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
            background = [asyncio.create_task(self.link.run())]
            if self.config.spot_notice_url:
                background.append(asyncio.create_task(self._watch_spot_notice()))
            await self._done.wait()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        finally:
            self.executor.cancel_all()
            await self.pages.close()

    async def _watch_spot_notice(self) -> None:
        assert self.config.spot_notice_url is not None

        async def interrupted(action: str) -> None:
            await self.drain(f"spot interruption ({action})")

        await watch_spot_notice(
            self.config.spot_notice_url, self.config.spot_poll_interval, interrupted
        )

    async def drain(self, why: str = "SIGTERM") -> None:
        """Take no new work, give running jobs the grace period, hand back the rest, wait
        briefly for the coordinator to acknowledge, exit."""
        if self.draining:
            return
        self.executor.draining = True
        log.info("draining", extra={"why": why, "jobs": len(self.executor.jobs)})
        self.link.send(self.link.heartbeat())
        await self.executor.hand_back(why, self.config.drain_grace)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_WAIT):
                await self.executor.all_acknowledged()
        self._done.set()


async def run_agent(agent: Agent) -> None:
    """Runs until drained; SIGTERM and SIGINT start the drain."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(agent.drain()))
    await agent.run()

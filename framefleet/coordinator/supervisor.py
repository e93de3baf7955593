"""Runs the coordinator's background services (dispatcher, lease reaper, batch finisher,
metric samplers) and keeps them running.

A service is one round of work (``step``) and what to wait for before the next (``pause``).
A round that raises is logged and retried after a jittered backoff (the shared helper); after
``unready_after`` failures in a row the coordinator reports itself not ready (gRPC health
NOT_SERVING, ``/readyz`` 503) until a round of that service succeeds again. A store outage
thus degrades the coordinator instead of silently ending its dispatcher for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from framefleet.core.backoff import Backoff

log = logging.getLogger("framefleet.coordinator")

Step = Callable[[], Awaitable[object]]
# Told True when every service is healthy again, False when one is not.
Listener = Callable[[bool], Awaitable[None]]


@dataclass
class _Service:
    name: str
    step: Step
    pause: Step
    failures: int = 0
    last_error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


# Between restarts of a failing service: half a second, doubling, at most 30 s.
RESTART = Backoff(base=0.5, cap=30.0)


class Supervisor:
    def __init__(
        self,
        backoff: Backoff = RESTART,
        unready_after: int = 3,
        listener: Listener | None = None,
    ) -> None:
        self.backoff = backoff
        self.unready_after = unready_after
        self._listener = listener
        self._services: list[_Service] = []
        self._healthy = True

    def start(self, name: str, step: Step, pause: Step) -> None:
        """Runs ``pause`` then ``step`` forever, supervised."""
        service = _Service(name, step, pause)
        service.task = asyncio.create_task(self._run(service), name=name)
        self._services.append(service)

    def problem(self) -> str | None:
        """None while every service runs, else what is wrong (for /readyz)."""
        for service in self._services:
            if service.task is None or service.task.done():
                return f"background service {service.name} stopped"
            if service.failures >= self.unready_after:
                return (
                    f"background service {service.name} failed {service.failures} times"
                    f" in a row: {service.last_error}"
                )
        return None

    async def stop(self) -> None:
        tasks = [s.task for s in self._services if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, service: _Service) -> None:
        while True:
            await service.pause()
            try:
                await service.step()
            except Exception as e:
                service.failures += 1
                service.last_error = repr(e)
                log.exception(
                    "background service failed",
                    extra={"service": service.name, "failures": service.failures},
                )
                await self._changed()
                await asyncio.sleep(self.backoff.delay(service.failures))
            else:
                if service.failures:
                    log.info("background service recovered", extra={"service": service.name})
                    service.failures = 0
                    await self._changed()

    async def _changed(self) -> None:
        healthy = self.problem() is None
        if healthy != self._healthy:
            self._healthy = healthy
            if not healthy:
                log.error("coordinator not ready", extra={"reason": self.problem()})
            if self._listener is not None:
                await self._listener(healthy)

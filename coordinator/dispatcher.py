"""Pushes queued jobs to agents with free slots, round-robin, over their streams.

Agents never poll: the dispatcher wakes when work may be available (a submit, a retry, an
expiry, a freed slot) and on a short tick, for retries whose backoff has run out.
"""

from __future__ import annotations

import asyncio
import contextlib

from coordinator.farm import Farm
from framefleet.v1 import framefleet_pb2 as pb

TICK_SECONDS = 0.25


async def dispatch_once(farm: Farm) -> int:
    """Hands out as much work as free slots allow; returns how many leases were granted."""
    granted = 0
    while True:
        ready = [s for s in farm.sessions.rotated() if s.free_slots > 0]
        if not ready:
            return granted
        for session in ready:
            record = await farm.claim(session.agent_id)
            if record is None:
                return granted
            session.held[record.id] = (record.fencing_token, farm.clock())
            lease = pb.LeaseRef(job_id=record.id, fencing_token=record.fencing_token)
            assign = pb.Assign(
                lease=lease,
                attempt=record.attempt,
                spec=pb.JobSpec.FromString(record.spec),
                content_key=record.content_key,
                output_url=record.output_url,
            )
            session.send(pb.ConnectResponse(assign=assign))
            granted += 1


async def run_dispatcher(farm: Farm) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(farm.work_available.wait(), TICK_SECONDS)
        farm.work_available.clear()
        await dispatch_once(farm)

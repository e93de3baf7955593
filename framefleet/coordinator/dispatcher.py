"""Pushes queued jobs to agents with free slots, round-robin, over their streams.

Agents never poll: the dispatcher wakes when work may be available (a submit, a freed slot, a
requeue, and when a requeued job's backoff ends: ``LeaseBook.wake_at``) and on a short tick,
for work another coordinator sharing the table made claimable.
"""

from __future__ import annotations

import asyncio

from framefleet.coordinator.farm import Farm
from framefleet.coordinator.sessions import Session
from framefleet.coordinator.splitting import chunk_urls
from framefleet.coordinator.store import JobRecord
from framefleet.core import telemetry
from framefleet.core.source_cache import source_size
from framefleet.v1 import framefleet_pb2 as pb

TICK_SECONDS = 0.25
CLAIM_CHUNK = 32
COALESCE_SECONDS = 0.002


async def dispatch_once(farm: Farm) -> int:
    """Hands out as much work as free slots allow, a claim of up to CLAIM_CHUNK jobs per
    session per round; returns how many leases were granted."""
    granted = 0
    while True:
        ready = [s for s in farm.rotated_agents() if farm.free_slots(s) > 0]
        if not ready:
            return granted
        for session in ready:
            limit = min(farm.free_slots(session), CLAIM_CHUNK)
            records = await farm.claim(session.agent_id, limit)
            if not records:
                return granted
            for record in records:
                session.send(pb.ConnectResponse(assign=await _assignment(farm, session, record)))
            granted += len(records)


async def _assignment(farm: Farm, session: Session, record: JobRecord) -> pb.Assign:
    farm.grant(session, record.id, record.fencing_token, record.parent_id)
    spec = pb.JobSpec.FromString(record.spec)
    if not session.sources_held.use(record.source_key):
        source = await farm.source(record.source_key)
        spec.MergeFrom(source)
        # The stored source is the spec's source alone: the size the agent's ledger counts.
        session.sources_held.add(record.source_key, source_size(source))
    assign = pb.Assign(
        lease=pb.LeaseRef(job_id=record.id, fencing_token=record.fencing_token),
        attempt=record.attempt,
        spec=spec,
        content_key=record.content_key,
        output_url=record.output_url,
        source_key=record.source_key,
        trace_context=telemetry.from_text(record.trace_context),
        # A batch has one template and one owner: its rows may share a page, nothing else.
        isolation_group=f"batch:{record.batch_id}" if record.batch_id else "",
    )
    if record.parent_id is not None:  # a chunk: its frames into its own object
        assign.first_frame, assign.end_frame = record.first_frame, record.end_frame
        assign.chunk_index = record.chunk_index
    elif record.chunks:  # a split job whose chunks are done: the assembly
        assign.chunk_urls.extend(chunk_urls(record))
    return assign


async def wait_for_work(farm: Farm) -> None:
    """Until there may be work to hand out (or a tick passes, for retries now due)."""
    await farm.wait_for_work(TICK_SECONDS)
    # Let a burst of completions land first: then one claim fills several slots and the
    # assignments leave in one bundle.
    await asyncio.sleep(COALESCE_SECONDS)

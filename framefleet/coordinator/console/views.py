"""What the console shows, as JSON: one snapshot of jobs (filtered, paged), recent batches,
connected agents and those that recently disconnected, as the caller may see them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from framefleet.coordinator.batches import batch_message
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.named_outputs import named_url
from framefleet.coordinator.store import JobRecord, JobState
from framefleet.coordinator.tokens import Principal

PAGE_SIZE = 50
RECENT_BATCHES = 10


@dataclass
class Query:
    states: list[JobState] = field(default_factory=list)
    batch_id: str = ""
    tenant: str | None = None  # None: every tenant's (admins)
    page: int = 0


def job_view(record: JobRecord, now: float) -> dict[str, Any]:
    succeeded = record.state == JobState.SUCCEEDED
    return {
        "id": record.id,
        "state": record.state.value,
        "tenant": record.tenant,
        "batch_id": record.batch_id or "",
        "row_key": record.row_key or "",
        "agent": record.lease_owner or "",
        "attempt": record.attempt,
        "frames_done": record.frames_done,
        "frames_total": record.frames_total,
        "error_class": record.error_class or "",
        "error_message": record.error_message or "",
        "output_url": (named_url(record) or record.output_url) if succeeded else "",
        "playable": succeeded and record.output_url.startswith("file://"),
        "cache_hit": record.cache_hit,
        "age_seconds": round(now - record.created_at),
    }


async def snapshot(farm: Farm, query: Query, principal: Principal) -> dict[str, Any]:
    queries, now = farm.queries, farm.clock()
    start, end = query.page * PAGE_SIZE, (query.page + 1) * PAGE_SIZE
    if query.batch_id:
        rows = await queries.batch_jobs(principal, query.batch_id)
        rows = [r for r in rows if not query.states or r.state in query.states]
    else:
        rows = await queries.jobs(principal, query.states, end + 1, query.tenant)
    batch_ids = await queries.recent_batches(principal, RECENT_BATCHES, query.tenant)
    if query.batch_id and query.batch_id not in batch_ids:
        batch_ids.insert(0, query.batch_id)
    shown = []
    for batch_id in batch_ids:
        record = await queries.batch(principal, batch_id)
        if record is not None:
            message = batch_message(record, now)
            shown.append(
                {
                    "id": record.id,
                    "name": record.name,
                    "tenant": record.tenant,
                    "total": message.total,
                    "queued": message.queued,
                    "running": message.running,
                    "succeeded": message.succeeded,
                    "failed": message.failed,
                    "cancelled": message.cancelled,
                    "cache_hits": message.cache_hits,
                    "frames_done": message.frames_done,
                    "frames_total": message.frames_total,
                    "eta_seconds": round(message.eta_seconds),
                    "finished": record.finished_at is not None,
                    "digest": json.loads(record.digest) if record.digest else None,
                    "manifest_url": record.manifest_url or "",
                }
            )
    agents = [
        {
            "id": s.agent_id,
            "slots": s.slots,
            "leases": len(farm.held(s)),
            "connected": True,
            "draining": s.draining,
            "silent": farm.is_silent(s),
            "version": s.labels.get("version", ""),
            "last_seen_seconds": round(now - s.last_seen, 1),
        }
        for s in sorted(farm.agents(), key=lambda s: s.agent_id)
    ]
    agents += [
        {
            "id": s.agent_id,
            "slots": s.slots,
            "leases": 0,
            "connected": False,
            "draining": s.draining,
            "silent": False,
            "version": s.labels.get("version", ""),
            "last_seen_seconds": round(now - s.last_seen, 1),
        }
        for s in farm.gone_agents()
    ]
    counts = await queries.counts(principal)
    return {
        "me": {"name": principal.name, "role": principal.role.value},
        "query": {
            "states": [s.value for s in query.states],
            "batch": query.batch_id,
            "tenant": query.tenant or "",
            "page": query.page,
        },
        "jobs": [job_view(r, now) for r in rows[start:end]],
        "more": len(rows) > end,
        "page_size": PAGE_SIZE,
        "batches": shown,
        "agents": agents,
        "counts": {state.value: n for state, n in counts.items()},
    }

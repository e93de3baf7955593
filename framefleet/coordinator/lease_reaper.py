"""Returns expired leases to the queue and tells a still-connected holder to stop."""

from __future__ import annotations

from framefleet.coordinator.farm import Farm


async def reap_once(farm: Farm) -> int:
    expired = await farm.expire_leases()
    for record in expired:
        session = farm.sessions.get(record.lease_owner)
        if session is not None:
            farm.leases.mark_silent(session)
            farm.leases.cancel(session, record.id, record.fencing_token, "lease expired")
    return len(expired)

"""Returns expired leases to the queue and tells a still-connected holder to stop."""

from __future__ import annotations

from framefleet.coordinator.farm import Farm


async def reap_once(farm: Farm) -> int:
    expired = await farm.expire_leases()
    for record in expired:
        farm.fence_expired(record)
    return len(expired)

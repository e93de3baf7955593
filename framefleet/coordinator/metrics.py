"""The coordinator's Prometheus metrics: the numbers an operator watches (variants rendered,
render time, failure rate by class) plus queue depth, lease expiries and cache hits."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from framefleet.coordinator.store import JobState
from framefleet.coordinator.store.areas import Claims

JOBS = Gauge("framefleet_jobs", "Jobs in the table by state", ["state"])
QUEUE_DEPTH = Gauge("framefleet_queue_depth", "Jobs and chunks queued and waiting for an agent")
OUTCOMES = Counter("framefleet_job_outcomes", "Jobs that ended, by final state", ["state"])
FAILURES = Counter(
    "framefleet_job_failures", "Failed attempts by error class (final or retried)", ["error_class"]
)
LEASE_EXPIRIES = Counter("framefleet_lease_expiries", "Leases that expired without a heartbeat")
CACHE_HITS = Counter("framefleet_cache_hits", "Jobs done without rendering (result cache)")
NAMING_FAILURES = Counter(
    "framefleet_naming_failures", "Finished outputs that could not be copied to their names"
)
RENDER_SECONDS = Histogram(
    "framefleet_render_seconds",
    "Wall time of successful renders, as the agent measured it",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
RENDER_FPS = Histogram(
    "framefleet_render_fps",
    "Frames per second of successful renders",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 240),
)
AGENTS = Gauge("framefleet_agents_connected", "Agents with an open stream")


SAMPLE_SECONDS = 2.0


async def sample_store(store: Claims) -> None:
    """Brings the job-state gauges up to date (one grouped count, and the queue's depth)."""
    counts = await store.count_by_state()
    for state in JobState:
        JOBS.labels(state.value).set(counts.get(state, 0))
    QUEUE_DEPTH.set(await store.queue_depth())  # a split job's queued chunks count

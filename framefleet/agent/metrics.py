"""The agent's Prometheus metrics: renders, frames, bytes written, and how often pages and
browsers had to be replaced."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RENDERS = Counter("framefleet_agent_renders", "Renders by outcome", ["outcome"])
FRAMES = Counter("framefleet_agent_frames", "Frames captured and encoded")
BYTES_WRITTEN = Counter(
    "framefleet_agent_output_bytes", "Encoded bytes written to outputs (local files or S3)"
)
RENDER_SECONDS = Histogram(
    "framefleet_agent_render_seconds",
    "Wall time of one render, load to complete output",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
PAGE_RECYCLES = Counter("framefleet_agent_page_recycles", "Pages replaced", ["reason"])
BROWSER_RELAUNCHES = Counter("framefleet_agent_browser_relaunches", "Chromium relaunched")
SLOTS_BUSY = Gauge("framefleet_agent_slots_busy", "Slots rendering now")

"""The agent's limits on a render and on a page, with their defaults written once: the
renderer and the agent's configuration use them, and so do the command line's defaults (which
load on every ``framefleet`` command, so this module imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
# Recycle a page after this many renders, or when its JavaScript heap passes this bound.
PAGE_RENDERS = 500
PAGE_HEAP_MB = 512
# Kill a renderer whose resident memory passes this (0: no limit).
PAGE_MEMORY_MB = 2048


@dataclass(frozen=True)
class RenderLimits:
    ready_timeout: float = 30.0  # seconds for a template to say it is ready
    frame_timeout: float = 10.0  # seconds for one frame to be drawn

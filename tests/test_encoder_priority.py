"""The encoder thread runs niced below capture (bench/README.md, "Slots, x264 threads and
encoder priority"), and the event loop's thread keeps its priority."""

from __future__ import annotations

import os
import threading

from framefleet import template_job
from framefleet.agent.encoder import ENCODER_NICE, H264Encoder
from framefleet.core import jobspec
from tests.conftest import TEMPLATES


def priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_the_encoder_thread_runs_niced_and_capture_does_not() -> None:
    assert ENCODER_NICE > 0
    spec = template_job(TEMPLATES / "moving_box.html", {}, width=64, height=64, fps=30, frames=1)
    encoder = H264Encoder(jobspec.resolve_output(spec.output), lambda data: None)
    before = priority()
    try:
        encoder_priority = encoder._thread.submit(priority).result()
    finally:
        await encoder.abort()
    assert encoder_priority == min(19, before + ENCODER_NICE)
    assert priority() == before, "only the encoder's thread is niced"

"""Golden renders: short templates (tests/golden/templates/) rendered through the agent's own
render path (page pool, virtual time, capture, libx264, the file sink), and the key frames of
each, decoded from the MP4, kept as PNG in tests/golden/frames/. tests/test_golden_renders.py
renders them again and compares by PSNR.

Regenerate after a change that is meant to alter output (and bump RENDERER_VERSION):
    make golden            (= .venv/bin/python -m tests.golden_renders)
then look at the new PNGs before committing them."""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from framefleet.agent.browser import CHROMIUM
from framefleet.agent.executor import PageRenderer
from framefleet.agent.limits import RenderLimits
from framefleet.agent.page_pool import PagePool
from framefleet.core import jobspec
from framefleet.v1 import framefleet_pb2 as pb
from tests.video import Frame, decode

GOLDEN = Path(__file__).parent / "golden"
TEMPLATES = GOLDEN / "templates"
FRAMES = GOLDEN / "frames"
WIDTH, HEIGHT, FPS, LENGTH = 320, 180, 10, 10
KEY_FRAMES = (0, 3, 6, 9)
CRF = 16  # fixed, so a change of the default CRF is not a change of the picture


@dataclass(frozen=True)
class Case:
    template: str
    params: dict[str, Any] = field(default_factory=dict)


CASES = {
    "motion": Case("motion.html"),
    "text": Case("text.html", {"name": "Ada"}),
    "vector": Case("vector.html"),
}


def psnr(a: Frame, b: Frame) -> float:
    """Peak signal-to-noise ratio of two RGB frames in dB (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def reference(name: str, n: int) -> Path:
    return FRAMES / f"{name}-{n:02d}.png"


def read_png(path: Path) -> Frame:
    (frame,) = decode(path)
    return frame


def write_png(path: Path, frame: Frame) -> None:
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


async def render_all(out: Path) -> dict[str, list[Frame]]:
    """Every frame of every case, rendered as the agent renders a job, one page at a time."""
    pool = PagePool(CHROMIUM, slots=1, max_renders=500, max_heap_bytes=512 * 2**20)
    renderer = PageRenderer(pool, RenderLimits())
    await pool.start()
    try:
        frames = {}
        for name, case in CASES.items():
            spec = jobspec.template_job(
                TEMPLATES / case.template,
                case.params,
                width=WIDTH,
                height=HEIGHT,
                fps=FPS,
                frames=LENGTH,
                crf=CRF,
            )
            url = (out / f"{name}.mp4").as_uri()
            assign = pb.Assign(
                lease=pb.LeaseRef(job_id=name, fencing_token=1),
                spec=spec,
                output_url=url,
                source_key=jobspec.source_key(spec),
                isolation_group=name,
            )
            await renderer(assign, lambda *_: None)
            frames[name] = decode(out / f"{name}.mp4")
        return frames
    finally:
        await pool.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        frames = asyncio.run(render_all(Path(tmp)))
    FRAMES.mkdir(parents=True, exist_ok=True)
    for old in FRAMES.glob("*.png"):
        old.unlink()
    for name, rendered in frames.items():
        for n in KEY_FRAMES:
            write_png(reference(name, n), rendered[n])
    print(f"wrote {len(frames) * len(KEY_FRAMES)} frames to {FRAMES}", file=sys.stderr)


if __name__ == "__main__":
    main()

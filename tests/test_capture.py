"""Capture in a real Chromium, both ways: BeginFrames (the default) and screenshots (the
fallback), decoded and checked pixel by pixel; frames that did not change are reused."""

from __future__ import annotations

import asyncio
import io
from typing import cast

import av
import pytest

from framefleet import template_job
from framefleet.agent.browser import Chromium
from framefleet.agent.encoder import H264Encoder
from framefleet.agent.sources import page_input
from framefleet.agent.template_page import TemplatePage
from framefleet.core import jobspec
from tests.conftest import TEMPLATES
from tests.video import Frame, is_colour

pytestmark = pytest.mark.e2e

RED, GREEN, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 0)
W, H, FPS, FRAMES = 320, 240, 30, 30


def pixels(image: bytes) -> Frame:
    with av.open(io.BytesIO(image), mode="r") as container:
        return cast(Frame, next(container.decode(video=0)).to_ndarray(format="rgb24"))


async def capture(mode: str, template: str, rounds: int = 1) -> tuple[list[list[bytes]], int]:
    """Every frame of the template, ``rounds`` times on one page; and the frames reused in
    the last round."""
    spec = template_job(TEMPLATES / template, {}, width=W, height=H, fps=FPS, frames=FRAMES)
    source, params = page_input(spec)
    chromium = await Chromium.launch(capture=mode)
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        assert page.begin_frames == (mode == "beginframe")
        runs = []
        for _ in range(rounds):
            await page.load(source, params, (W, H), 30)
            runs.append([await page.frame(n * 1000 / FPS, 10) for n in range(FRAMES)])
        return runs, page.frames_reused
    finally:
        await chromium.close()


def check_moving_box(frame: Frame, n: int) -> None:
    css_left, raf_left = 10 * n, 6 * n  # moving_box.html: 10 and 6 px per frame
    assert is_colour(frame[40, css_left + 20], RED), f"CSS box at frame {n}"
    assert is_colour(frame[40, css_left + 50], BLACK), f"right of CSS box at frame {n}"
    assert is_colour(frame[120, raf_left + 20], GREEN), f"rAF box at frame {n}"
    assert is_colour(frame[120, raf_left + 50], BLACK), f"right of rAF box at frame {n}"


@pytest.mark.parametrize("mode", ["beginframe", "screenshot"])
async def test_each_capture_mode_draws_frame_n_at_time_n(mode: str) -> None:
    (first, again), _ = await capture(mode, "moving_box.html", rounds=2)
    for n in (0, 1, 7, 15, 25):
        check_moving_box(pixels(first[n]), n)
    assert first == again, "a rerun must give the same bytes"


async def test_slots_of_one_chromium_draw_at_the_same_time() -> None:
    # Pages of one browser drawing at once (an agent gives each slot its own Chromium; the
    # draw lock keeps a shared one safe): their BeginFrames must not lose pictures.
    spec = template_job(
        TEMPLATES / "moving_box.html", {}, width=W, height=H, fps=FPS, frames=FRAMES
    )
    source, params = page_input(spec)
    chromium = await Chromium.launch(capture="beginframe")
    try:
        pages = [await TemplatePage.open(await chromium.browser.new_context()) for _ in range(3)]

        async def render(page: TemplatePage) -> list[bytes]:
            await page.load(source, params, (W, H), 30)
            return [await page.frame(n * 1000 / FPS, 10) for n in range(FRAMES)]

        runs = await asyncio.gather(*(render(page) for page in pages))
    finally:
        await chromium.close()
    for images in runs:
        for n in (0, 1, 7, 15, 25):
            check_moving_box(pixels(images[n]), n)
    assert runs[0] == runs[1] == runs[2], "the same frames as each slot alone would draw"


def hold_still_x(n: int) -> tuple[int, int]:
    """hold_still.html: the CSS box's and the rAF box's left edge at frame n."""
    return min(10 * n, 90), 10 * n if n <= 10 else 100 if n < 20 else 100 + 10 * (n - 19)


async def test_unchanged_frames_are_reused_and_still_encoded_at_their_time() -> None:
    (images,), reused = await capture("beginframe", "hold_still.html")
    # Frames 11 to 19 show what frame 10 shows: the page was not drawn again for them.
    assert reused == 9
    assert all(images[n] is images[10] for n in range(11, 20))
    assert images[20] is not images[19]

    size = {"width": W, "height": H, "fps": FPS, "frames": FRAMES}
    spec = template_job(TEMPLATES / "hold_still.html", {}, **size)  # type: ignore[arg-type]
    output = jobspec.resolve_output(spec.output)
    out = io.BytesIO()
    encoder = H264Encoder(output, out.write)
    for image in images:
        await encoder.put(image)
    await encoder.finish()
    with av.open(io.BytesIO(out.getvalue()), mode="r") as container:
        frames = [cast(Frame, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert len(frames) == FRAMES, "every frame is in the video, reused or not"
    for n in (0, 5, 10, 11, 15, 19, 20, 25, 29):
        css, raf = hold_still_x(n)
        assert is_colour(frames[n][40, css + 20], RED), f"CSS box at frame {n}"
        assert is_colour(frames[n][40, css + 50], BLACK), f"right of CSS box at frame {n}"
        assert is_colour(frames[n][120, raf + 20], GREEN), f"rAF box at frame {n}"
        assert is_colour(frames[n][120, raf + 50], BLACK), f"right of rAF box at frame {n}"
        if raf:
            assert is_colour(frames[n][120, raf - 10], BLACK), f"left of rAF box at frame {n}"


async def test_unknown_capture_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="FRAMEFLEET_CAPTURE"):
        await Chromium.launch(capture="vsync")

"""Golden renders: the templates in tests/golden/templates/ rendered through the agent's render
path must still look like their committed key frames (tests/golden_renders.py has the cases and
the command that regenerates them), so a change to capture, timing or encoding that alters
output fails here even when nobody bumps RENDERER_VERSION.

Threshold: 35 dB PSNR on every key frame. The same Chromium and libx264 give identical frames
(infinite PSNR); a different Chromium build may antialias text and curves a little differently,
which stays above 35 dB; a frame drawn one frame early or late, a shifted layout, a wrong
colour or a missing font falls far below (checked here too, so the threshold can fail)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.golden_renders import CASES, KEY_FRAMES, psnr, read_png, reference, render_all
from tests.video import Frame

pytestmark = pytest.mark.e2e

MIN_PSNR = 35.0


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Frame]]:
    return asyncio.run(render_all(tmp_path_factory.mktemp("golden")))


def test_key_frames_match_the_golden_frames(rendered: dict[str, list[Frame]]) -> None:
    missing = [
        reference(n, k).name for n in CASES for k in KEY_FRAMES if not reference(n, k).is_file()
    ]
    assert not missing, f"no golden frames {missing}: run `make golden`"
    scores = {
        reference(name, n).stem: psnr(rendered[name][n], read_png(reference(name, n)))
        for name in CASES
        for n in KEY_FRAMES
    }
    low = {k: round(v, 1) for k, v in scores.items() if v < MIN_PSNR}
    assert not low, f"frames below {MIN_PSNR} dB: {low}; if intended, `make golden` and look"


def test_a_frame_early_or_late_falls_below_the_threshold(
    rendered: dict[str, list[Frame]],
) -> None:
    neighbours = [
        (name, n, shifted)
        for name in CASES
        for n in KEY_FRAMES
        for shifted in (n - 1, n + 1)
        if 0 <= shifted < len(rendered[name])
    ]
    # Every key frame has a neighbour in the video to be told apart from.
    assert {(name, n) for name, n, _ in neighbours} == {(c, n) for c in CASES for n in KEY_FRAMES}
    for name, n, shifted in neighbours:
        score = psnr(rendered[name][shifted], read_png(reference(name, n)))
        assert score < MIN_PSNR, f"{name} frame {shifted} passes as {n}: {score:.1f}"


def test_the_cases_have_their_templates() -> None:
    for case in CASES.values():
        assert (Path(__file__).parent / "golden" / "templates" / case.template).is_file()

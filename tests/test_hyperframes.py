"""HyperFrames projects as they are: GSAP timelines on window.__timelines driven to t, clip
timing and visibility, nested compositions, variables, output defaults from the composition
root; and what cannot be driven fails loudly on the first frame. Real Chromium and, for the
command, a real farm (embedded coordinator and an agent process) and a decoded MP4."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from framefleet import ErrorClass, FramefleetError
from framefleet.agent.browser import Chromium
from framefleet.agent.template_page import TemplatePage
from framefleet.core import hyperframes, jobspec
from tests.farm_processes import framefleet
from tests.test_e2e_videojson import png_pixels
from tests.video import Frame, decode, is_colour

pytestmark = pytest.mark.e2e

PROJECTS = Path(__file__).parent / "hyperframes"
GSAP = PROJECTS / "gsap.min.js"
RED, GREEN, BLUE, YELLOW = (255, 48, 48), (0, 200, 0), (0, 0, 255), (255, 255, 0)
MAGENTA, ORANGE = (255, 0, 255), (255, 128, 0)


def project(name: str, where: Path) -> Path:
    """A copy of a fixture project with GSAP beside its index.html, as HyperFrames wants it."""
    folder = where / name
    shutil.copytree(PROJECTS / name, folder)
    shutil.copy(GSAP, folder)
    return folder


def write_project(where: Path, body: str, script: str, **root: str) -> Path:
    """A one-file project: ``body`` inside a 160x120 composition root, then ``script``."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(GSAP, where)
    attrs = {"data-duration": "1", **root}
    extra = " ".join(f"{k}='{v}'" for k, v in attrs.items())
    (where / "index.html").write_text(
        f"""<!doctype html><html><head><script src="gsap.min.js"></script>
<style>body {{ margin: 0; background: #000; }}</style></head><body>
<div id="root" data-composition-id="main" data-start="0" data-width="160" data-height="120"
 {extra} style="position:relative;width:160px;height:120px">{body}</div>
<script>{script}</script></body></html>"""
    )
    return where


@pytest_asyncio.fixture
async def page() -> AsyncIterator[TemplatePage]:
    chromium = await Chromium.launch()
    try:
        yield await TemplatePage.open(await chromium.browser.new_context())
    finally:
        await chromium.close()


async def frames_at(
    page: TemplatePage, folder: Path, times: list[float], params: dict[str, Any] | None = None
) -> list[Frame]:
    spec = jobspec.template_job(folder, params)
    output = jobspec.resolve_output(spec.output)
    await page.load(spec.template, params or {}, (output.width, output.height), 30)
    return [png_pixels(await page.frame(t * 1000, 10)) for t in times]


def box_left(frame: Frame, row: int, rgb: tuple[int, int, int]) -> int:
    """The first column of ``row`` in the colour (the left edge of a moving box)."""
    hits = [x for x in range(frame.shape[1]) if is_colour(frame[row, x], rgb)]
    assert hits, f"no {rgb} on row {row}"
    return hits[0]


def test_output_defaults_come_from_the_composition_root(tmp_path: Path) -> None:
    folder = project("motion", tmp_path)
    spec = jobspec.template_job(folder)
    assert jobspec.resolve_output(spec.output).width == 320
    assert (spec.output.width, spec.output.height, spec.output.duration_seconds) == (320, 240, 2)
    assert "gsap.min.js" in spec.template.assets
    # The command line wins over the project.
    assert jobspec.template_job(folder / "index.html", width=640).output.width == 640
    assert hyperframes.output_defaults("<html><body><p>plain</p></body></html>") == {}
    nested = project("nested", tmp_path)
    assert "compositions/card.html" in jobspec.template_job(nested).template.assets


async def test_gsap_timeline_is_driven_to_each_frames_time(
    page: TemplatePage, tmp_path: Path
) -> None:
    # The box moves 100 px a second from x = 20: its edge says which time the frame shows.
    frames = await frames_at(page, project("motion", tmp_path), [0, 0.5, 1, 2])
    assert [box_left(f, 120, RED) for f in frames] == [20, 70, 120, 220]


async def test_clips_show_only_in_their_window(page: TemplatePage, tmp_path: Path) -> None:
    # first: 0-1 s; second: from first's end + 0.5 s for 1 s; late: 2-2.5 s, on another track.
    at = await frames_at(page, project("clips", tmp_path), [0.5, 1.2, 1.7, 2.25, 2.7])
    assert is_colour(at[0][120, 50], BLUE)
    assert is_colour(at[1][120, 50], (0, 0, 0)), "between the clips"
    assert is_colour(at[2][120, 50], GREEN)
    assert is_colour(at[3][60, 240], YELLOW), "the late clip, in its window"
    assert not is_colour(at[2][60, 240], YELLOW) and not is_colour(at[4][60, 240], YELLOW)


async def test_nested_composition_plays_in_its_own_time(page: TemplatePage, tmp_path: Path) -> None:
    # The card (from compositions/card.html) shows 0.5-2.5 s; its chip moves 200 px in its
    # first second, so at t = 1 it is halfway and after 1.5 s it holds at the end. Its colour
    # is the host's data-variable-values over the card's own default.
    at = await frames_at(page, project("nested", tmp_path), [0.25, 0.5, 1, 2, 2.75])
    assert not is_colour(at[0][60, 40], MAGENTA) and not is_colour(at[4][60, 230], MAGENTA)
    assert [box_left(f, 60, MAGENTA) for f in at[1:4]] == [10, 110, 210]


async def test_a_nested_composition_is_sized_and_scoped_as_hyperframes_does(
    page: TemplatePage, tmp_path: Path
) -> None:
    # HyperFrames' missing-host-comp-id in small: a host with no id and no size, a body with
    # its default margin, and the nested file's CSS sizing its root to 100%: the root takes its
    # data-width/height and fills the frame. A second host that repeats the nested id keeps
    # the nested rule on the root inside (its own padding would otherwise double).
    folder = tmp_path / "sized"
    (folder / "compositions").mkdir(parents=True)
    shutil.copy(GSAP, folder)
    (folder / "compositions" / "fill.html").write_text(
        """<template><div data-composition-id="fill" data-width="160" data-height="120">
<style>[data-composition-id="fill"] { height: 100%; background: rgb(255, 255, 0);
 box-sizing: border-box; padding-top: 30px }
[data-composition-id="fill"] .dot { width: 10px; height: 10px; background: rgb(0, 0, 255) }</style>
<div class="dot"></div></div></template>"""
    )
    (folder / "index.html").write_text(
        """<!doctype html><html><head><script src="gsap.min.js"></script></head><body>
<div data-composition-id="main" data-width="160" data-height="120" data-duration="1">
<div id="a" data-composition-src="compositions/fill.html" data-start="0" data-duration="0.5"></div>
<div id="b" data-composition-id="fill" data-composition-src="compositions/fill.html"
 data-start="0.5" data-duration="0.5"></div></div></body></html>"""
    )
    first, second = await frames_at(page, folder, [0.25, 0.75])
    for frame in (first, second):
        assert is_colour(frame[2, 2], YELLOW) and is_colour(frame[117, 157], YELLOW)
        assert is_colour(frame[35, 5], BLUE), "the dot 30 px down, once"


async def test_a_nested_templates_scripts_run_once(page: TemplatePage, tmp_path: Path) -> None:
    # HyperFrames' css-import-scoping: a <template>'s script ran once as it was inserted and
    # again in its own scope, so a gsap.from() read its own start state as the end (scale 0).
    folder = tmp_path / "once"
    (folder / "compositions").mkdir(parents=True)
    shutil.copy(GSAP, folder)
    (folder / "compositions" / "grow.html").write_text(
        """<template><div data-composition-id="grow" data-width="160" data-height="120">
<div class="box" style="width:160px;height:120px;background:rgb(0,0,255)"></div>
<script>window.runs = (window.runs || 0) + 1;
const tl = gsap.timeline({ paused: true });
tl.from('[data-composition-id="grow"] .box', { scale: 0, duration: 0.5 }, 0);
window.__timelines["grow"] = tl;</script></div></template>"""
    )
    (folder / "index.html").write_text(
        """<!doctype html><html><head><script src="gsap.min.js"></script></head><body>
<div data-composition-id="main" data-width="160" data-height="120" data-duration="1">
<div data-composition-id="grow" data-composition-src="compositions/grow.html" data-start="0">
</div></div></body></html>"""
    )
    (frame,) = await frames_at(page, folder, [0.75])
    assert is_colour(frame[5, 5], BLUE), "the box grown to its full size"
    assert await page.page.evaluate("window.runs") == 1


async def test_a_same_origin_iframe_follows_the_frame_clock(
    page: TemplatePage, tmp_path: Path
) -> None:
    # HyperFrames' iframe-render-compat in small: the iframe draws from requestAnimationFrame
    # (a red box 100 px per second) and a CSS animation (a green one): both at t, not real time.
    folder = write_project(
        tmp_path / "iframe",
        '<iframe src="inner.html" width="160" height="120" style="border:0;display:block"'
        ' class="clip" data-start="0" data-duration="2"></iframe>',
        "",
        **{"data-duration": "2"},
    )
    (folder / "inner.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#000">
<style>@keyframes go { from { left: 0 } to { left: 100px } }
#g { position:absolute; top:70px; width:20px; height:20px; background:rgb(0,200,0);
 animation: go 1s linear forwards }</style>
<div id="r" style="position:absolute;top:20px;width:20px;height:20px;
 background:rgb(255,48,48)"></div>
<div id="g"></div>
<script>const r = document.getElementById("r");
function draw(ms) { r.style.left = `${ms / 10}px`; requestAnimationFrame(draw); }
requestAnimationFrame(draw);</script></body></html>"""
    )
    at = await frames_at(page, folder, [0.25, 0.5, 1.5])
    for row, colour, lefts in [(30, RED, [25, 50, 150]), (80, GREEN, [25, 50, 100])]:
        found = [box_left(f, row, colour) for f in at]
        # within a pixel: JPEG's chroma blurs a red edge on black
        assert all(abs(x - want) <= 1 for x, want in zip(found, lefts, strict=True)), found


async def test_file_and_module_workers_follow_the_frame_clock(
    page: TemplatePage, tmp_path: Path
) -> None:
    """Beside test_a_worker_follows_the_frame_clock: a classic worker that imports a helper by a
    relative URL (red, 100 px per second from requestAnimationFrame) and a module worker with a
    relative static import (blue) both draw at each frame's time."""
    folder = write_project(
        tmp_path / "workers",
        '<div id="r" style="position:absolute;top:20px;width:20px;height:20px;'
        'background:rgb(255,48,48)"></div><div id="b" style="position:absolute;top:95px;'
        'width:20px;height:20px;background:rgb(0,0,255)"></div>',
        """const r = document.getElementById("r"), b = document.getElementById("b");
const raf = new Worker("worker.js");
raf.onmessage = (e) => { r.style.left = `${e.data}px`; };
const module = new Worker("clock.mjs", { type: "module" });
module.onmessage = (e) => { b.style.left = `${e.data}px`; };""",
        **{"data-duration": "2"},
    )
    (folder / "speed.js").write_text("const PX_PER_MS = 0.1;")
    (folder / "worker.js").write_text(
        """importScripts("speed.js");
function tick(ms) { postMessage(ms * PX_PER_MS); requestAnimationFrame(tick); }
requestAnimationFrame(tick);"""
    )
    (folder / "clock.mjs").write_text(
        """import { PX_PER_MS } from "./px.mjs";
function tick(ms) { postMessage(ms * PX_PER_MS); requestAnimationFrame(tick); }
requestAnimationFrame(tick);"""
    )
    (folder / "px.mjs").write_text("export const PX_PER_MS = 0.1;")
    at = await frames_at(page, folder, [0.25, 0.5, 1.2, 0.5])
    for row, colour in [(30, RED), (105, BLUE)]:
        found = [box_left(f, row, colour) for f in at]
        lefts = [25, 50, 120, 50]
        assert all(abs(x - w) <= 1 for x, w in zip(found, lefts, strict=True)), (row, found)


async def test_the_timeline_registry_is_there_before_any_script(
    page: TemplatePage, tmp_path: Path
) -> None:
    # As HyperFrames' fast-capture-gsap: the page assigns into window.__timelines it never made.
    folder = write_project(
        tmp_path / "registry",
        '<div id="box" style="position:absolute;top:40px;width:20px;height:20px;'
        'background:rgb(255,48,48)"></div>',
        "const tl = gsap.timeline({ paused: true });"
        ' tl.to("#box", { left: 100, duration: 1, ease: "none" }, 0);'
        ' window.__timelines["main"] = tl;',
    )
    at = await frames_at(page, folder, [0.5])
    assert box_left(at[0], 50, RED) == 50


async def test_anime_js_is_driven_as_hyperframes_drives_it(
    page: TemplatePage, tmp_path: Path
) -> None:
    # What the page registers on window.__hfAnime and what anime.js is running: seek(ms) at t.
    folder = write_project(
        tmp_path / "anime",
        '<div id="a" style="position:absolute;top:10px;width:20px;height:20px;'
        'background:rgb(255,48,48)"></div><div id="b" style="position:absolute;top:60px;'
        'width:20px;height:20px;background:rgb(0,200,0)"></div><div id="b" style="position:'
        'absolute;top:95px;width:20px;height:20px;background:rgb(0,0,255)"></div>',
        """const at = (id, k) => ({
  seek(ms) { document.getElementById(id).style.left = `${ms / k}px`; } });
window.__hfAnime = [at("a", 10)];
window.anime = { running: [at("b", 20)] };""",
    )
    at = await frames_at(page, folder, [0.2, 0.8])
    assert [box_left(f, 20, RED) for f in at] == [20, 80]
    assert [box_left(f, 70, GREEN) for f in at] == [10, 40]


async def test_variables_defaults_merge_with_the_jobs_parameters(
    page: TemplatePage, tmp_path: Path
) -> None:
    folder = project("variables", tmp_path)
    (default,) = await frames_at(page, folder, [0.5])
    (varied,) = await frames_at(page, folder, [0.5], {"wide": True, "accent": "rgb(0, 0, 255)"})
    assert is_colour(default[70, 70], ORANGE) and not is_colour(default[70, 200], ORANGE)
    assert is_colour(varied[70, 70], BLUE) and is_colour(varied[70, 200], BLUE)


async def test_get_variables_is_there_before_any_script(page: TemplatePage, tmp_path: Path) -> None:
    folder = write_project(
        tmp_path / "early",
        '<div id="out" style="width:160px;height:120px"></div>',
        # A strict page that sets the global itself, as some do, keeps framefleet's.
        '"use strict"; window.__hyperframes = window.__hyperframes || {};'
        'document.getElementById("out").style.background ='
        " window.__hyperframes.getVariables().color;",
    )
    (frame,) = await frames_at(page, folder, [0], {"color": "rgb(0, 200, 0)"})
    assert is_colour(frame[60, 80], GREEN)


@pytest.mark.parametrize(
    ("script", "error_class", "message"),
    [
        ("window.__timelines = {main: {progress: 0}};", "TEMPLATE_UNSUPPORTED", "__timelines"),
        (
            "window.lottie = {getRegisteredAnimations: () => [{}]};",
            "TEMPLATE_UNSUPPORTED",
            "lottie-web",
        ),
        (  # HyperShader drawn outside HyperFrames' producer: its loading overlay, not the scene
            "window.HyperShader = {init() {}};",
            "TEMPLATE_UNSUPPORTED",
            "shader transitions (HyperShader)",
        ),
        (
            "document.getElementById('root').setAttribute('data-color-grading', 'warm');",
            "TEMPLATE_UNSUPPORTED",
            "color grading",
        ),
    ],
)
async def test_what_nothing_drives_fails_on_load(
    page: TemplatePage, tmp_path: Path, script: str, error_class: str, message: str
) -> None:
    folder = write_project(tmp_path / "undriven", "", script)
    with pytest.raises(FramefleetError) as failure:
        await frames_at(page, folder, [0])
    assert failure.value.error_class == ErrorClass(error_class)
    assert message in str(failure.value)


async def test_a_clip_whose_media_does_not_load_fails_on_load(
    page: TemplatePage, tmp_path: Path
) -> None:
    folder = write_project(
        tmp_path / "media",
        '<video id="intro" src="missing.mp4" data-start="0" data-duration="1" muted></video>',
        "",
    )
    with pytest.raises(FramefleetError) as failure:
        await frames_at(page, folder, [0])
    assert failure.value.error_class == ErrorClass.TEMPLATE_LOAD_ERROR
    assert "#intro" in str(failure.value) and "missing.mp4" in str(failure.value)


async def test_on_seek_awaits_real_promises_only(page: TemplatePage, tmp_path: Path) -> None:
    """`framefleet.onSeek(t => tl.seek(t))` returns the timeline, a thenable that settles when
    it completes: it is not awaited, so every frame draws. A real promise is."""
    folder = write_project(
        tmp_path / "thenable",
        '<div id="box" style="position:absolute;top:40px;width:20px;height:20px;'
        'background:rgb(255,48,48)"></div><div id="late" style="position:absolute;top:80px;'
        'width:20px;height:20px;background:rgb(0,200,0)"></div><div id="b" style="position:'
        'absolute;top:95px;width:20px;height:20px;background:rgb(0,0,255)"></div>',
        """const tl = gsap.timeline({paused: true});
        tl.fromTo("#box", {x: 0}, {x: 100, duration: 1, ease: "none"});
        framefleet.onSeek((t) => tl.seek(t));
        framefleet.onSeek(async (t) => {
          await new Promise((r) => setTimeout(r, 20));
          document.getElementById("late").style.left = `${Math.round(t * 100)}px`;
        });""",
        **{"data-no-timeline": ""},
    )
    frames = await frames_at(page, folder, [0, 0.5])
    assert [box_left(f, 50, RED) for f in frames] == [0, 50]
    assert [box_left(f, 90, GREEN) for f in frames] == [0, 50]


async def test_a_seek_promise_that_never_settles_is_the_templates_error(
    page: TemplatePage, tmp_path: Path
) -> None:
    never = "framefleet.onSeek(() => new Promise(() => {}));"
    folder = write_project(tmp_path / "never", "", never)
    spec = jobspec.template_job(folder)
    await page.load(spec.template, {}, (160, 120), 30)
    with pytest.raises(FramefleetError) as failure:
        await page.frame(0, 2)
    assert failure.value.error_class == ErrorClass.TEMPLATE_SCRIPT_ERROR
    assert "did not settle" in str(failure.value)


def test_render_command_takes_a_project_folder(tmp_path: Path) -> None:
    """`framefleet render DIR`: size and length from the composition root, the timeline in
    the MP4 (decoded), variables from --param."""
    folder = project("motion", tmp_path)
    result = subprocess.run(
        framefleet("render", str(folder), "--out", str(tmp_path / "out"), "--json"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["frames_total"] == 60
    (output,) = (tmp_path / "out").rglob("*.mp4")
    frames = decode(output)
    assert len(frames) == 60 and frames[0].shape == (240, 320, 3)
    assert abs(box_left(frames[30], 120, RED) - 120) <= 2
    assert np.abs(frames[0].astype(int) - frames[59].astype(int)).max() > 100


def test_a_project_that_cannot_be_driven_fails_once(tmp_path: Path) -> None:
    folder = write_project(tmp_path / "undriven", "", "window.__timelines = {main: 42};")
    result = subprocess.run(
        framefleet("render", str(folder), "--out", str(tmp_path / "out"), "--json"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1
    job = json.loads(result.stdout)
    assert job["error_class"] == "TEMPLATE_UNSUPPORTED" and job["attempt"] == 1
    assert not list((tmp_path / "out").rglob("*.mp4"))


def test_a_hyperframes_batch_file_renders_one_video_per_row(tmp_path: Path) -> None:
    """`--variants rows.json` (HyperFrames' batch format): each row's variables over the
    composition's defaults; a row without one keeps the default."""
    folder = project("variables", tmp_path)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"rows": [{"accent": "rgb(0, 0, 255)"}, {"title": "Ada"}]}))
    result = subprocess.run(
        framefleet(
            "render", str(folder), "--variants", str(rows), "--out", str(tmp_path / "out"),
            "--frames", "16", "--json",
        ),
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["succeeded"] == 2
    panels = sorted(
        tuple(int(c) for c in decode(path)[-1][70, 70])
        for path in (tmp_path / "out").rglob("*.mp4")
    )
    assert len(panels) == 2
    assert is_colour(np.array(panels[0]), BLUE) and is_colour(np.array(panels[1]), ORANGE)


async def test_a_worker_follows_the_frame_clock(page: TemplatePage, tmp_path: Path) -> None:
    # Workers as HyperFrames' virtual time contract asks: the page's draw asks a dedicated
    # worker for its clocks (performance.now, Date.now, its own requestAnimationFrame) and
    # places three boxes from the answers: all at t, not at the worker's real running time.
    folder = write_project(
        tmp_path / "worker",
        "".join(
            f'<div id="{name}" style="position:absolute;top:{top}px;width:20px;height:20px;'
            f'background:{colour}"></div>'
            for name, top, colour in [
                ("perf", 10, "rgb(255,48,48)"),
                ("date", 50, "rgb(0,200,0)"),
                ("raf", 90, "rgb(0,0,255)"),
            ]
        ),
        """const worker = new Worker("clock.js");
// A worker from a blob keeps its own clocks, and still starts and answers.
const blob = new Worker(URL.createObjectURL(new Blob(["onmessage = (e) => postMessage(e.data)"])));
blob.onmessage = (event) => { window.blobAnswer = event.data; };
blob.postMessage("echo");
framefleet.onSeek(() => new Promise((resolve) => {
  worker.onmessage = (event) => {
    for (const [id, ms] of Object.entries(event.data)) {
      document.getElementById(id).style.left = `${ms / 10}px`;
    }
    resolve();
  };
  worker.postMessage("when");
}));""",
    )
    (folder / "clock.js").write_text(
        """let rafMs = -1;
function tick(ms) { rafMs = ms; requestAnimationFrame(tick); }
requestAnimationFrame(tick);
onmessage = () => postMessage({
  perf: performance.now(), date: Date.now() - Date.UTC(2025, 0, 1), raf: rafMs });"""
    )
    at = await frames_at(page, folder, [0.25, 0.5, 1.0])
    assert await page.page.evaluate("window.blobAnswer") == "echo"
    for row, colour in [(20, RED), (60, GREEN), (100, BLUE)]:
        found = [box_left(f, row, colour) for f in at]
        assert all(abs(x - want) <= 1 for x, want in zip(found, [25, 50, 100], strict=True)), (
            colour,
            found,
        )


async def test_a_caption_track_sets_its_words_as_the_playhead_passes(
    page: TemplatePage, tmp_path: Path
) -> None:
    # As HyperFrames' warm-grain captions: each line's words are set by a tween's onStart, so
    # only a playhead moving through the timeline (as HyperFrames seeks) shows them. Here the
    # callback paints the box instead of writing words: red for the first line, green after.
    folder = write_project(
        tmp_path / "captions",
        '<div id="box" style="position:absolute;top:40px;left:40px;width:40px;height:40px;'
        'background:rgb(0,0,0);opacity:0"></div>',
        """const box = document.getElementById("box");
const tl = gsap.timeline({ paused: true });
[["rgb(255,48,48)", 0.2, 0.5], ["rgb(0,200,0)", 0.6, 0.9]].forEach(([colour, start, end]) => {
  tl.to(box, { opacity: 1, duration: 0.05, onStart: () => { box.style.background = colour; } },
        start);
  tl.to(box, { opacity: 0, duration: 0.05 }, end);
});
window.__timelines["main"] = tl;""",
    )
    at = await frames_at(page, folder, [0.1, 0.3, 0.4, 0.7, 0.8])
    centre = [tuple(int(c) for c in f[60, 60]) for f in at]
    assert is_colour(at[0][60, 60], (0, 0, 0)), centre
    assert is_colour(at[1][60, 60], RED) and is_colour(at[2][60, 60], RED), centre
    assert is_colour(at[3][60, 60], GREEN) and is_colour(at[4][60, 60], GREEN), centre

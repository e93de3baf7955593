"""VideoJSON end to end: documents submitted through the SDK to a coordinator and two agents
(separate processes), rendered by VideoFlow's own runtime in Chromium, checked by decoding the
MP4; invalid documents refused at submit; the preview showing the frames the farm renders."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import subprocess
import urllib.request
import zlib
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt
import pytest
from playwright.async_api import async_playwright

from framefleet import AsyncClient, ErrorClass, FramefleetError
from framefleet.agent.browser import CHROMIUM, CHROMIUM_FLAGS, Chromium
from framefleet.agent.sources import page_input
from framefleet.agent.template_page import TemplatePage
from framefleet.commands.preview import Preview, PreviewServer
from framefleet.core import jobspec
from framefleet.core.jobspec import video_json_job
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.videoflow import VideoFlow
from tests.farm_processes import FarmProcesses, framefleet
from tests.video import Frame, decode, is_colour, path_of

pytestmark = pytest.mark.e2e

W, H, FPS = 320, 240, 20
BLACK, RED, BLUE, GREEN, YELLOW = (0, 0, 0), (255, 0, 0), (0, 0, 255), (0, 200, 0), (255, 255, 0)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid PNG, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def scene(image: str | None = None) -> VideoFlow:
    """Two seconds at 320x240: a text box that fades in while it slides right (keyframed
    opacity and position), an image, a shape with a fade-in transition, and a group that starts
    at 0.5 s with a shape of its own."""
    flow = VideoFlow(name="scene", width=W, height=H, fps=FPS, easing="linear")
    title = flow.add_text(
        {
            "text": "{{word}}",
            "fontSize": 4,
            "color": "{{color}}",
            "backgroundColor": "{{color}}",
            "padding": 3,
        },
        {"sourceDuration": 2, "name": "title"},
    )
    title.animate(
        {"opacity": 0, "position": [0.25, 0.2]}, {"opacity": 1, "position": [0.75, 0.2]},
        duration="1s", wait=False,
    )  # fmt: skip
    flow.add_image(
        {"fit": "contain", "scale": 0.25, "position": [0.2, 0.7]},
        {"source": image or data_url(png(8, 8, BLUE)), "sourceDuration": 2},
    )
    flow.add_shape(
        {"width": 20, "height": 20, "fill": "rgb(0, 200, 0)", "position": [0.8, 0.7]},
        {
            "shapeType": "rectangle",
            "sourceDuration": 2,
            "transitionIn": {"transition": "fade", "duration": 1, "easing": "linear"},
        },
    )
    with flow.group({"position": [0.5, 0.85]}, {"startTime": 0.5, "sourceDuration": 1.5}):
        flow.add_shape({"width": 10, "height": 5, "fill": "#ffff00"}, {"sourceDuration": 1.5})
    return flow


def document(**kwargs: Any) -> str:
    return json.dumps(scene(**kwargs).compile())


PARAMS = {"word": "Hi", "color": "#ff0000"}


def job(text: str | None = None, params: dict[str, Any] | None = None, **kw: Any) -> pb.JobSpec:
    return video_json_job(text or document(), PARAMS if params is None else params, **kw)


async def render(farm: FarmProcesses, spec: pb.JobSpec) -> pb.Job:
    async with AsyncClient(farm.address) as client:
        return await client.wait((await client.submit(spec)).id)


# --- rendering ------------------------------------------------------------------------------


async def test_document_renders_on_videoflows_runtime(farm: FarmProcesses) -> None:
    done = await render(farm, job())
    assert done.state == pb.JOB_STATE_SUCCEEDED
    path = path_of(done.output_url)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # The document's own size, rate and length became the output settings.
        assert (stream.width, stream.height) == (W, H)
        assert stream.average_rate == FPS
    frames = decode(path)
    assert len(frames) == 2 * FPS

    def at(t: float) -> Frame:
        return frames[round(t * FPS)]

    # Text box: opacity 0 -> 1 and x 25% -> 75% of the width over the first second.
    assert is_colour(at(0)[48, 80], BLACK), "the text box starts transparent"
    assert is_colour(at(0.5)[48, 160], (128, 0, 0), tolerance=30), "half faded, half way"
    assert is_colour(at(0.5)[48, 80], BLACK), "and no longer at its start"
    assert is_colour(at(1)[48, 240], RED), "opaque at its end position"
    assert is_colour(at(1.5)[48, 240], RED)
    for t in (0, 0.5, 1, 1.95):
        assert is_colour(at(t)[168, 64], BLUE), f"image at {t}s"
    # Shape with a linear 1 s fade-in transition.
    assert is_colour(at(0)[168, 256], BLACK)
    assert is_colour(at(0.5)[168, 256], (0, 100, 0), tolerance=25)
    assert is_colour(at(1.5)[168, 256], GREEN)
    # Group: absent before 0.5 s, then its yellow child at the group's position.
    assert is_colour(at(0.25)[204, 160], BLACK)
    assert is_colour(at(1)[204, 160], YELLOW)
    assert is_colour(at(1)[204, 130], BLACK), "the child is 32 px wide"


async def test_two_renders_of_one_document_are_byte_identical(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    text = document()
    specs = [job(text, destination=str(tmp_path / d)) for d in ("a", "b")]
    async with AsyncClient(farm.address) as client:
        jobs = [await client.submit(spec) for spec in specs]
        done = await asyncio.gather(*(client.wait(j.id) for j in jobs))
    assert done[0].content_key == done[1].content_key
    assert not any(j.cache_hit for j in done)
    first, second = (path_of(j.output_url).read_bytes() for j in done)
    assert first == second


async def test_variants_fill_placeholders_from_parameters(farm: FarmProcesses) -> None:
    text = document()
    variants = [{"word": "One", "color": "#ff0000"}, {"word": "Two", "color": "rgb(0,0,255)"}]
    async with AsyncClient(farm.address) as client:
        jobs = [await client.submit(job(text, params)) for params in variants]
        done = await asyncio.gather(*(client.wait(j.id) for j in jobs))
    assert done[0].content_key != done[1].content_key
    colours = [decode(path_of(j.output_url))[30][48, 240] for j in done]
    assert is_colour(colours[0], RED)
    assert is_colour(colours[1], BLUE)


async def test_a_source_that_does_not_load_fails_the_job_once(farm: FarmProcesses) -> None:
    broken = document(image="data:image/png;base64,bm90IGFuIGltYWdl")
    async with AsyncClient(farm.address) as client:
        bad = await client.submit(job(broken))
        with pytest.raises(FramefleetError) as failure:
            await client.wait(bad.id)
        final = await client.get(bad.id)
    assert failure.value.error_class == ErrorClass.TEMPLATE_SCRIPT_ERROR
    assert "could not be loaded" in final.error_message
    assert final.attempt == 1


# --- refused at submit ----------------------------------------------------------------------


def broken(change: str) -> str:
    doc = scene().compile()
    layers = doc["layers"]
    if change == "malformed":
        return json.dumps(doc)[:-20]
    if change == "layer type":
        layers[2]["type"] = "sparkle"
    elif change == "keyframe order":
        keyframes = layers[0]["animations"][0]["keyframes"]
        keyframes[0]["time"], keyframes[1]["time"] = 1, 0.5
    elif change == "size":
        doc["width"] = 100000
    elif change == "duration":
        doc["duration"] = 86400
    elif change == "unknown property":
        layers[3]["children"][0]["properties"]["colour"] = "red"
    elif change == "network image":
        layers[1]["settings"]["source"] = "https://example.invalid/a.png"
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ("malformed", "$: not valid JSON"),
        ("layer type", "$.layers[2].type: unknown layer type"),
        ("keyframe order", "$.layers[0].animations[0].keyframes[1].time"),
        ("size", "$.width"),
        ("duration", "$.duration"),
        ("unknown property", "$.layers[3].children[0].properties.colour"),
        ("network image", "$.layers[1].settings.source"),
        ("missing parameter", "$.layers[0].properties.text: no parameter 'word'"),
    ],
)
async def test_invalid_documents_are_refused_at_submit(
    farm: FarmProcesses, change: str, path: str
) -> None:
    params = {"color": "#fff"} if change == "missing parameter" else PARAMS
    spec = pb.JobSpec(video_json=broken(change), output=pb.OutputSettings(frames=5))
    spec.params.update(params)
    async with AsyncClient(farm.address) as client:
        before = len(await client.list())
        with pytest.raises(FramefleetError) as refused:
            await client.submit(spec)
        assert len(await client.list()) == before, "a refused job was queued"
    assert refused.value.error_class == ErrorClass.INVALID_JOB
    assert path in str(refused.value)


# --- preview --------------------------------------------------------------------------------


def blocks(frame: Frame) -> npt.NDArray[np.float64]:
    """The frame in 2x2 blocks: H.264 4:2:0 keeps colour at that resolution, so sharp colour
    edges differ pixel by pixel from a lossless screenshot, not block by block."""
    f = frame.astype(np.float64)
    return (f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]) / 4


def png_pixels(data: bytes) -> Frame:
    """A PNG or JPEG image's pixels."""
    with av.open(io.BytesIO(data), mode="r") as container:
        frame = next(container.decode(video=0))
        return cast(Frame, frame.to_ndarray(format="rgb24"))


async def test_preview_shows_the_frames_the_farm_renders(farm: FarmProcesses) -> None:
    spec = job(crf=8)
    done = await render(farm, spec)
    rendered = decode(path_of(done.output_url))
    server = PreviewServer(Preview.of(spec, "scene")).start()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
            )
            page = await browser.new_page(viewport={"width": 800, "height": 600})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(server.url + "?fit=0")
            await page.evaluate("() => window.framefleetPreview.ready")
            for n in (0, 7, 10, 20, 33):
                await page.evaluate("ms => window.framefleetPreview.seek(ms)", n * 1000 / FPS)
                shown = blocks(png_pixels(await page.locator("#job").screenshot()))
                difference = np.abs(shown - blocks(rendered[n]))
                assert difference.mean() < 1.5, f"frame {n}: mean difference {difference.mean()}"
                assert difference.max() < 40, f"frame {n}: max difference {difference.max()}"
                if n == 10:  # and the comparison can tell neighbouring frames apart
                    assert np.abs(shown - blocks(rendered[n + 2])).mean() > 3 * difference.mean()
            label = await page.locator("#time").text_content()
            assert label is not None and label.startswith("frame 33 /")
            await browser.close()
    finally:
        server.close()
    assert not errors


def test_preview_command_serves_a_document(tmp_path: Path) -> None:
    (tmp_path / "blue.png").write_bytes(png(8, 8, BLUE))
    (tmp_path / "doc.json").write_text(scene(image="blue.png").to_json())
    (tmp_path / "p.json").write_text(json.dumps(PARAMS))
    command = framefleet(
        "preview", str(tmp_path / "doc.json"), "--params", str(tmp_path / "p.json"), "--port", "0"
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split(": ", 1)[1].split()[0]
        player = urllib.request.urlopen(url, timeout=10).read().decode()
        assert 'src="job/index.html"' in player
        page = urllib.request.urlopen(url + "job/index.html", timeout=10).read().decode()
        assert "window.__framefleet = {" in page, "the agent's time-control runtime comes first"
        assert page.index("__framefleetParams") < page.index("videoflow/runtime.js")
        assert "data:image/png;base64," in page, "the image beside the document is inlined"
        runtime = urllib.request.urlopen(url + "job/videoflow/runtime.js", timeout=10)
        assert runtime.headers["Content-Type"] == "text/javascript"
    finally:
        process.terminate()
        process.wait(10)


def test_submit_command_takes_a_json_document(farm: FarmProcesses, tmp_path: Path) -> None:
    (tmp_path / "blue.png").write_bytes(png(8, 8, BLUE))
    (tmp_path / "doc.json").write_text(scene(image="blue.png").to_json())
    (tmp_path / "p.json").write_text(json.dumps(PARAMS))

    def submit(*args: str) -> dict[str, Any]:
        command = ["submit", str(tmp_path / "doc.json"), "--coordinator", farm.address]
        command += ["--params", str(tmp_path / "p.json"), "--json", *args]
        result = subprocess.run(framefleet(*command), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        submitted: dict[str, Any] = json.loads(result.stdout)
        return submitted

    # The document's size, rate and length, unless the command line says otherwise.
    done = submit("--wait")
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    assert done["frames_total"] == 2 * FPS
    assert "video_json" not in done["spec"], "the document is not printed back"
    frames = decode(path_of(done["output_url"]))
    assert is_colour(frames[20][168, 64], BLUE), "the image beside the document was inlined"
    queued = submit("--width", "160", "--height", "120", "--fps", "10", "--priority", "-1")
    assert queued["spec"]["output"]["width"] == 160
    assert queued["frames_total"] == 20


async def test_a_warm_page_swaps_in_the_next_variant() -> None:
    """Variants of one document share a source key: the agent swaps the parameters into the
    loaded shell page instead of reloading it, and the shell rebuilds the document."""
    text = document()
    chromium = await Chromium.launch()
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        seen = []
        for colour, rgb in (("#ff0000", RED), ("rgb(0,0,255)", BLUE)):
            spec = job(text, {"word": "x", "color": colour})
            template, params = page_input(spec)
            swapped = await page.load(template, params, (W, H), 30, jobspec.source_key(spec))
            image = await page.frame(1000, 10)
            assert is_colour(png_pixels(image)[48, 240], rgb), colour
            seen.append(swapped)
        assert seen == [False, True]
    finally:
        await chromium.close()


def mono_font() -> str:
    """A font unlike Noto Sans, from Debian's fonts-dejavu-core (scripts/install_system_deps.sh)."""
    return data_url(
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf").read_bytes(), "font/ttf"
    )


async def test_a_document_brings_its_own_font() -> None:
    """Text in a family from the document's `fonts` is set in that font, not a fallback."""
    font = mono_font()
    frames = []
    chromium = await Chromium.launch()
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        for family in ("Brand", "Noto Sans"):
            flow = VideoFlow(width=W, height=H, fps=FPS)
            flow.add_text({"text": "Willow", "fontSize": 12, "fontFamily": family}, {"name": "t"})
            flow.wait(1)
            doc = flow.compile()
            doc["fonts"] = [{"family": "Brand", "source": font}]
            spec = job(json.dumps(doc), {})
            template, params = page_input(spec)
            await page.load(template, params, (W, H), 30, jobspec.source_key(spec))
            frames.append(png_pixels(await page.frame(0, 10)).astype(int))
    finally:
        await chromium.close()
    brand, noto = frames
    assert brand.max() > 200 and noto.max() > 200, "both show white text"
    assert np.abs(brand - noto).mean() > 2, "the document's font was not used"

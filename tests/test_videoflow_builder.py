"""framefleet.videoflow builds the same documents as @videoflow/core: each scenario here makes
the calls that tests/videojson/builder_reference.mjs makes with the real package under Node,
and the two compiled documents must be equal, layer ids aside. Every document it builds is
also a valid framefleet VideoJSON document."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from framefleet.core import videojson
from framefleet.videoflow import VideoFlow, parse_time, time_to_frames

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "framefleet" / "agent" / "videoflow"
REFERENCE = Path(__file__).parent / "videojson" / "builder_reference.mjs"
IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYPgPAAED"
    "AQAIicLsAAAAAElFTkSuQmCC"
)


def basics() -> VideoFlow:
    flow = VideoFlow(name="Basics", width=640, height=360, fps=30, background_color="#101010")
    title = flow.add_text(
        {"text": "Hello {{name}}", "fontSize": 6, "color": "#ffffff"}, {"sourceDuration": "3s"}
    )
    title.fade_in("1s")
    title.animate(
        {"position": [0.2, 0.3]}, {"position": [0.8, 0.3]}, duration="1.5s", easing="easeOut"
    )
    flow.wait("500ms")
    title.set({"color": "#ff0000"})
    title.fade_out("15f", "linear")
    return flow


def layers() -> VideoFlow:
    flow = VideoFlow(width=320, height=240, fps=25)
    flow.add_image(
        {"fit": "cover", "opacity": 0.8},
        {"source": IMAGE, "sourceDuration": 2, "startTime": "00:01"},
    )
    box = flow.add_shape(
        {"width": 20, "height": 10, "fill": "#00ff00", "cornerRadius": 2},
        {
            "shapeType": "ellipse",
            "transitionIn": {"transition": "fade", "duration": "400ms"},
            "transitionOut": {"transition": "slideUp", "params": {"distance": 0.1}},
        },
        wait_for="1s",
        index=2,
    )
    box.animate({}, {"scale": 1.5, "rotation": 45}, duration=0.5, wait=False)
    star = flow.add_shape(
        {
            "fill": "#ffff00",
            "sides": 5,
            "effects": [{"effect": "vignette", "params": {"strength": 0.5}}],
        },
        {"shapeType": "star", "speed": 2, "sourceDuration": "4s"},
        index=-1,
    )
    star.animate(
        {"effects.vignette.strength": 0.1}, {"effects.vignette.strength": 0.9}, duration="1s"
    )
    star.hide()
    flow.wait(1)
    star.show()
    box.remove(in_="250ms")
    flow.add_captions(
        {"fontSize": 3},
        {"captions": [{"caption": "One", "startTime": 0, "endTime": 1}], "sourceDuration": "1s"},
    )
    return flow


def groups() -> VideoFlow:
    flow = VideoFlow(name="Groups", width=640, height=360, fps=30)
    flow.add_text({"text": "Before"}, {"sourceDuration": "1s"}, wait_for="finish")
    with flow.group(
        {"position": [0.5, 0.6], "scale": 1},
        {
            "transitionIn": {"transition": "zoom", "duration": "600ms", "easing": "easeOut"},
            "transitionOut": {"transition": "fade"},
        },
    ) as card:
        flow.add_shape({"width": 30, "height": 30, "fill": "#0e1524"}, {"sourceDuration": "2s"})
        flow.wait("0.5s")
        label = flow.add_text(
            {"text": "A rather long label that is truncated in its name", "fontSize": 2},
            {"sourceDuration": "1s"},
        )
        label.fade_in("200ms")
        flow.group(
            {}, {"name": "inner"}, lambda _: flow.add_text({"text": 42}, {"sourceDuration": "0.5s"})
        )
    card.animate({"scale": 1}, {"scale": 1.1}, duration="500ms")
    flow.add_text({"text": "After"}, {"sourceDuration": "1s"})
    flow.group(
        {"opacity": 0.5},
        {"startTime": 5, "sourceDuration": "1s"},
        lambda _: flow.add_shape({"fill": "#ffffff"}, {}),
        wait_for="0.25s",
    )
    return flow


def parallel() -> VideoFlow:
    flow = VideoFlow(width=320, height=180, fps=60, easing="linear")
    a = flow.add_text({"text": "A"}, {"sourceDuration": "5s"})
    b = flow.add_shape({"fill": "#ff0000"}, {"sourceDuration": "5s"})

    def first() -> None:
        a.fade_in("1s")
        a.animate({"scale": 1}, {"scale": 2}, duration="2s")

    def second() -> None:
        flow.add_text({"text": "C"}, {"sourceDuration": "1s"})
        flow.add_text({"text": "E"})  # branches interleave at each layer, as in JavaScript
        flow.wait("500ms")
        b.fade_out("3s")

    def third() -> None:
        flow.add_shape({"fill": "#0000ff"})
        flow.add_text({"text": "D"}, {"sourceDuration": 1})

    flow.parallel([first, second, third])
    a.set({"text": "A2"})
    flow.wait("10f")
    return flow


SCENARIOS: dict[str, Callable[[], VideoFlow]] = {
    "basics": basics,
    "layers": layers,
    "groups": groups,
    "parallel": parallel,
}


@cache
def reference() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (RUNTIME / "node_modules" / "@videoflow" / "core").is_dir():
        pytest.fail("Node and framefleet/agent/videoflow/node_modules are needed: run `make setup`")
    run = subprocess.run(
        [node, str(REFERENCE), str(RUNTIME)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def test_reference_scenarios_are_the_ones_here() -> None:
    assert sorted(reference()) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_python_builder_compiles_what_videoflow_compiles(name: str) -> None:
    ours = SCENARIOS[name]().compile()
    theirs = reference()[name]
    assert json.loads(json.dumps(without_ids(ours))) == without_ids(theirs)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_built_documents_are_valid_videojson(name: str) -> None:
    document = SCENARIOS[name]().compile()
    ids = [layer["id"] for layer in document["layers"]]
    assert len(set(ids)) == len(ids)
    text = json.dumps(document)
    params = {"name": "Ada"}
    resolved = videojson.resolve(text, params)
    assert resolved["width"] == document["width"]


@pytest.mark.parametrize(
    ("time", "fps", "seconds"),
    [
        (5, 30, 5.0),
        ("5", 30, 5.0),
        ("2.5s", 30, 2.5),
        ("500ms", 30, 0.5),
        ("2m", 30, 120.0),
        ("1h", 30, 3600.0),
        ("15f", 30, 0.5),
        ("01:30", 30, 90.0),
        ("01:02:30", 30, 3750.0),
        ("00:00:01:15", 30, 1.5),
    ],
)
def test_time_formats(time: float | str, fps: int, seconds: float) -> None:
    assert parse_time(time, fps) == pytest.approx(seconds)


def test_frames_round_half_up_like_javascript() -> None:
    assert time_to_frames(0.5 / 30 * 3, 30) == 2  # 1.5 frames: Math.round gives 2
    assert time_to_frames("25ms", 60) == 2  # 1.5 frames again

"""VideoJSON as a job source, without a farm: reading a document with its files, parameters,
checks, output settings, the page the agent loads, and the committed schema against the npm
packages it describes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from framefleet.agent.sources import page_input
from framefleet.agent.videojson import RUNTIME_DIR, page_document
from framefleet.core import jobspec, videojson
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.videoflow import VideoFlow
from tests.docs_site import page

PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC"
)
NODE_MODULES = RUNTIME_DIR / "node_modules"


def small(**settings: Any) -> dict[str, Any]:
    flow = VideoFlow(name="small", width=320, height=240, fps=30)
    flow.add_text({"text": "Hi {{name}}", "fontSize": "{{size}}"}, {"name": "t", **settings})
    flow.wait(1)
    return flow.compile()


def refused(text: str, params: dict[str, Any] | None = None) -> str:
    with pytest.raises(FramefleetError) as error:
        videojson.resolve(text, params or {})
    assert error.value.error_class == ErrorClass.INVALID_JOB
    return str(error.value)


# --- parameters -----------------------------------------------------------------------------


def test_placeholders_take_parameters() -> None:
    document = {"a": "{{n}}", "b": "n={{n}}", "c": ["{{ flag }}", "{{who.name}}!"], "d": 2}
    params = {"n": 12, "flag": True, "who": {"name": "Ada"}}
    assert videojson.substitute(document, params) == {
        "a": 12,  # a whole placeholder keeps the parameter's JSON type
        "b": "n=12",
        "c": [True, "Ada!"],
        "d": 2,
    }
    assert videojson.substitute({"x": "{{f}} {{g}}"}, {"f": 1.5, "g": None}) == {"x": "1.5 null"}


def test_a_placeholder_without_a_parameter_is_refused_with_its_path() -> None:
    message = refused(json.dumps(small()), {"size": 5})
    assert "$.layers[0].properties.text: no parameter 'name'" in message


def test_typed_parameters_are_checked_after_substitution() -> None:
    assert videojson.resolve(json.dumps(small()), {"name": "Ada", "size": 5})
    message = refused(json.dumps(small()), {"name": "Ada", "size": [1, 2, 3, 4, 5]})
    assert "$.layers[0].properties.fontSize" in message


# --- reading files --------------------------------------------------------------------------


def test_load_inlines_files_beside_the_document(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "dot.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "Brand.woff2").write_bytes(b"wOF2 fake")
    flow = VideoFlow(width=320, height=240)
    with flow.group():
        flow.add_image({}, {"source": "img/dot.png", "sourceDuration": 1})
    document = flow.compile()
    document["fonts"] = [{"family": "Brand", "source": "Brand.woff2"}]
    (tmp_path / "doc.json").write_text(json.dumps(document))
    loaded = json.loads(videojson.load(tmp_path / "doc.json"))
    source = loaded["layers"][0]["children"][0]["settings"]["source"]
    assert source == "data:image/png;base64,iVBORyBmYWtl"
    assert loaded["fonts"][0]["source"].startswith("data:font/woff2;base64,")


@pytest.mark.parametrize(
    ("source", "message"),
    [("missing.png", "no file 'missing.png'"), ("../outside.png", "must stay inside")],
)
def test_load_refuses_files_it_cannot_inline(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "outside.png").write_bytes(b"x")
    (tmp_path / "doc").mkdir()
    flow = VideoFlow(width=320, height=240)
    flow.add_image({}, {"source": source, "sourceDuration": 1})
    (tmp_path / "doc" / "doc.json").write_text(flow.to_json())
    with pytest.raises(FramefleetError) as error:
        videojson.load(tmp_path / "doc" / "doc.json")
    assert "$.layers[0].settings.source" in str(error.value)
    assert message in str(error.value)


def test_load_of_a_missing_file_is_template_not_found(tmp_path: Path) -> None:
    with pytest.raises(FramefleetError) as error:
        videojson.load(tmp_path / "nothing.json")
    assert error.value.error_class == ErrorClass.TEMPLATE_NOT_FOUND


# --- the job --------------------------------------------------------------------------------


def test_output_settings_default_to_the_documents_and_can_be_overridden() -> None:
    text = json.dumps(small())
    spec = jobspec.video_json_job(text, {"name": "Ada", "size": 4})
    output = jobspec.validate(spec)
    assert (output.width, output.height, output.fps, output.frames) == (320, 240, 30, 30)
    spec = jobspec.video_json_job(text, {"name": "Ada", "size": 4}, width=640, height=480, fps=10)
    assert jobspec.validate(spec).frames == 10
    assert (
        jobspec.validate(jobspec.video_json_job(text, {"name": "A", "size": 4}, frames=7)).frames
        == 7
    )
    assert jobspec.video_json_job(text, frames=7).output.duration_seconds == 0


def test_content_key_covers_document_and_parameters() -> None:
    one = jobspec.video_json_job(json.dumps(small()), {"name": "Ada", "size": 4})
    other_params = jobspec.video_json_job(one.video_json, {"name": "Bob", "size": 4})
    other_document = jobspec.video_json_job(json.dumps(small(enabled=False)), {"size": 4})
    keys = {jobspec.content_key(s) for s in (one, other_params, other_document)}
    assert len(keys) == 3
    assert jobspec.content_key(one) == jobspec.content_key(
        jobspec.video_json_job(one.video_json, {"name": "Ada", "size": 4})
    )


def test_the_agent_loads_the_shell_page_with_the_document_at_the_output_size() -> None:
    spec = jobspec.video_json_job(
        json.dumps(small()), {"name": "Ada", "size": 4}, width=640, height=480, fps=60
    )
    template, params = page_input(spec)
    assert "VideoFlowRuntime" in template.html
    assert {"videoflow/runtime.js", "videoflow/fonts.css"} <= set(template.assets)
    assert any(p.endswith(".woff2") for p in template.assets)
    document = params["document"]
    assert (document["width"], document["height"], document["fps"]) == (640, 480, 60)
    assert document["layers"][0]["properties"]["text"] == "Hi Ada"
    assert document == page_document(spec)
    template_spec = jobspec.template_job(
        Path(__file__).parent / "templates" / "moving_box.html", {"color": "red"}, duration=1
    )
    assert page_input(template_spec) == (template_spec.template, {"color": "red"})


# --- the schema and the npm packages --------------------------------------------------------


def test_schema_is_a_valid_json_schema() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(videojson.schema())


def node_json(script: str) -> Any:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@videoflow" / "core").is_dir():
        pytest.fail("Node and framefleet/agent/videoflow/node_modules are needed: run `make setup`")
    run = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=RUNTIME_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_schema_knows_every_property_of_every_videoflow_layer_type() -> None:
    theirs = node_json(
        "import * as core from '@videoflow/core';"
        "const types = {text: core.TextLayer, captions: core.CaptionsLayer,"
        " image: core.ImageLayer, video: core.VideoLayer, audio: core.AudioLayer,"
        " shape: core.ShapeLayer, group: core.GroupLayer};"
        "console.log(JSON.stringify(Object.fromEntries(Object.entries(types).map("
        "([t, C]) => [t, Object.keys(C.propertiesDefinition).sort()]))));"
    )
    defs = videojson.schema()["$defs"]
    assert sorted(defs["layer"]["properties"]["type"]["enum"]) == sorted(theirs)
    for kind, names in theirs.items():
        body = defs[f"{kind}Layer"]["properties"]["properties"]
        ours = set(body["properties"])
        for group in body.get("allOf", []):
            ours |= set(defs[group["$ref"].rsplit("/", 1)[1]]["properties"])
        assert sorted(ours) == names, kind
        animated = defs[f"{kind}Layer"]["properties"]["animations"]["items"]["properties"]
        assert animated["property"]["anyOf"][0]["enum"] == names, kind


@pytest.mark.parametrize(
    ("kind", "directory"), [("transition", "transitions"), ("effect", "effects")]
)
def test_schema_lists_the_renderers_built_in_presets(kind: str, directory: str) -> None:
    presets = NODE_MODULES / "@videoflow/renderer-browser/dist" / directory / "presets.js"
    registered = set(re.findall(rf"register{kind.title()}\('(\w+)'", presets.read_text()))
    assert registered
    listed = videojson.schema()["$defs"][kind]["properties"][kind]["enum"]
    assert sorted(listed) == sorted(registered)


def test_the_runtime_is_built_from_the_pinned_packages() -> None:
    package = json.loads((RUNTIME_DIR / "package.json").read_text())
    built = json.loads((RUNTIME_DIR / "dist" / "versions.json").read_text())
    for name in ("@videoflow/core", "@videoflow/renderer-browser"):
        assert built[name] == package["dependencies"][name]


def test_the_docs_example_is_a_valid_document() -> None:
    example = page("reference/videojson.md").split("```json\n", 1)[1].split("```", 1)[0]
    document = videojson.resolve(example, {"name": "Ada"})
    assert document["layers"][0]["properties"]["text"] == "Hi Ada"


def test_a_batchs_shared_spec_may_leave_placeholders_to_its_rows() -> None:
    doc = small()
    doc["layers"][0]["properties"]["visible"] = "{{show}}"
    shared = jobspec.video_json_job(json.dumps(doc), {"size": 4})
    assert jobspec.validate(shared, variants=True).frames == 30
    with pytest.raises(FramefleetError, match="no parameter 'name'"):
        jobspec.validate(shared)
    doc["layers"][0]["type"] = "sparkle"
    with pytest.raises(FramefleetError, match=r"\$\.layers\[0\]\.type"):
        jobspec.validate(jobspec.video_json_job(json.dumps(doc)), variants=True)
    row = jobspec.video_json_job(json.dumps(small()), {"size": 4, "name": "Ada", "show": True})
    assert jobspec.validate(row).frames == 30


def test_the_content_key_names_the_pinned_videoflow_runtime() -> None:
    package = json.loads((RUNTIME_DIR / "package.json").read_text())
    name, _, version = jobspec.VIDEOFLOW_RUNTIME.rpartition("@")
    assert package["dependencies"][name] == version, "bump VIDEOFLOW_RUNTIME with the package"

"""Extension points: job sources (core and agent registries) and output sinks by URL scheme."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framefleet import outputs
from framefleet.agent import sources as page_sources
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.store.open import open_store
from framefleet.core import jobspec, sources
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

SOURCE_FIELDS = {f.name for f in pb.JobSpec.DESCRIPTOR.oneofs_by_name["source"].fields}


def template_spec() -> pb.JobSpec:
    template = pb.Template(html="<p>hi</p>", assets={"a.css": b"x", "b/c.png": b"yz"})
    return pb.JobSpec(template=template, output=pb.OutputSettings(frames=2))


def test_every_source_field_is_registered_on_both_sides() -> None:
    assert sources.fields() == SOURCE_FIELDS
    assert page_sources.fields() == SOURCE_FIELDS


def test_source_keys_did_not_change() -> None:
    # Source keys are part of content keys: a change would orphan every cached output.
    assert jobspec.source_key(template_spec()) == (
        "0a5273a920f5bd4eb23823fbb798fde270407c265b2a0101e3bec4aba7a00fd2"
    )
    assert jobspec.source_key(pb.JobSpec(video_json='{"width": 10}')) == (
        "c6402cebf820693ffb781f8cdb7f301bab7e3fcc0705fd28b35885f788492aed"
    )


def test_a_spec_splits_into_its_source_and_the_rest() -> None:
    spec = template_spec()
    spec.params.update({"name": "Ada"})
    source, rest = sources.source_only(spec), sources.without_source(spec)
    assert source == pb.JobSpec(template=spec.template)
    assert rest.WhichOneof("source") is None and rest.params == spec.params
    rest.MergeFrom(source)
    assert rest == spec


def test_a_spec_without_a_source_is_invalid() -> None:
    with pytest.raises(FramefleetError) as error:
        jobspec.validate(pb.JobSpec(output=pb.OutputSettings(frames=1)))
    assert error.value.error_class == ErrorClass.INVALID_JOB
    assert "no source" in str(error.value)


class Recording:
    """A stand-in source registered in place of the template one."""

    def __init__(self) -> None:
        self.validated: list[bool] = []

    def validate(self, spec: pb.JobSpec, *, variants: bool) -> None:
        self.validated.append(variants)
        if spec.template.html == "refuse":
            raise jobspec.invalid("refused by the registered source")

    def identity(self, spec: pb.JobSpec) -> Iterator[bytes]:
        yield b"always the same"

    def page_input(self, spec: pb.JobSpec) -> tuple[pb.Template, dict[str, Any]]:
        return pb.Template(html="<p>page</p>"), {"from": "registry"}


RECORDING = Recording()


def test_a_registered_source_decides_validation_keys_and_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "_SOURCES", {})
    monkeypatch.setattr(page_sources, "_PAGES", {})
    sources.register("template", f"{__name__}:RECORDING")
    page_sources.register("template", f"{__name__}:RECORDING")
    spec = template_spec()
    jobspec.validate(spec, variants=True)
    assert RECORDING.validated[-1] is True
    with pytest.raises(FramefleetError, match="refused by the registered source"):
        jobspec.validate(pb.JobSpec(template=pb.Template(html="refuse")))
    other = pb.JobSpec(template=pb.Template(html="<p>different</p>"))
    assert jobspec.source_key(spec) == jobspec.source_key(other)
    assert page_sources.page_input(spec) == (pb.Template(html="<p>page</p>"), {"from": "registry"})


def test_an_agent_without_the_source_fails_retryably(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page_sources, "_PAGES", {})
    with pytest.raises(FramefleetError) as error:
        page_sources.page_input(template_spec())
    assert error.value.retryable


# --- output sinks ---------------------------------------------------------------------------


def test_sinks_are_chosen_by_scheme(tmp_path: Path) -> None:
    assert {"file", "s3"} <= outputs.schemes()
    assert outputs.supports(jobspec.destination_url(str(tmp_path)))
    assert outputs.supports("s3://bucket/prefix/")
    assert not outputs.supports("ftp://host/dir/")
    with pytest.raises(FramefleetError) as error:
        outputs.open_upload("ftp://host/dir/x.mp4")
    assert error.value.error_class == ErrorClass.OUTPUT_ERROR


class MemoryUpload:
    def __init__(self) -> None:
        self.data = bytearray()
        self.completed = False

    @property
    def upload_id(self) -> str:
        return "memory-upload"

    def write(self, data: bytes) -> None:
        self.data += data

    async def complete(self) -> None:
        self.completed = True

    async def abort(self) -> None:
        self.data.clear()


class MemorySink:
    def __init__(self) -> None:
        self.uploads: dict[str, MemoryUpload] = {}
        self.aborted: list[tuple[str, str]] = []

    def open_upload(self, url: str) -> MemoryUpload:
        return self.uploads.setdefault(url, MemoryUpload())

    async def abort_upload(self, url: str, upload_id: str) -> None:
        self.aborted.append((url, upload_id))


MEMORY = MemorySink()


async def test_a_registered_sink_receives_uploads_and_aborts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from framefleet.outputs import registry

    monkeypatch.setattr(registry, "_SINKS", dict(registry._SINKS))
    outputs.register("memory", f"{__name__}:MEMORY")
    upload = outputs.open_upload("memory://bucket/a.mp4")
    upload.write(b"frames")
    await upload.complete()
    assert MEMORY.uploads["memory://bucket/a.mp4"].data == b"frames"
    await outputs.abort_upload("memory://bucket/b.mp4", "id-1")
    await outputs.abort_upload("memory://bucket/c.mp4", "")  # nothing was started
    assert MEMORY.aborted == [("memory://bucket/b.mp4", "id-1")]


async def test_the_coordinator_refuses_a_destination_no_sink_can_write(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    try:
        farm = Farm(store, CoordinatorConfig(allowed_outputs=["ftp://host/"]))
        spec = template_spec()
        spec.destination = "ftp://host/dir"
        with pytest.raises(FramefleetError) as error:
            await farm.submit(spec)
        assert error.value.error_class == ErrorClass.INVALID_JOB
        assert "no output sink" in str(error.value)
    finally:
        await store.close()

"""One job gives one file: the same pictures encode to the same bytes run after run, in every
process and on every host, and the CLI renders one job to one file however it is split.

The pictures are 176 px wide on purpose: x264's AVX-512 macroblock tree read past the end of a
row whenever the lowres width in macroblocks (here 11) is not a multiple of 8, and the bytes
changed from run to run in one process (framefleet/agent/pinned_cpu.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from framefleet.agent import pinned_cpu
from framefleet.agent.encoder import H264Encoder
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import Output
from tests.conftest import TEMPLATES
from tests.farm_processes import framefleet
from tests.test_chunks import OUTPUT, jpegs, tone
from tests.video import decode

ROOT = Path(__file__).resolve().parent.parent
PICTURES = dataclasses.replace(OUTPUT, width=176, fps=30, frames=7 * 30 - 3)
# (format, with sound) -> the SHA-256 of the file, on any x86-64-v3 host with the locked PyAV.
# A change here is a change of every job's bytes: bump RENDERER_VERSION with it.
EXPECTED = {
    ("mp4", False): "c07297c0",
    ("mp4", True): "bf7c6252",
    ("hls", False): "4ae99b51",
    ("hls", True): "ccb8dbea",
    ("webm", False): "c109cb1e",
    ("webm", True): "70bc2be2",
}


def encode(output: Output, sound: bool, images: list[bytes]) -> str:
    """The file's SHA-256 (first 8 hex digits), encoded synchronously on this thread."""
    out = io.BytesIO()
    encoder = H264Encoder(output, out.write, soundtrack=tone(output) if sound else None)
    for image in images:
        encoder._encode(image)
    encoder._close(True)
    return hashlib.sha256(out.getvalue()).hexdigest()[:8]


def encode_in_a_new_process(fmt: str, sound: bool) -> str:
    code = (
        "from tests.test_determinism import PICTURES, encode, jpegs; import dataclasses;"
        f"o = dataclasses.replace(PICTURES, format={fmt!r});"
        f"print(encode(o, {sound}, jpegs(o)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.mark.parametrize(("fmt", "sound"), list(EXPECTED))
def test_the_same_pictures_give_the_same_bytes_every_run_every_process_every_host(
    fmt: str, sound: bool
) -> None:
    output = dataclasses.replace(PICTURES, format=fmt)
    images = jpegs(output)
    runs = {encode(output, sound, images) for _ in range(20)}
    assert len(runs) == 1, f"20 encodes in one process gave {len(runs)} different files"
    (digest,) = runs
    assert encode_in_a_new_process(fmt, sound) == digest
    assert digest == EXPECTED[(fmt, sound)], (
        "this host encodes other bytes than the hosts before it: a PyAV (FFmpeg, x264) "
        "other than the locked one, or a CPU whose pinned instructions round differently"
    )


def test_a_host_without_the_pinned_instructions_is_refused_by_name() -> None:
    flags = set(pinned_cpu.REQUIRED_FEATURES)
    assert pinned_cpu.missing_features("x86_64", flags) == []
    assert pinned_cpu.missing_features("x86_64", flags - {"avx2", "fma"}) == ["avx2", "fma"]
    assert pinned_cpu.missing_features("aarch64", flags) == ["x86-64 (this host is aarch64)"]


def test_pinning_refuses_rather_than_encoding_other_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    pinned_cpu.pin.cache_clear()
    try:
        with pytest.raises(FramefleetError) as refused:
            H264Encoder(PICTURES, io.BytesIO().write)
        assert refused.value.error_class == ErrorClass.ENCODE_ERROR
        assert "x86-64" in str(refused.value)
    finally:
        monkeypatch.undo()
        pinned_cpu.pin.cache_clear()
        pinned_cpu.pin()


@pytest.mark.e2e
def test_the_cli_renders_one_job_to_one_file_however_it_is_split(tmp_path: Path) -> None:
    """`framefleet render` of one job, whole and in 1, 2 and 4 chunks, each in a farm of its
    own (so none is a cache hit): four renders, one file."""
    files = set()
    for chunks in ("0", "1", "2", "4"):
        out = tmp_path / f"chunks-{chunks}"
        result = subprocess.run(
            framefleet(
                "render",
                str(TEMPLATES / "moving_box.html"),
                *("--width", "176", "--height", "96", "--fps", "10", "--duration", "8"),
                *(("--chunks", chunks) if chunks != "0" else ()),
                *("--slots", "2", "--json", "--out", str(out)),
            ),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        job = json.loads(result.stdout)
        assert job["frames_done"] == 80
        (video,) = out.rglob("*.mp4")
        files.add(video.read_bytes())
    assert len(files) == 1, f"one job rendered whole and split gave {len(files)} files"
    assert len(decode(video)) == 80

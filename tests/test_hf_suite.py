"""HyperFrames' own regression suite as a gate (bench/hf_suite.py): a small fixed subset of its
fixtures rendered by the HyperFrames CLI (installed by scripts/install_hyperframes.sh, references
cached in ~/.cache/framefleet/hf-refs) and by framefleet, judged by HyperFrames' own thresholds;
a fixture framefleet cannot render faithfully must fail with an error class, never succeed.
The fixtures live outside the repository (../shared/hf-fixtures, FRAMEFLEET_HF_FIXTURES); without
them the rendering tests are skipped, saying so."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import hf_suite

# Small and fast: a transparent WebM (2 s, 640x360), a nested composition's CSS (2 s, 1280x720),
# a shader transition framefleet refuses (2 s, 640x360), and a steady tone under a host without
# a composition id (3 s, 1080x1920 at 24 fps), whose sound HyperFrames' rule judges closely.
SUBSET = {
    "missing-host-comp-id": "pass",
    "webm-transparency": "pass",
    "wysiwyg-subcomp-css": "pass",
    "page-side-shader-compositor-render-compat": "refused",
}


def test_cdn_libraries_map_to_npm_files() -> None:
    assert hf_suite.npm_file("https://cdn.jsdelivr.net/npm/gsap@3.14.2/dist/gsap.min.js") == (
        "gsap", "3.14.2", "dist/gsap.min.js",
    )  # fmt: skip
    assert hf_suite.npm_file("https://cdnjs.cloudflare.com/ajax/libs/gsap/3.12.2/gsap.min.js") == (
        "gsap", "3.12.2", "dist/gsap.min.js",
    )  # fmt: skip
    assert hf_suite.npm_file("https://unpkg.com/leaflet@1.9.4/dist/leaflet.js") == (
        "leaflet", "1.9.4", "dist/leaflet.js",
    )  # fmt: skip
    assert hf_suite.npm_file("https://example.com/clip.mp4") is None


def test_hyperframes_audio_rule() -> None:
    rng = np.random.default_rng(1)
    tone = (rng.standard_normal(48000 * 2) * 3000).astype(np.int16)
    a = hf_suite.envelope(tone)
    assert hf_suite.audio_correlation(a, a, 1) == pytest.approx(1.0)
    assert hf_suite.audio_correlation(np.zeros(40), np.zeros(40), 1) == 1.0  # both silent
    assert hf_suite.audio_correlation(a, a[::-1].copy(), 1) < 0.5


def test_lfs_media_and_network_media_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "lfs" / "src"
    src.mkdir(parents=True)
    (src / "index.html").write_text("<video src='clip.mp4'></video>")
    (src / "clip.mp4").write_bytes(hf_suite.LFS + b"\noid sha256:00\nsize 1\n")
    meta = {"minPsnr": 30, "maxFrameFailures": 0, "renderConfig": {"fps": 30}}
    fixture = hf_suite.Fixture("lfs", tmp_path / "lfs", meta)
    assert hf_suite.skip_reason(fixture).startswith("Git LFS media")
    (src / "clip.mp4").unlink()
    (src / "index.html").write_text("<audio src='https://media.example/a.mp3'></audio>")
    assert hf_suite.skip_reason(fixture).startswith("network media")
    (src / "index.html").write_text(
        '<script src="https://cdn.jsdelivr.net/npm/gsap@3/dist/gsap.min.js"></script>'
    )
    assert hf_suite.skip_reason(fixture) == ""
    fixture.meta["renderConfig"]["hdr"] = True
    assert hf_suite.skip_reason(fixture).startswith("HDR")
    del fixture.meta["minPsnr"]
    assert hf_suite.skip_reason(fixture).startswith("meta.json has no minPsnr")


@pytest.fixture(scope="module")
def cli() -> Iterator[Path]:
    if not hf_suite.FIXTURES.is_dir():
        pytest.skip(f"HyperFrames' fixtures are not at {hf_suite.FIXTURES}")
    yield hf_suite.hyperframes_cli()


@pytest.mark.e2e
@pytest.mark.hf_suite
@pytest.mark.parametrize(("name", "expected"), sorted(SUBSET.items()))
def test_fixture_meets_hyperframes_thresholds(cli: Path, name: str, expected: str) -> None:
    (fixture,) = hf_suite.fixtures([name])
    with tempfile.TemporaryDirectory(prefix="hf-suite-") as tmp:
        result = hf_suite.run(fixture, cli, Path(tmp), 0)
    assert result.outcome == expected, f"{name}: {result.outcome} ({result.detail})"
    if expected == "refused":
        assert result.detail.startswith("TEMPLATE_UNSUPPORTED"), result.detail

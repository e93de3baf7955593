"""The README's quick start on a bare Debian bookworm, in a container: only git and make (and the
CA roots the registries' proxy needs) are there; `make example` must install the rest itself,
nothing more, and render the example to an MP4 a user can play. Select with `-k container`.

The base image is made locally (tests/containers.py); apt's and pip's downloads are cached in
podman volumes, so a rerun skips the downloads but still installs everything in a fresh
container."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests import containers

pytestmark = [pytest.mark.e2e, pytest.mark.container]

# examples/referral: 12 s at 30 fps, 1280x720 (examples/referral/README.md).
EXAMPLE_FRAMES = 12 * 30
EXAMPLE_SIZE = (1280, 720)
# What one local render must not pull in (`make example` is not `make setup`).
NOT_FOR_THE_EXAMPLE = ["postgresql", "golang-go", "protobuf-compiler", "podman", "nodejs"]


@pytest.mark.timeout(1500)
def test_make_example_renders_on_bare_bookworm_given_only_git_and_make(tmp_path: Path) -> None:
    containers.require_podman()
    image = containers.quick_start()
    containers.source_archive(tmp_path / "source.tar")
    result = tmp_path / "result"
    result.mkdir()
    unwanted = " ".join(NOT_FOR_THE_EXAMPLE)
    script = f"""set -e
        mkdir /src && tar -xf /in/source.tar -C /src && cd /src
        make example
        cp -r out /result/
        for p in {unwanted}; do
          if dpkg -s "$p" >/dev/null 2>&1; then echo "UNWANTED package $p"; fi
        done
        if [ -e .tools ]; then echo "UNWANTED .tools"; fi
        for tool in go cargo protoc helm; do
          if command -v "$tool" >/dev/null; then echo "UNWANTED $tool"; fi
        done
    """
    volumes = [arg for volume in containers.CACHE_VOLUMES for arg in ("-v", volume)]
    output = containers.podman(
        "run", "--rm", "-v", f"{tmp_path}:/in:ro", "-v", f"{result}:/result", *volumes,
        image, "bash", "-c", script,
        timeout=1400,
    )  # fmt: skip
    assert "UNWANTED" not in output, output[-3000:]
    videos = sorted(result.rglob("*.mp4"))
    assert len(videos) == 1, f"make example left {videos}:\n{output[-3000:]}"
    assert videos[0].name in output, "make example prints the MP4's path"

    with av.open(str(videos[0])) as video:
        stream = video.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == EXAMPLE_SIZE
        frames = 0
        for frame in video.decode(video=0):
            if frames == 2 * 30:  # "Hi, Ada." is on screen: not one flat colour
                assert np.asarray(frame.to_ndarray(format="gray")).std() > 5
            frames += 1
    assert frames == EXAMPLE_FRAMES

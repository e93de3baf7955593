"""``framefleet render`` to each kind of destination, as a user runs it: local directories and
moto's S3 server over HTTP; destinations it cannot write are refused before anything renders."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEMPLATES
from tests.farm_processes import framefleet
from tests.moto_server import CREDENTIALS, MotoServer, object_keys, read_object, s3_client
from tests.video import decode, is_colour

pytestmark = pytest.mark.e2e

BUCKET = "named-renders"
SMALL = ("--frames", "6", "--width", "64", "--height", "64")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    root = tmp_path_factory.mktemp("moto")
    server = MotoServer.start(root / "moto.log")
    try:

        async def create_bucket() -> None:
            async with s3_client(server.url) as s3:
                await s3.create_bucket(Bucket=BUCKET)

        asyncio.run(create_bucket())
        yield server
    finally:
        server.stop()


def s3_env(moto: MotoServer, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        **CREDENTIALS,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "FRAMEFLEET_S3_ENDPOINT": moto.url,
        "XDG_CACHE_HOME": str(home / "cache"),
    }


def render(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        framefleet("render", *args), capture_output=True, text=True, timeout=180, env=env
    )


def s3_objects(moto: MotoServer) -> dict[str, bytes]:
    async def read() -> dict[str, bytes]:
        async with s3_client(moto.url) as s3:
            keys = await object_keys(s3, BUCKET)
            return {key: await read_object(s3, BUCKET, key) or b"" for key in keys}

    return asyncio.run(read())


def test_render_streams_to_s3(moto: MotoServer, tmp_path: Path) -> None:
    result = render(
        str(TEMPLATES / "solid.html"),
        *("--param", "color=rgb(0,0,255)", *SMALL),
        *("--out", f"s3://{BUCKET}/direct"),
        env=s3_env(moto, tmp_path),
    )
    assert result.returncode == 0, result.stderr
    mp4s = {k: v for k, v in s3_objects(moto).items() if k.startswith("direct/")}
    assert len(mp4s) == 1, mp4s.keys()
    key, data = next(iter(mp4s.items()))
    assert result.stdout.rstrip().endswith(f"s3://{BUCKET}/{key}")
    video = tmp_path / "video.mp4"
    video.write_bytes(data)
    frames = decode(video)
    assert len(frames) == 6 and is_colour(frames[3][32, 32], (0, 0, 255))
    assert not list(Path.cwd().glob("s3*")), "a local directory named after the URL"
    # The job table lives in the user's cache, not in a directory named after the URL.
    assert list((tmp_path / "cache" / "framefleet" / "render").glob("*/jobs.db"))


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("gs://bucket/prefix", "cannot write to 'gs://bucket/prefix'"),
        ("s3://", "cannot write to 's3://'"),
        (f"s3://no-such-bucket-{os.getpid()}/x", "cannot write to s3://no-such-bucket"),
    ],
)
def test_render_refuses_a_destination_it_cannot_write(
    moto: MotoServer, tmp_path: Path, out: str, message: str
) -> None:
    before = set(s3_objects(moto))
    result = subprocess.run(
        framefleet("render", str(TEMPLATES / "moving_box.html"), *SMALL, "--out", out),
        capture_output=True,
        text=True,
        timeout=60,
        env=s3_env(moto, tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.mp4")) and not list(tmp_path.glob("*:*"))
    assert not (tmp_path / "cache").exists(), "it started a farm before refusing"
    assert set(s3_objects(moto)) == before

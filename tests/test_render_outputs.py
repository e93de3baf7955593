"""``framefleet render`` to each kind of destination, as a user runs it: local directories and
moto's S3 server over HTTP; destinations it cannot write are refused before anything renders."""

from __future__ import annotations

import asyncio
import json
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


def test_named_outputs_locally_and_after_a_cached_rerun(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = tmp_path / "spring.csv"
    rows.write_text("row_key,color\nblue,blue\nred,red\n")
    command = (
        str(TEMPLATES / "solid.html"),
        *SMALL,
        *("--variants", str(rows), "--name", "{batch}/{row_key}.mp4", "--out", str(out)),
    )
    first = render(*command)
    assert first.returncode == 0, first.stderr
    blue, red = out / "spring" / "blue.mp4", out / "spring" / "red.mp4"
    assert is_colour(decode(blue)[2][32, 32], (0, 0, 255))
    assert is_colour(decode(red)[2][32, 32], (255, 0, 0))
    addressed = sorted(p for p in out.glob("??/??/*.mp4"))
    assert len(addressed) == 2
    # A hard link to the content-addressed output: no second copy of the bytes.
    assert blue.stat().st_ino in {p.stat().st_ino for p in addressed}
    manifest = json.loads((out / "manifests" / "spring.json").read_text())
    assert manifest["rows"]["blue"]["named_url"] == blue.as_uri()

    blue.unlink()
    red.unlink()
    rerun = render(*command)
    assert rerun.returncode == 0, rerun.stderr
    assert "(2 already done)" in rerun.stdout  # nothing rendered again
    assert is_colour(decode(blue)[2][32, 32], (0, 0, 255)) and red.exists()
    assert sorted(out.glob("??/??/*.mp4")) == addressed
    rerun_manifest = json.loads((out / "manifests" / "spring.json").read_text())
    assert rerun_manifest["batch_id"] != manifest["batch_id"]  # the stable name is the newest
    assert all(row["cache_hit"] for row in rerun_manifest["rows"].values())


def test_two_rows_with_one_name_are_refused(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("row_key,color\na,blue\nb,blue\n")
    result = render(
        str(TEMPLATES / "solid.html"),
        *SMALL,
        *("--variants", str(rows), "--name", "{color}.mp4", "--out", str(tmp_path / "out")),
    )
    assert result.returncode == 2
    assert "rows 'a' and 'b' are both named 'blue.mp4'" in result.stderr
    assert not list(tmp_path.rglob("*.mp4"))


def test_named_output_in_s3_and_a_cached_rerun_copies_server_side(
    moto: MotoServer, tmp_path: Path
) -> None:
    def run_named(name: str) -> subprocess.CompletedProcess[str]:
        return render(
            str(TEMPLATES / "solid.html"),
            *("--param", "color=rgb(0,255,0)", "--param", "who=Ada Lovelace/../x", *SMALL),
            *("--name", name, "--out", f"s3://{BUCKET}/named"),
            env=s3_env(moto, tmp_path),
        )

    first = run_named("cards/{who}.mp4")
    assert first.returncode == 0, first.stderr
    objects = {k: v for k, v in s3_objects(moto).items() if k.startswith("named/")}
    named = objects.pop("named/cards/Ada-Lovelace-..-x.mp4")
    assert len(objects) == 1 and next(iter(objects.values())) == named
    assert first.stdout.rstrip().endswith(f"s3://{BUCKET}/named/cards/Ada-Lovelace-..-x.mp4")

    second = run_named("{who}-again")
    assert second.returncode == 0, second.stderr
    assert "cache hit" in second.stdout
    after = {k: v for k, v in s3_objects(moto).items() if k.startswith("named/")}
    assert after["named/Ada-Lovelace-..-x-again.mp4"] == named
    assert len(after) == 3  # the one render, and two names for it

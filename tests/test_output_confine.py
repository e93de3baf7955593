"""The agent's one path rule (outputs/confine.py), under generated hostile URLs and job ids:
whatever a coordinator names, nothing outside the output root is written, read or deleted,
through a symlink, a ``..``, a percent-encoding or a dropped ``#``; every refusal is an
OUTPUT_ERROR. Both ways of resolving are tried: openat2 and the O_NOFOLLOW walk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framefleet.agent.assign_check import job_id_error
from framefleet.core import chunks
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs import confine, registry

# Pieces an attacker would try, joined into paths below the root.
PIECES = [
    "..", ".", "", "%2e%2e", "%2E%2e", ".%2e", "%2f", "%2F..", "%00", "#", "?", "\\", "%5c",
    "link", "lin%6B", "%6c%69%6e%6b", "link%2f", "x.", "a", "b.mp4", "~", "%", "%zz", "%ff",
    "%c0%ae%c0%ae", "outside", "victim.txt", "%23", "%3f", " ", "\t", "\u202e",
]  # fmt: skip


@pytest.fixture(params=["openat2", "walk"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """ROOT (with ROOT/link -> OUTSIDE and ROOT/x. for ``..`` games) and OUTSIDE (a victim)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "x.").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    (root / "link").symlink_to(outside)
    (root / "link-file").symlink_to(outside / "victim.txt")
    saved = confine._has_openat2
    if request.param == "walk":
        confine._has_openat2 = False
    elif not saved:
        pytest.skip("this kernel has no openat2")
    try:
        yield root, outside
    finally:
        confine._has_openat2 = saved


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def attempt(url: str) -> list[ErrorClass]:
    """Every operation on ``url``; the error classes of those refused."""
    refused = []
    for op in (
        lambda: registry.write(url, b"written\n"),
        lambda: registry.size(url),
        lambda: registry.sink_for(url).read(url),
        lambda: registry.assemble([url], url + "-joined"),
        lambda: registry.copy(url, url + "-copy"),
        lambda: registry.delete(url),
    ):
        try:
            await op()
        except FramefleetError as e:
            refused.append(e.error_class)
    return refused


def check_confined(root: Path, outside: Path, url: str) -> None:
    before = snapshot(outside)
    with confine.confined([str(root)]):
        refused = asyncio.run(attempt(url))
    assert set(refused) <= {ErrorClass.OUTPUT_ERROR}, refused
    assert snapshot(outside) == before, url


path_pieces = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6)
separators = st.sampled_from(["/", "//", "/./", "%2F"])


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(pieces=path_pieces, separator=separators, text=st.text(max_size=12))
def test_no_generated_url_leaves_the_root(
    layout: tuple[Path, Path], pieces: list[str], separator: str, text: str
) -> None:
    root, outside = layout
    url = root.as_uri() + "/" + separator.join([*pieces, text])
    check_confined(root, outside, url)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(job_id=st.one_of(st.text(max_size=40), st.sampled_from(["/../../outside/victim.txt#"])))
def test_a_job_id_either_names_a_chunk_beside_the_output_or_is_refused(
    layout: tuple[Path, Path], job_id: str
) -> None:
    root, outside = layout
    output = root.as_uri() + "/x"
    url = chunks.chunk_url(output, job_id, 0)
    if job_id_error(job_id) is None:
        with confine.confined([str(root)]):
            where = confine.place(url)
        assert where.parts == (f"x.{job_id}.chunk000",)
    else:
        assert job_id_error(job_id).error_class == ErrorClass.OUTPUT_ERROR  # type: ignore[union-attr]
    check_confined(root, outside, url)


@pytest.mark.parametrize(
    "url",
    [
        "{root}/x./../../outside/victim.txt#.chunk000",  # issue 26, escape 1
        "{root}/lin%6B/victim.txt",  # issue 26, escape 2
        "{root}/link/victim.txt",
        "{root}/%2e%2e/outside/victim.txt",
        "{root}/x.%2F..%2F..%2Foutside%2Fvictim.txt",
        "file://elsewhere{path}/victim.txt",
        "{root}/a?b",
        "{root}/a%00b",
    ],
)
def test_the_known_escapes_are_refused(layout: tuple[Path, Path], url: str) -> None:
    root, outside = layout
    url = url.format(root=root.as_uri(), path=outside)
    before = snapshot(outside)
    with confine.confined([str(root)]), pytest.raises(FramefleetError) as refused:
        asyncio.run(registry.write(url, b"x"))
    assert refused.value.error_class == ErrorClass.OUTPUT_ERROR
    check_confined(root, outside, url)
    assert snapshot(outside) == before


def test_a_symlinked_file_is_never_read_through(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    url = (root / "link-file").as_uri()
    with confine.confined([str(root)]), pytest.raises(FramefleetError) as refused:
        asyncio.run(registry.sink_for(url).read(url))
    assert refused.value.error_class == ErrorClass.OUTPUT_ERROR
    check_confined(root, outside, url)  # a write replaces the link itself, inside the root


def test_inside_the_root_everything_works(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    base = root.as_uri()

    async def run() -> None:
        await registry.write(f"{base}/a/b/one.mp4", b"1")
        await registry.write(f"{base}/a/b/two.mp4", b"22")
        assert await registry.size(f"{base}/a/b/two.mp4") == 2
        size = await registry.assemble([f"{base}/a/b/one.mp4", f"{base}/a/b/two.mp4"], f"{base}/j")
        assert size == 3 and (root / "j").read_bytes() == b"122"
        await registry.copy(f"{base}/j", f"{base}/named/j.mp4")
        await registry.delete(f"{base}/a/b/one.mp4")
        await registry.delete(f"{base}/a/b/two.mp4")

    with confine.confined([str(root)]):
        asyncio.run(run())
    assert (root / "named" / "j.mp4").read_bytes() == b"122"
    assert not (root / "a" / "b").exists()  # emptied folders go too


def test_s3_keys_stay_under_their_prefix() -> None:
    with confine.confined(["s3://bucket/videos"]):
        assert confine.place("s3://bucket/videos/ab/key.mp4").parts == ("videos", "ab", "key.mp4")
        for url in (
            "s3://bucket/videos/../secrets/key",
            "s3://bucket/videos/%2e%2e/secrets/key",
            "s3://bucket/videos//key",
            "s3://bucket/videosx/key",
            "s3://other/videos/key",
            "s3://bucket/videos/key#x",
            "s3://bucket/videos",
        ):
            with pytest.raises(FramefleetError) as refused:
                confine.place(url)
            assert refused.value.error_class == ErrorClass.OUTPUT_ERROR, url
            assert "bucket/videos'" not in str(refused.value).split("refused:")[1]

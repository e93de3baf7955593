"""Batches end to end: rows from CSV through the CLI and the SDK, warm parameter swaps, the
digest and manifest, resubmits as cache hits, fairness and cancel."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from framefleet import AsyncClient, ErrorClass, FramefleetError, template_job
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, framefleet
from tests.video import decode, is_colour, path_of

pytestmark = pytest.mark.e2e

COLOURS = {"ada": (255, 0, 0), "grace": (0, 200, 0), "alan": (0, 0, 255), "edsger": (200, 200, 0)}


def write_rows(path: Path, extra: str = "") -> Path:
    lines = ["row_key,color" + (",explode" if extra else "")]
    for key, rgb in COLOURS.items():
        cell = f",{'true' if key == extra else 'false'}" if extra else ""
        lines.append(f'{key},"rgb({rgb[0]},{rgb[1]},{rgb[2]})"{cell}')
    path.write_text("\n".join(lines) + "\n")
    return path


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(framefleet("render", *args), capture_output=True, text=True, timeout=300)


def test_cli_renders_a_csv_batch_with_digest_and_manifest(tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "rows.csv")
    out = tmp_path / "out"
    args = [str(TEMPLATES / "solid.html"), "--variants", str(rows), "--out", str(out),
            "--width", "64", "--height", "64", "--fps", "10", "--frames", "5"]  # fmt: skip
    first = render(*args)
    assert first.returncode == 0, first.stderr
    assert "4 rendered in" in first.stdout
    manifests = [p for p in (out / "manifests").glob("*.json") if p.name != "rows.json"]
    assert len(manifests) == 1
    # The same manifest at a stable name (the rows file's), which a rerun replaces.
    assert (out / "manifests" / "rows.json").read_text() == manifests[0].read_text()
    manifest = json.loads(manifests[0].read_text())
    assert set(manifest["rows"]) == set(COLOURS)
    for key, rgb in COLOURS.items():
        row = manifest["rows"][key]
        assert row["state"] == "succeeded"
        frames = decode(path_of(row["output_url"]))
        assert len(frames) == 5
        assert is_colour(frames[2][32, 32], rgb), f"row {key} shows another row's colour"
    assert f"manifest: {manifests[0].as_uri()}" in first.stdout

    # A rerun renders nothing: every row is already there.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    again = render(*args)
    assert again.returncode == 0, again.stderr
    assert "(4 already done)" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == mtimes


def test_a_bad_row_fails_alone_and_the_digest_groups_it(tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "rows.csv", extra="alan")
    result = render(str(TEMPLATES / "maybe_throws.html"), "--variants", str(rows),
                    "--out", str(tmp_path / "out"), "--width", "64", "--height", "64",
                    "--fps", "10", "--frames", "3")  # fmt: skip
    assert result.returncode == 1
    assert "3 rendered in" in result.stdout
    assert "1 failed: 1 TEMPLATE_SCRIPT_ERROR" in result.stdout
    assert "row alan" in result.stdout and "exploded" in result.stdout


async def test_sdk_batch_swaps_parameters_in_place(farm: FarmProcesses) -> None:
    spec = template_job(TEMPLATES / "moving_box.html", width=320, height=240, fps=30, frames=8)
    rows = [(f"row-{n}", {"color": f"rgb({20 * n}, 0, 255)"}) for n in range(12)]
    async with AsyncClient(farm.address) as client:
        batch = await client.submit_batch(spec, rows, name="swaps")
        assert (batch.total, batch.queued) == (12, 12)
        updates = [b async for b in client.watch_batch(batch.id)]
        jobs = await client.list(limit=200)
    final = updates[-1]
    assert (final.succeeded, final.failed, final.frames_done) == (12, 0, 96)
    assert final.digest.summary.startswith("12 rendered in")
    assert 0 < final.digest.render_p50_seconds <= final.digest.render_p95_seconds
    done = [u.frames_done for u in updates]
    assert done == sorted(done)
    by_row = {j.row_key: j for j in jobs if j.batch_id == batch.id}
    for n in range(12):
        frames = decode(path_of(by_row[f"row-{n}"].output_url))
        assert is_colour(frames[3][190, 30], (20 * n, 0, 255)), f"row {n} kept old parameters"
        # Virtual time restarts at 0 for every variant: the CSS box is at 10 px per frame.
        assert is_colour(frames[3][40, 30 + 20], (255, 0, 0)), f"row {n} did not restart time"
    logs = "".join(p.log.read_text() for p in farm.processes if p.name.startswith("agent"))
    stages = [
        json.loads(line)["stages"] for line in logs.splitlines() if '"render finished"' in line
    ]
    assert sum(1 for s in stages if s["swap"] > 0 and s["load"] == 0) >= 8, "pages reloaded"


async def test_a_single_job_is_not_stuck_behind_a_batch(farm: FarmProcesses) -> None:
    spec = template_job(TEMPLATES / "solid.html", width=64, height=64, fps=10, frames=10)
    rows = [(f"r{n}", {"color": f"rgb({n}, {n}, 100)"}) for n in range(40)]
    async with AsyncClient(farm.address) as client:
        batch = await client.submit_batch(spec, rows, name="big")
        single = await client.submit(
            template_job(TEMPLATES / "solid.html", {"color": "white"}, width=64, height=64,
                         fps=10, frames=10)
        )  # fmt: skip
        await client.wait(single.id)
        progress = await client.get_batch(batch.id)
        assert progress.succeeded < 20, "the single job waited behind most of the batch"
        cancelled = await client.cancel_batch(batch.id)
        assert cancelled.queued == cancelled.running == 0
        final = await client.wait_batch(batch.id)
    assert final.cancelled > 0
    assert final.succeeded + final.cancelled == 40
    assert f"{final.cancelled} cancelled" in final.digest.summary


async def test_batch_input_is_checked(farm: FarmProcesses) -> None:
    spec = template_job(TEMPLATES / "solid.html", width=64, height=64, fps=10, frames=3)
    async with AsyncClient(farm.address) as client:
        with pytest.raises(FramefleetError, match="appears twice") as twice:
            await client.submit_batch(spec, [("a", {}), ("a", {})])
        assert twice.value.error_class == ErrorClass.INVALID_JOB
        with pytest.raises(FramefleetError, match="no rows"):
            await client.submit_batch(spec, [])
        bad = pb.JobSpec()
        bad.CopyFrom(spec)
        bad.output.width = 63
        with pytest.raises(FramefleetError, match="odd"):
            await client.submit_batch(bad, [("a", {})])

"""The framefleet command as a user runs it: exit codes, messages, files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, framefleet
from tests.video import decode, is_colour

pytestmark = pytest.mark.e2e


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(framefleet(*args), capture_output=True, text=True, timeout=timeout)


def test_render_all_in_one_writes_the_mp4(tmp_path: Path) -> None:
    result = run(
        "render",
        str(TEMPLATES / "moving_box.html"),
        "--param",
        "color=rgb(0,0,255)",
        "--width",
        "320",
        "--height",
        "240",
        "--frames",
        "12",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    outputs = list(tmp_path.rglob("*.mp4"))
    assert len(outputs) == 1
    assert result.stdout.rstrip().endswith(str(outputs[0]))  # the path, not a file:// URL
    frames = decode(outputs[0])
    assert len(frames) == 12
    assert is_colour(frames[5][190, 30], (0, 0, 255))
    assert not list(tmp_path.rglob("*.partial"))
    # Nothing but the progress bar on the terminal: no gRPC fork warning, no agent chatter.
    assert "fork" not in result.stderr
    assert "framefleet agent" not in result.stderr
    assert "framefleet agent" in (tmp_path / ".framefleet" / "logs" / "agent-0.log").read_text()

    rerun = run(*result.args[3:])  # the same command again: served from the cache
    assert rerun.returncode == 0, rerun.stderr
    assert "cache hit" in rerun.stderr and "cache hit" in rerun.stdout
    assert "frame/s" not in rerun.stderr.replace("?frame/s", "")
    assert rerun.stdout.rstrip().endswith(str(outputs[0]))


def test_render_splits_a_long_video_over_its_slots(tmp_path: Path) -> None:
    """`render` waits for its agent, so a long MP4 is split over the free slots by itself."""
    result = run(
        "render",
        str(TEMPLATES / "moving_box.html"),
        *("--width", "160", "--height", "96", "--fps", "10", "--duration", "8"),
        *("--slots", "2", "--json", "--out", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert (job["chunks"], job["chunks_done"], job["frames_done"]) == (2, 2, 80)
    (output,) = tmp_path.rglob("*.mp4")
    assert len(decode(output)) == 80
    assert not [p for p in tmp_path.rglob("*") if ".chunk" in p.name]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.html"], "TEMPLATE_NOT_FOUND"),
        ([str(TEMPLATES / "moving_box.html"), "--param", "color"], "INVALID_JOB: --param"),
        ([str(TEMPLATES / "moving_box.html"), "--params", "p.yaml"], "INVALID_JOB: --params"),
        ([str(TEMPLATES / "moving_box.html"), "--width", "333"], "INVALID_JOB: width 333 is odd"),
        ([str(TEMPLATES / "moving_box.html"), "--duration", "-1"], "INVALID_JOB"),
        ([str(TEMPLATES / "moving_box.html"), "--duration", "100000"], "INVALID_JOB"),
        ([str(TEMPLATES / "moving_box.html"), "--chunks", "65"], "chunks 65 is more than 64"),
    ],
)
def test_render_refuses_bad_input_before_starting(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("render", *args, "--out", str(tmp_path), timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.mp4"))


def test_render_of_a_broken_template_exits_non_zero(tmp_path: Path) -> None:
    result = run(
        "render",
        str(TEMPLATES / "throws.html"),
        "--frames",
        "3",
        "--width",
        "64",
        "--height",
        "64",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "TEMPLATE_SCRIPT_ERROR" in result.stderr
    assert "template exploded on purpose" in result.stderr


def test_submit_wait_json_then_status_and_watch(farm: FarmProcesses, tmp_path: Path) -> None:
    coordinator = ["--coordinator", farm.address]
    submitted = run(
        "submit",
        str(TEMPLATES / "moving_box.html"),
        *coordinator,
        "--frames",
        "6",
        "--width",
        "64",
        "--height",
        "64",
        "--out",
        str(tmp_path),
        "--wait",
        "--json",
    )
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    assert job["output_url"].startswith(tmp_path.as_uri())

    status = run("status", *coordinator)
    assert status.returncode == 0
    assert job["id"] in status.stdout

    watched = run("watch", job["id"], *coordinator)
    assert watched.returncode == 0
    assert "succeeded" in watched.stdout

    missing = run("status", "no-such-job", *coordinator)
    assert missing.returncode == 4
    assert "NOT_FOUND" in missing.stderr
    assert run("batch", "no-such-batch", *coordinator).returncode == 4


def test_status_table_and_watch(farm: FarmProcesses, tmp_path: Path) -> None:
    coordinator = ["--coordinator", farm.address]
    rows = tmp_path / "rows.csv"
    rows.write_text("row_key,color\nblue-one,rgb(0,0,255)\n")
    submitted = run(
        "submit",
        str(TEMPLATES / "moving_box.html"),
        *coordinator,
        *("--frames", "4", "--width", "64", "--height", "64"),
        *("--out", str(tmp_path), "--variants", str(rows), "--wait"),
    )
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.split()[1].rstrip(":")

    status = run("status", *coordinator)
    header, *lines = status.stdout.splitlines()
    assert header.split()[:7] == ["JOB", "STATE", "FRAMES", "AGE", "BATCH", "ROW", "AGENT"]
    line = next(line for line in lines if "blue-one" in line)
    assert "succeeded" in line and batch_id[:8] in line and "4/4" in line
    assert "agent-" in line  # the agent that rendered it

    with subprocess.Popen(
        framefleet("status", "--watch", "--interval", "0.2", *coordinator),
        stdout=subprocess.PIPE,
        text=True,
    ) as watching:
        assert watching.stdout is not None
        headers = 0
        for text in watching.stdout:
            headers += text.startswith("JOB ")
            if headers == 3:  # it keeps refreshing
                break
        watching.terminate()
    assert headers == 3


def test_version_completion_and_exit_codes_in_help() -> None:
    version = run("--version", timeout=30)
    assert version.returncode == 0
    assert version.stdout.startswith("framefleet 0.")
    for shell in ("bash", "zsh"):
        script = run("completion", shell, timeout=30)
        assert script.returncode == 0
        assert "submit" in script.stdout and "--coordinator" in script.stdout
    bash = subprocess.run(
        ["bash", "-c", 'eval "$1"; complete -p framefleet', "-", run("completion", "bash").stdout],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bash.returncode == 0 and "framefleet" in bash.stdout
    usage = run("--help", timeout=30).stdout
    assert "3  cannot reach the coordinator" in usage and "4  no such job or batch" in usage


def test_status_failed_lists_dead_letters(farm: FarmProcesses) -> None:
    coordinator = ["--coordinator", farm.address]
    failed = run(
        "submit",
        str(TEMPLATES / "throws.html"),
        *coordinator,
        "--frames",
        "3",
        "--width",
        "64",
        "--height",
        "64",
        "--wait",
    )
    assert failed.returncode == 1
    listing = run("status", "--failed", *coordinator)
    assert "TEMPLATE_SCRIPT_ERROR" in listing.stdout
    assert "succeeded" not in listing.stdout


def test_unreachable_coordinator_is_a_clear_error() -> None:
    result = run("status", "--coordinator", "127.0.0.1:1", timeout=60)
    assert result.returncode == 3
    assert "UNAVAILABLE" in result.stderr

"""The framefleet command as a user runs it: exit codes, messages, files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TEMPLATES
from tests.farm_processes import Farm, framefleet
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
    assert outputs[0].as_uri() in result.stdout
    frames = decode(outputs[0])
    assert len(frames) == 12
    assert is_colour(frames[5][190, 30], (0, 0, 255))
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.html"], "TEMPLATE_NOT_FOUND"),
        ([str(TEMPLATES / "moving_box.html"), "--param", "color"], "INVALID_JOB: --param"),
        ([str(TEMPLATES / "moving_box.html"), "--params", "p.yaml"], "INVALID_JOB: --params"),
        ([str(TEMPLATES / "moving_box.html"), "--width", "333"], "INVALID_JOB: width 333 is odd"),
        ([str(TEMPLATES / "moving_box.html"), "--duration", "-1"], "INVALID_JOB"),
        ([str(TEMPLATES / "moving_box.html"), "--duration", "100000"], "INVALID_JOB"),
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


def test_submit_wait_json_then_status_and_watch(farm: Farm, tmp_path: Path) -> None:
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
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr


def test_status_failed_lists_dead_letters(farm: Farm) -> None:
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

"""The SDK installs alone: a fresh virtual environment gets the client and the client commands
with gRPC, protobuf and small friends only (needs the package index, as CI has)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SERVER_DISTRIBUTIONS = {"playwright", "av", "asyncpg", "aiosqlite", "aiobotocore", "uvloop"}
# What the README promises for the SDK and its dependencies (pip and setuptools not counted).
MAX_MEGABYTES = 45


def run(*command: str | Path) -> str:
    return subprocess.run(
        [str(c) for c in command], check=True, capture_output=True, text=True, timeout=600
    ).stdout


def test_sdk_installs_without_the_render_stack(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # From a copy: building in place would leave build/ in the checkout.
    source = shutil.copytree(ROOT / "clients" / "python", tmp_path / "sdk")
    run(python, "-m", "pip", "install", "-q", source)

    frozen = run(python, "-m", "pip", "freeze").splitlines()
    names = {re.split(r"==| @ ", line)[0].lower() for line in frozen}
    assert "framefleet" in names
    assert not names & SERVER_DISTRIBUTIONS, names & SERVER_DISTRIBUTIONS

    code = (
        "from framefleet import AsyncClient, Client, template_job\n"
        "from framefleet.v1 import framefleet_pb2 as pb\n"
        "import sys\n"
        "assert 'playwright' not in sys.modules and 'av' not in sys.modules\n"
        "print(pb.JobSpec.DESCRIPTOR.full_name)\n"
    )
    assert run(python, "-c", code).strip() == "framefleet.v1.JobSpec"

    usage = run(venv / "bin" / "framefleet", "--help")
    # The client commands only: render, coordinator, agent and preview come with the farm.
    commands = set(re.search(r"\{([a-z,]+)\}", usage).group(1).split(","))  # type: ignore[union-attr]
    assert commands == {"submit", "watch", "status", "batch", "cancel", "completion"}

    site = next((venv / "lib").glob("python3*/site-packages"))
    size = sum(
        f.stat().st_size
        for f in site.rglob("*")
        if f.is_file() and not f.relative_to(site).parts[0].startswith(("pip", "setuptools"))
    )
    assert size < MAX_MEGABYTES * 2**20, f"{size / 2**20:.0f} MB"

"""A client that knows nothing of framefleet but gRPC: grpcurl lists the services through
reflection, submits a job from JSON and follows it to its output."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.farm_processes import FarmProcesses

REPO = Path(__file__).resolve().parents[1]
GRPCURL = REPO / ".tools" / "bin" / "grpcurl"

pytestmark = pytest.mark.e2e

TEMPLATE = """<!doctype html><html><body style="margin:0">
<div id="card" style="width:64px;height:64px;color:#fff;font:10px sans-serif"></div>
<script>
  framefleet.onParams(p => { document.getElementById("card").textContent = p.name; });
  framefleet.onSeek(t => {
    document.getElementById("card").style.background = `hsl(${Math.round(t * 720)},70%,40%)`;
  });
</script></body></html>"""


def run_grpcurl(
    farm: FarmProcesses, *args: str, data: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: run `make setup` (scripts/install_tools.sh)")
    command = [str(GRPCURL), "-max-time", "30"]
    if farm.trust is None:
        command.append("-plaintext")
    else:  # over TLS, with a client token, as a user on the network would
        command += ["-cacert", str(farm.trust.ca)]
        command += ["-H", f"authorization: Bearer {farm.trust.token}"]
    if data is not None:
        command += ["-d", "@"]
    return subprocess.run(
        [*command, farm.address, *args],
        input=json.dumps(data) if data is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def grpcurl(farm: FarmProcesses, *args: str, data: dict[str, Any] | None = None) -> str:
    result = run_grpcurl(farm, *args, data=data)
    assert result.returncode == 0, f"grpcurl {' '.join(args)}: {result.stderr}\n{farm.logs()}"
    return result.stdout


def call(farm: FarmProcesses, method: str, data: dict[str, Any]) -> dict[str, Any]:
    """A JobService call; grpcurl prints the reply with the proto's field names."""
    reply: dict[str, Any] = json.loads(
        grpcurl(farm, f"framefleet.v1.JobService/{method}", data=data)
    )
    return reply


def test_lists_services_through_reflection(farm: FarmProcesses) -> None:
    services = set(grpcurl(farm, "list").split())
    assert {
        "framefleet.v1.JobService",
        "framefleet.v1.AgentService",
        "grpc.health.v1.Health",
    } <= services
    methods = set(grpcurl(farm, "list", "framefleet.v1.JobService").split())
    assert {
        "framefleet.v1.JobService.SubmitJob",
        "framefleet.v1.JobService.GetJob",
        "framefleet.v1.JobService.WatchJob",
        "framefleet.v1.JobService.CancelJob",
    } <= methods
    assert "uint32 width = 1;" in grpcurl(farm, "describe", "framefleet.v1.OutputSettings")


def test_submits_a_job_from_json_and_it_succeeds(farm: FarmProcesses) -> None:
    spec = {
        "template": {"html": TEMPLATE},
        "params": {"name": "grpcurl", "referrals": 12},
        "output": {"width": 64, "height": 64, "fps": 10, "frames": 5},
        "labels": {"client": "grpcurl"},
    }
    job = call(farm, "SubmitJob", {"spec": spec})["job"]
    assert job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_LEASED", "JOB_STATE_SUCCEEDED")
    assert len(job["content_key"]) == 64

    deadline = time.monotonic() + 90
    while job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
        assert time.monotonic() < deadline, f"job still {job['state']}\n{farm.logs()}"
        time.sleep(0.2)
        job = call(farm, "GetJob", {"job_id": job["id"]})["job"]

    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    assert job["frames_done"] == job["frames_total"] == 5
    assert job["spec"]["params"] == {"name": "grpcurl", "referrals": 12}
    assert job["spec"]["labels"] == {"client": "grpcurl"}
    url = urlparse(job["output_url"])
    assert url.scheme == "file", job["output_url"]
    size = Path(url.path).stat().st_size
    assert size > 0 and size == int(job["output_bytes"])


def test_a_bad_job_is_refused_with_its_error_class(farm: FarmProcesses) -> None:
    spec = {"template": {"html": TEMPLATE}, "output": {"width": 63, "height": 64, "frames": 5}}
    result = run_grpcurl(farm, "framefleet.v1.JobService/SubmitJob", data={"spec": spec})
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "INVALID_JOB" in result.stderr, result.stderr

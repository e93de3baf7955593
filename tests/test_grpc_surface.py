"""What a third-party gRPC client sees: health checking, reflection, committed stubs (Python and
Go) that match the proto, a proto that passes buf lint, and the Python example."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.farm_processes import FarmProcesses

REPO = Path(__file__).resolve().parents[1]


TOOLS = REPO / ".tools" / "bin"
# Every committed stub directory scripts/generate_stubs.sh writes (Rust generates at build time,
# from the copy of the proto vendored into its crate).
STUB_DIRS = (
    "framefleet/v1",
    "clients/go/framefleetv1",
    "clients/rust/proto/framefleet/v1",
)


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([REPO / "scripts" / "generate_stubs.sh", tmp_path], check=True, env=env)
    for stub_dir in STUB_DIRS:
        generated = tmp_path / stub_dir
        committed = REPO / stub_dir
        names = sorted(p.name for p in generated.iterdir())
        assert names == sorted(p.name for p in committed.iterdir() if p.is_file()), stub_dir
        _, mismatch, errors = filecmp.cmpfiles(generated, committed, names, shallow=False)
        stale = [f"{stub_dir}/{name}" for name in mismatch + errors]
        assert not stale, f"stale stubs: run `make stubs` ({stale})"


def test_proto_passes_buf_lint() -> None:
    buf = TOOLS / "buf"
    if not buf.exists():
        pytest.fail(f"{buf} is missing: run `make setup` (scripts/install_tools.sh)")
    result = subprocess.run([buf, "lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"buf lint (buf.yaml):\n{result.stdout}{result.stderr}"


@pytest.mark.e2e
def test_health_and_reflection(farm: FarmProcesses) -> None:
    """Open without a token, as load balancers and grpcurl expect (over TLS)."""
    assert farm.trust is not None
    credentials = grpc.ssl_channel_credentials(farm.trust.ca.read_bytes())
    with grpc.secure_channel(farm.address, credentials) as channel:
        # The typeshed stubs leave the stub methods out.
        health: Any = health_pb2_grpc.HealthStub(channel)
        for service in ("", "framefleet.v1.JobService", "framefleet.v1.AgentService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        services: set[str] = set()
        for reply in reflection.ServerReflectionInfo(iter([request])):
            services |= {s.name for s in reply.list_services_response.service}
    assert {"framefleet.v1.JobService", "framefleet.v1.AgentService"} <= services


@pytest.mark.e2e
def test_python_example_submits(farm: FarmProcesses, tmp_path: Path) -> None:
    template = tmp_path / "card.html"
    template.write_text(
        '<!doctype html><html><head><link rel="stylesheet" href="style.css"></head><body>'
        '<div id="n"></div><script>framefleet.onParams(p => {'
        ' document.getElementById("n").textContent = p.name + " " + p.count; });'
        "</script></body></html>"
    )
    (tmp_path / "style.css").write_text("body { margin: 0; background: #123; color: #fff }")
    example = REPO / "clients" / "python" / "examples" / "submit.py"
    args = ["--coordinator", farm.address, "--width", "64", "--height", "64", "--fps", "10"]
    result = subprocess.run(
        [
            sys.executable,
            example,
            *args,
            "--frames",
            "5",
            "--param",
            "name=Ada",
            "--param",
            "count=12",
            template,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{farm.logs()}"
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("submitted ")
    assert any(line.startswith("succeeded 5/5 frames") for line in lines), result.stdout
    url = urlparse(lines[-1])
    assert url.scheme == "file" and Path(url.path).stat().st_size > 0, lines[-1]

    refused = subprocess.run(
        [sys.executable, example, "--coordinator", farm.address, "--width", "63", template],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "INVALID_JOB" in refused.stderr, refused.stderr

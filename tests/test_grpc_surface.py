"""What a third-party gRPC client sees: health checking, reflection, and committed stubs that
match the proto."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.farm_processes import Farm

REPO = Path(__file__).resolve().parents[1]


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([REPO / "scripts" / "generate_stubs.sh", tmp_path], check=True, env=env)
    generated = tmp_path / "clients" / "python" / "framefleet" / "v1"
    committed = REPO / "clients" / "python" / "framefleet" / "v1"
    names = sorted(p.name for p in generated.iterdir())
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(generated, committed, names, shallow=False)
    assert not mismatch and not errors, f"stale stubs: run `make stubs` ({mismatch + errors})"


@pytest.mark.e2e
def test_health_and_reflection(farm: Farm) -> None:
    with grpc.insecure_channel(farm.address) as channel:
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

"""The README's quick start on a bare Debian bookworm, in a container: only git and make (and the
CA roots the registries' proxy needs) are there; `make example` must install the rest itself,
nothing more, and render the example to an MP4 a user can play. Select with `-k container`.

The base image is made locally (tests/containers.py); apt's and pip's downloads are cached in
podman volumes, so a rerun skips the downloads but still installs everything in a fresh
container."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import yaml

from tests import containers
from tests.deploy_settings import ready
from tests.farm_processes import wait_until
from tests.moto_server import create_bucket, only_object

pytestmark = [pytest.mark.e2e, pytest.mark.container]

# examples/referral: 12 s at 30 fps, 1280x720 (examples/referral/README.md).
ROOT = containers.ROOT
EXAMPLE_FRAMES = 12 * 30
EXAMPLE_SIZE = (1280, 720)
# What one local render must not pull in (`make example` is not `make setup`).
BOOT = 120.0  # seconds for a container's service to be ready on a busy machine
NOT_FOR_THE_EXAMPLE = ["postgresql", "golang-go", "protobuf-compiler", "podman", "nodejs"]


@pytest.mark.timeout(1500)
def test_make_example_renders_on_bare_bookworm_given_only_git_and_make(tmp_path: Path) -> None:
    containers.require_podman()
    image = containers.quick_start()
    containers.source_archive(tmp_path / "source.tar")
    result = tmp_path / "result"
    result.mkdir()
    unwanted = " ".join(NOT_FOR_THE_EXAMPLE)
    script = f"""set -e
        mkdir /src && tar -xf /in/source.tar -C /src && cd /src
        make example
        cp -r out /result/
        for p in {unwanted}; do
          if dpkg -s "$p" >/dev/null 2>&1; then echo "UNWANTED package $p"; fi
        done
        if [ -e .tools ]; then echo "UNWANTED .tools"; fi
        for tool in go cargo protoc helm; do
          if command -v "$tool" >/dev/null; then echo "UNWANTED $tool"; fi
        done
    """
    volumes = [arg for volume in containers.CACHE_VOLUMES for arg in ("-v", volume)]
    output = containers.podman(
        "run", "--rm", "-v", f"{tmp_path}:/in:ro", "-v", f"{result}:/result", *volumes,
        image, "bash", "-c", script,
        timeout=1400,
    )  # fmt: skip
    assert "UNWANTED" not in output, output[-3000:]
    videos = sorted(result.rglob("*.mp4"))
    assert len(videos) == 1, f"make example left {videos}:\n{output[-3000:]}"
    assert videos[0].name in output, "make example prints the MP4's path"

    with av.open(str(videos[0])) as video:
        stream = video.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == EXAMPLE_SIZE
        frames = 0
        for frame in video.decode(video=0):
            if frames == 2 * 30:  # "Hi, Ada." is on screen: not one flat colour
                assert np.asarray(frame.to_ndarray(format="gray")).std() > 5
            frames += 1
    assert frames == EXAMPLE_FRAMES


@pytest.mark.timeout(1500)
def test_the_test_toolchains_install_on_bare_bookworm(tmp_path: Path) -> None:
    """`make test`'s tools on the same bare bookworm: scripts/install_tools.sh must bring a Go new
    enough for clients/go (Debian has 1.19: the toolchain module comes from the Go module proxy),
    a Rust new enough for the crate's rust-version (Debian's cargo-web), and the pinned tools."""
    containers.require_podman()
    image = containers.quick_start()
    containers.source_archive(tmp_path / "source.tar")
    go_wants = next(
        line.split()[1]
        for line in (ROOT / "clients/go/go.mod").read_text().splitlines()
        if line.startswith("go ")
    )
    rust_wants = next(
        line.split('"')[1]
        for line in (ROOT / "clients/rust/Cargo.toml").read_text().splitlines()
        if line.startswith("rust-version")
    )
    script = """set -e
        mkdir /src && tar -xf /in/source.tar -C /src && cd /src
        scripts/install_tools.sh >/tmp/tools.log 2>&1 || { tail -40 /tmp/tools.log; exit 1; }
        echo "GO $(.tools/go/bin/go env GOVERSION)"
        echo "RUST $(rustc --version)"
        .tools/bin/helm version --short && .tools/bin/buf --version && .tools/bin/grpcurl -version
    """
    # Go's module and build caches too: a rerun compiles the tools from cache.
    volumes = [
        *containers.CACHE_VOLUMES,
        "framefleet-go-mod:/root/go/pkg/mod",
        "framefleet-go-build:/root/.cache/go-build",
        "framefleet-npm-cache:/root/.npm",
    ]
    output = containers.podman(
        "run", "--rm", "-v", f"{tmp_path}:/in:ro",
        *[arg for volume in volumes for arg in ("-v", volume)],
        image, "bash", "-c", script,
        timeout=1400,
    )  # fmt: skip
    go = output.split("GO go", 1)[1].split()[0]
    rust = output.split("RUST rustc ", 1)[1].split()[0]
    assert version_tuple(go) >= version_tuple(go_wants), output[-2000:]
    assert version_tuple(rust) >= version_tuple(rust_wants), output[-2000:]
    assert "v3.19" in output and "1.75.0" in output and "\ngrpcurl " in output, output[-2000:]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@pytest.fixture
def network() -> Iterator[str]:
    name = f"framefleet-test-{uuid.uuid4().hex[:8]}"
    containers.podman("network", "create", name)
    try:
        yield name
    finally:
        containers.podman("network", "rm", "-f", name, check=False)


@pytest.mark.timeout(2400)
def test_the_image_runs_a_coordinator_and_an_agent_that_render_for_the_sdk(
    tmp_path: Path, network: str
) -> None:
    """deploy/Dockerfile built with podman; its coordinator and agent as containers on one
    network, as the compose file runs them (no TLS, FRAMEFLEET_INSECURE; the agent as uid 10001
    with Chromium's sandbox, seccomp unconfined); the host's SDK submits and gets an MP4."""
    containers.require_podman()
    image = containers.framefleet_image()
    videos = tmp_path / "videos"
    videos.mkdir()
    os.chown(videos, 10001, 10001)  # the image's user writes the outputs
    mount = f"{videos}:/videos"
    names = {role: f"{network}-{role}" for role in ("coordinator", "agent")}
    try:
        containers.podman(
            "run", "-d", "--name", names["coordinator"], "--network", network, "-v", mount,
            "-e", "FRAMEFLEET_INSECURE=1", "-e", "FRAMEFLEET_LISTEN=0.0.0.0:7070",
            "-e", "FRAMEFLEET_HTTP=0.0.0.0:9464", "-e", "FRAMEFLEET_OUT=file:///videos",
            "-e", "FRAMEFLEET_STORE=sqlite:////var/lib/framefleet/jobs.db",
            image, "coordinator",
        )  # fmt: skip
        address = containers.address(names["coordinator"], network)
        wait_until(lambda: ready(f"{address}:9464"), BOOT, "the coordinator's /readyz")
        # No DNS on podman's CNI network here: the agent gets the name from --add-host.
        containers.podman(
            "run", "-d", "--name", names["agent"], "--network", network, "-v", mount,
            "--add-host", f"coordinator:{address}", "--shm-size", "1g",
            "--security-opt", "seccomp=unconfined",
            "-e", "FRAMEFLEET_COORDINATOR=coordinator:7070", "-e", "FRAMEFLEET_SLOTS=1",
            "-e", "FRAMEFLEET_HTTP=0.0.0.0:9465", image, "agent",
        )  # fmt: skip
        agent = containers.address(names["agent"], network)
        wait_until(lambda: ready(f"{agent}:9465"), BOOT, "the agent's /readyz")

        # The host's SDK, straight to the coordinator's address on the network.
        submitted = subprocess.run(
            [sys.executable, "-m", "framefleet", "submit",
             str(ROOT / "examples/referral/template/referral.html"),
             "--params", str(ROOT / "examples/referral/ada.json"),
             "--width", "320", "--height", "180", "--fps", "10", "--frames", "30",
             "--coordinator", f"{address}:7070", "--wait", "--json"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        logs = "\n".join(
            containers.podman("logs", "--tail", "30", name, check=False) for name in names.values()
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr + logs
        job = json.loads(submitted.stdout.strip().splitlines()[-1])
        url: str = job["output_url"]
        assert url.startswith("file:///videos/") and url.endswith(".mp4"), url
        video = videos / url.removeprefix("file:///videos/")
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
            frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
        assert len(frames) == 30
        assert np.asarray(frames[20]).std() > 5, "the page was drawn, not a flat colour"
        # The agent ran as the image's user, with Chromium's sandbox on.
        agent_log = containers.podman("logs", names["agent"])
        assert "sandbox is off" not in agent_log, agent_log[-2000:]
    finally:
        for name in names.values():
            containers.podman("rm", "-f", "-t", "5", name, check=False)


def moto_answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # any answer means it is up
    except OSError:
        return False


@pytest.mark.timeout(2400)
def test_the_compose_stacks_framefleet_services_render_into_the_bucket(
    tmp_path: Path, network: str
) -> None:
    """deploy/compose.yaml's framefleet services (migrate, coordinator, the agent replicas) as
    containers of the image, each with its own command, environment, shm and seccomp settings;
    PostgreSQL (Debian's) and moto's S3 server stand in for postgres and minio, under their
    compose host names. podman has no systemd here, so readiness is polled, not healthchecks.
    Traces go nowhere (nothing stands in for the collector: tests/test_compose.py checks them)."""
    containers.require_podman()
    image = containers.framefleet_image()
    compose: dict[str, Any] = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    services: dict[str, dict[str, Any]] = compose["services"]
    started: list[str] = []

    def run(name: str, service: dict[str, Any], hosts: dict[str, str], *flags: str) -> str:
        args = [f"--add-host={host}:{ip}" for host, ip in hosts.items()]
        for key, value in service.get("environment", {}).items():
            args += ["-e", f"{key}={value}"]
        args += [f"--security-opt={opt}" for opt in service.get("security_opt", [])]
        if "shm_size" in service:
            args.append(f"--shm-size={service['shm_size']}")
        started.append(name)
        return containers.podman(
            "run", *flags, "--name", name, "--network", network, *args, image,
            *service["command"], timeout=300,
        )  # fmt: skip

    try:
        stand_ins = f"{network}-stand-ins"
        started.append(stand_ins)
        containers.podman("run", "-d", "--name", stand_ins, "--network", network,
                          containers.stand_ins())  # fmt: skip
        ip = containers.address(stand_ins, network)
        s3 = f"http://{ip}:9000"
        wait_until(lambda: moto_answers(s3), BOOT, "PostgreSQL and moto in the stand-ins")
        hosts = {"postgres": ip, "minio": ip, "otel-collector": ip}
        bucket = services["coordinator"]["environment"]["FRAMEFLEET_OUT"].split("/")[2]
        asyncio.run(create_bucket(s3, bucket))  # what create-bucket does

        run(f"{network}-migrate", services["migrate"], hosts, "--rm")
        coordinator = f"{network}-coordinator"
        run(coordinator, services["coordinator"], hosts, "-d")
        hosts["coordinator"] = containers.address(coordinator, network)
        port = services["coordinator"]["environment"]["FRAMEFLEET_HTTP"].rsplit(":", 1)[1]
        wait_until(lambda: ready(f"{hosts['coordinator']}:{port}"), BOOT, "the coordinator")
        agent = services["agent"]
        port = agent["environment"]["FRAMEFLEET_HTTP"].rsplit(":", 1)[1]
        for replica in range(agent["deploy"]["replicas"]):
            name = f"{network}-agent-{replica}"
            run(name, agent, hosts, "-d")
            at = containers.address(name, network)
            wait_until(partial(ready, f"{at}:{port}"), BOOT, f"agent {replica}")

        submitted = subprocess.run(
            [sys.executable, "-m", "framefleet", "submit",
             str(ROOT / "examples/referral/template/referral.html"),
             "--params", str(ROOT / "examples/referral/ada.json"),
             "--width", "320", "--height", "180", "--fps", "10", "--frames", "30",
             "--coordinator", f"{hosts['coordinator']}:7070", "--wait", "--json"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        logs = "\n".join(containers.podman("logs", "--tail", "20", n, check=False) for n in started)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr + logs
        url: str = json.loads(submitted.stdout.strip().splitlines()[-1])["output_url"]
        assert url.startswith(f"s3://{bucket}/videos/") and url.endswith(".mp4"), url
        keys, data = asyncio.run(only_object(s3, bucket))
        assert keys == [url.split("/", 3)[3]] and data
        (tmp_path / "video.mp4").write_bytes(data)
        with av.open(str(tmp_path / "video.mp4")) as container:
            frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
        assert len(frames) == 30 and frames[0].shape == (180, 320)
        assert np.asarray(frames[20]).std() > 5, "the page was drawn, not a flat colour"
    finally:
        for name in started:
            containers.podman("rm", "-f", "-t", "5", name, check=False)

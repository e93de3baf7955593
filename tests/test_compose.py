"""deploy/compose.yaml without a container engine: every framefleet service is started as a
process with its own ``command`` and ``environment`` (service hosts rewritten to loopback;
PostgreSQL, moto's S3 server and an OTLP receiver started by the test in place of postgres,
minio and the collector), then one ``framefleet submit``, as the file's header says, must land a
video in the bucket. So the compose file and the command line cannot drift apart."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from framefleet.agent.runner import ACK_WAIT
from framefleet.agent.spot_notice import DRAIN_GRACE
from tests.conftest import TEMPLATES
from tests.deploy_settings import check_settings, ready
from tests.farm_processes import FarmProcesses, wait_until
from tests.moto_server import MotoServer, create_bucket, only_object
from tests.otlp_receiver import OtlpReceiver
from tests.postgres_server import PostgresServer
from tests.video import decode, is_colour

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BOOT = 90.0  # seconds for an agent's browser on a busy machine


def is_framefleet(service: dict[str, Any]) -> bool:
    dockerfile: object = service.get("build", {}).get("dockerfile")
    return dockerfile == "deploy/Dockerfile"


FRAMEFLEET = {name: s for name, s in SERVICES.items() if is_framefleet(s)}


def started_in_order() -> list[str]:
    """Framefleet services, each after those it depends on."""
    order: list[str] = []

    def visit(name: str) -> None:
        for dependency in SERVICES[name].get("depends_on", {}):
            visit(dependency)
        if name in FRAMEFLEET and name not in order:
            order.append(name)

    for name in FRAMEFLEET:
        visit(name)
    return order


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", duration))


def test_the_services_are_what_the_farm_needs() -> None:
    assert {"coordinator", "agent"} <= FRAMEFLEET.keys()
    assert {"postgres", "minio", "create-bucket", "otel-collector", "prometheus", "grafana"} <= (
        SERVICES.keys()
    )
    assert {"jaeger", "tempo"} & SERVICES.keys(), "a trace backend"
    agents = FRAMEFLEET["agent"]
    assert agents["deploy"]["replicas"] >= 2
    # A stopped agent drains before Docker kills it.
    assert seconds(agents["stop_grace_period"]) > DRAIN_GRACE + ACK_WAIT
    # The bucket the coordinator writes to is the one created.
    out = FRAMEFLEET["coordinator"]["environment"]["FRAMEFLEET_OUT"]
    bucket = re.fullmatch(r"s3://([^/]+)/.*", out)
    assert bucket, out
    assert f"mb --ignore-existing farm/{bucket[1]}" in " ".join(
        SERVICES["create-bucket"]["entrypoint"]
    )
    # Prometheus scrapes each service's --http port, and Grafana gets the dashboard.
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped = {
        name: config["port"]
        for job in prometheus["scrape_configs"]
        for config in job["dns_sd_configs"]
        for name in config["names"]
    }
    for name in ("coordinator", "agent"):
        http = FRAMEFLEET[name]["environment"]["FRAMEFLEET_HTTP"]
        assert scraped[name] == int(http.rsplit(":", 1)[1])
    assert (
        "./grafana-dashboard.json:/var/lib/grafana/dashboards/framefleet.json:ro"
        in (SERVICES["grafana"]["volumes"])
    )
    # The collector's config reads its backend from variables the service sets.
    wanted = set(re.findall(r"\$\{env:(\w+)\}", (DEPLOY / "otel-collector.yaml").read_text()))
    assert wanted and wanted <= SERVICES["otel-collector"]["environment"].keys()


@pytest.mark.parametrize("name", sorted(FRAMEFLEET))
def test_the_commands_accept_their_settings(name: str) -> None:
    service = FRAMEFLEET[name]
    check_settings(name, service["command"][0], service["environment"])


class Stack:
    """What the test starts in place of compose's other services, by compose host:port."""

    def __init__(self, database: str, moto: MotoServer, otlp: OtlpReceiver) -> None:
        self.database = database
        self.otlp = otlp
        self.hosts = {
            "minio:9000": f"127.0.0.1:{moto.port}",
            "otel-collector:4317": f"127.0.0.1:{otlp.port}",
        }

    def environment(self, compose: dict[str, str]) -> dict[str, str]:
        result = {}
        for key, value in compose.items():
            value = str(value)
            if key in ("FRAMEFLEET_LISTEN", "FRAMEFLEET_HTTP"):
                value = "127.0.0.1:0"
            for host, loopback in self.hosts.items():
                value = value.replace(host, loopback)
            if value.startswith("postgresql://"):
                value = self.database
            unmapped = [h for h in SERVICES if re.search(rf"(//|^|@){h}:\d", value)]
            assert not unmapped, f"{key}={value}: nothing stands in for {unmapped}"
            result[key] = value
        return result


@pytest.fixture
def stack(tmp_path: Path, postgres: PostgresServer) -> Iterator[tuple[Stack, MotoServer]]:
    moto = MotoServer.start(tmp_path / "moto.log")
    otlp = OtlpReceiver()
    try:
        # Empty, as compose's PostgreSQL starts: the migrate service brings the schema.
        database = asyncio.run(postgres.create_database(migrated=False))
        yield Stack(database, moto, otlp), moto
    finally:
        otlp.stop()
        moto.stop()


def test_the_stack_renders_into_the_bucket(tmp_path: Path, stack: tuple[Stack, MotoServer]) -> None:
    loopback, moto = stack
    bucket = FRAMEFLEET["coordinator"]["environment"]["FRAMEFLEET_OUT"].split("/")[2]
    asyncio.run(create_bucket(moto.url, bucket))  # what create-bucket does

    farm = FarmProcesses(
        tmp_path, secure=False
    )  # as the compose file runs it (FRAMEFLEET_INSECURE)
    agent_https: list[str] = []
    try:
        for name in started_in_order():
            service = FRAMEFLEET[name]
            env = loopback.environment(service["environment"])
            if service.get("restart") == "no":  # a one-shot step the others wait for
                done = farm.run_service(service["command"], env)
                assert done.returncode == 0, done.stderr
                continue
            if name == "coordinator":
                farm.start_service(name, service["command"], env)
                loopback.hosts["coordinator:7070"] = farm.address
                assert farm.http and ready(farm.http)
                continue
            for replica in range(service.get("deploy", {}).get("replicas", 1)):
                # Each container has its own host name, so its own default agent id.
                process = farm.start_service(f"{name}-{replica}", service["command"], env)
                log = process.log

                def printed(log: Path = log) -> bool:
                    return " http on " in log.read_text()

                wait_until(printed, BOOT, f"{name}-{replica} to serve http")
                agent_https.append(log.read_text().split(" http on ", 1)[1].split()[0])
        for http in agent_https:

            def agent_ready(http: str = http) -> bool:
                return ready(http)

            wait_until(agent_ready, BOOT, f"agent {http} to be ready")

        # The README's one command, against the stack.
        submitted = subprocess.run(
            [sys.executable, "-m", "framefleet", "submit", str(TEMPLATES / "solid.html"),
             "--param", "color=teal", "--width", "64", "--height", "64", "--fps", "10",
             "--frames", "6", "--coordinator", farm.address, "--wait", "--json"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr + farm.logs()
        job = json.loads(submitted.stdout.strip().splitlines()[-1])
        url = job["output_url"]
        assert url.startswith(f"s3://{bucket}/videos/") and url.endswith(".mp4"), url
        keys, data = asyncio.run(only_object(moto.url, bucket))
        assert keys == [url.split("/", 3)[3]]
        assert data is not None
        video = tmp_path / "video.mp4"
        video.write_bytes(data)
        frames = decode(video)
        assert len(frames) == 6
        assert is_colour(frames[-1][32, 32], (0, 128, 128))  # teal

        # Both services trace to the collector's address, under their compose names.
        def traced() -> bool:
            services = {span.service for span in loopback.otlp.spans()}
            return {"framefleet-coordinator", "framefleet-agent"} <= services

        wait_until(traced, 30, "spans from coordinator and agents")
    finally:
        farm.close()

"""deploy/systemd: the units run commands that exist, with settings the commands read, and give
a draining agent its grace before systemd kills it."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from framefleet.agent.runner import ACK_WAIT
from framefleet.agent.spot_notice import DRAIN_GRACE
from framefleet.coordinator.server import exposure_problems
from tests.deploy_settings import (
    check_settings,
    coordinator_config,
    submit_teal,
    wait_for_agent_http,
)
from tests.farm_processes import FarmProcesses, Trust
from tests.postgres_server import PostgresServer
from tests.video import decode, is_colour, path_of

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = {"coordinator": "framefleet-coordinator.service", "agent": "framefleet-agent@.service"}


def settings(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (unit directives or an environment file), comments and sections left out."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    pairs = [line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.mark.parametrize("service", sorted(UNITS))
def test_units_run_framefleet_configured_by_their_environment_file(service: str) -> None:
    unit = settings(SYSTEMD / UNITS[service])
    assert unit["ExecStart"] == f"/opt/framefleet/bin/framefleet {service}"
    assert unit["User"] == "framefleet" and unit["NoNewPrivileges"] == "yes"
    assert unit["EnvironmentFile"] == f"/etc/framefleet/{service}.env"
    check_settings(f"{service}.env", service, settings(SYSTEMD / f"{service}.env"))


def test_a_stopped_agent_drains_before_it_is_killed() -> None:
    unit = settings(SYSTEMD / UNITS["agent"])
    assert float(unit["TimeoutStopSec"]) > DRAIN_GRACE + ACK_WAIT
    assert unit["KillMode"] == "mixed"  # SIGTERM to the agent, not to its Chromium first
    # Chromium's sandbox needs user namespaces.
    assert "RestrictNamespaces" not in unit and "PrivateUsers" not in unit


def test_the_coordinator_would_start_with_its_settings() -> None:
    """The coordinator's own rule: beyond loopback only with TLS, tokens and agent certificates."""
    env = settings(SYSTEMD / "coordinator.env")
    config = coordinator_config(env)
    assert exposure_problems(config) == [] and "FRAMEFLEET_INSECURE" not in env
    agent = settings(SYSTEMD / "agent.env")
    port = env["FRAMEFLEET_AGENT_LISTEN"].rsplit(":", 1)[1]
    assert agent["FRAMEFLEET_COORDINATOR"].rsplit(":", 1)[1] == port  # agents use their port
    assert {"FRAMEFLEET_TLS_CA", "FRAMEFLEET_TLS_CERT", "FRAMEFLEET_TLS_KEY"} <= agent.keys()


@pytest.mark.e2e
def test_the_units_run_a_farm_that_renders(tmp_path: Path, postgres: PostgresServer) -> None:
    """The units' commands with their environment files, as on the VM of
    docs/tutorials/deploying-a-fleet.md: migrate, then a coordinator with TLS, tokens and agent
    certificates, and an agent with a certificate of its own. Only paths, ports and the database
    are this test's."""
    trust = Trust(tmp_path / "certs")
    cert, key = trust.agent_cert("vm-agent")
    (trust.root / "agent.pem").symlink_to(cert.name)  # as the README's `ln -s` does
    (trust.root / "agent.key").symlink_to(key.name)
    store = asyncio.run(postgres.create_database(migrated=False))
    videos = tmp_path / "videos"
    farm = FarmProcesses(tmp_path / "farm", secure=False)

    def here(environ: dict[str, str]) -> dict[str, str]:
        result = {}
        for name, value in environ.items():
            value = value.replace("/etc/framefleet/certs/", f"{trust.root}/")
            value = value.replace("/etc/framefleet/tokens.json", str(trust.tokens))
            value = value.replace("/srv/videos", str(videos))
            value = value.replace("coordinator.example.com:7071", farm.agent_address)
            value = re.sub(r"^0\.0\.0\.0:\d+$", "127.0.0.1:0", value)
            result[name] = store if name == "FRAMEFLEET_STORE" else value
        assert not [v for v in result.values() if "/etc/framefleet" in v], result
        return result

    try:
        coordinator_env = here(settings(SYSTEMD / "coordinator.env"))
        unit = settings(SYSTEMD / UNITS["coordinator"])
        pre = unit["ExecStartPre"].removeprefix("/opt/framefleet/bin/framefleet ").split()
        migrate = [re.sub(r"\$\{(\w+)\}", lambda m: coordinator_env[m[1]], a) for a in pre]
        migrated = farm.run_service(migrate, coordinator_env)
        assert migrated.returncode == 0, migrated.stderr
        farm.start_service("coordinator", ["coordinator"], coordinator_env)
        agent = farm.start_service("agent", ["agent"], here(settings(SYSTEMD / "agent.env")))
        wait_for_agent_http(agent.log)

        submitted = submit_teal(farm.address, trust.client_env())
        assert submitted.returncode == 0, submitted.stderr + farm.logs()
        job = json.loads(submitted.stdout.strip().splitlines()[-1])
        video = path_of(job["output_url"])
        assert video.is_relative_to(videos)
        frames = decode(video)
        assert len(frames) == 4 and is_colour(frames[-1][32, 32], (0, 128, 128))
    finally:
        farm.close()

"""deploy/systemd: the units run commands that exist, with settings the commands read, and give
a draining agent its grace before systemd kills it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.runner import ACK_WAIT
from agent.spot_notice import DRAIN_GRACE
from coordinator.config import CoordinatorConfig
from coordinator.server import exposure_problems
from tests.deploy_settings import check_settings

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

    def path(name: str) -> Path | None:
        return Path(env[name]) if name in env else None

    config = CoordinatorConfig(
        listen=env["FRAMEFLEET_LISTEN"],
        tls_cert=path("FRAMEFLEET_TLS_CERT"),
        tls_key=path("FRAMEFLEET_TLS_KEY"),
        tokens=path("FRAMEFLEET_TOKENS"),
        agent_ca=path("FRAMEFLEET_AGENT_CA"),
        agent_listen=env.get("FRAMEFLEET_AGENT_LISTEN", ""),
    )
    assert exposure_problems(config) == [] and "FRAMEFLEET_INSECURE" not in env
    agent = settings(SYSTEMD / "agent.env")
    port = env["FRAMEFLEET_AGENT_LISTEN"].rsplit(":", 1)[1]
    assert agent["FRAMEFLEET_COORDINATOR"].rsplit(":", 1)[1] == port  # agents use their port
    assert {"FRAMEFLEET_TLS_CA", "FRAMEFLEET_TLS_CERT", "FRAMEFLEET_TLS_KEY"} <= agent.keys()

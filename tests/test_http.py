"""The one HTTP address (--http) of coordinator and agent, as a probe or a scraper sees it:
/healthz while the process lives, /readyz only while the service can work, /metrics."""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from framefleet.commands.http import split_address
from tests.farm_processes import FarmProcesses, wait_until
from tests.postgres_server import PostgresServer, start_postgres

pytestmark = pytest.mark.e2e

BOOT = 60.0  # seconds: a browser starting on a busy machine


def get(address: str, path: str, ca: Path | None = None) -> tuple[int, str]:
    """GET over HTTP, or HTTPS trusting ``ca`` (a coordinator with --tls-cert serves both its
    gRPC and its --http address over TLS)."""
    context = ssl.create_default_context(cafile=ca) if ca else None
    url = f"{'https' if ca else 'http'}://{address}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def status(address: str, path: str, ca: Path | None = None) -> int:
    return get(address, path, ca)[0]


def agent_http(farm: FarmProcesses, name: str) -> str:
    """The agent's bound --http address, from the line it prints to its log."""
    log = farm.root / "logs" / f"{name}.log"
    found: list[str] = []

    def printed() -> bool:
        found[:] = re.findall(r"framefleet agent http on (\S+)", log.read_text())
        return bool(found)

    wait_until(printed, BOOT, f"{name} to print its http address")
    return found[0]


def is_browser(process: psutil.Process) -> bool:
    """Chromium's browser process (not a renderer or another helper of it)."""
    try:
        command = process.cmdline()
        return process.exe().endswith("/chromium-headless-shell") and not any(
            arg.startswith("--type=") for arg in command
        )
    except psutil.Error:  # gone meanwhile
        return False


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped half-way through."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def test_coordinator_ready_only_while_its_store_answers(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    store = asyncio.run(own_postgres.create_database())
    farm = FarmProcesses(tmp_path)
    try:
        farm.start_coordinator(store, tmp_path / "out", "--http", "127.0.0.1:0")
        assert farm.http, "the coordinator printed no http address"
        assert farm.trust is not None
        ca = farm.trust.ca
        with pytest.raises(OSError):  # URLError or a dropped connection
            get(farm.http, "/healthz")  # plaintext gets nothing: it serves HTTPS
        assert get(farm.http, "/healthz", ca) == (200, "ok\n")
        assert get(farm.http, "/readyz", ca) == (200, "ready\n")
        code, metrics = get(farm.http, "/metrics", ca)
        assert code == 200 and "framefleet_queue_depth" in metrics
        assert status(farm.http, "/nothing", ca) == 404

        own_postgres.stop()
        wait_until(lambda: status(farm.http, "/readyz", ca) == 503, 30, "/readyz to fail")
        code, body = get(farm.http, "/readyz", ca)
        assert "store unreachable" in body
        assert status(farm.http, "/healthz", ca) == 200  # alive: a restart would not help
    finally:
        farm.close()


def test_agent_ready_only_while_connected_with_a_browser(tmp_path: Path) -> None:
    farm = FarmProcesses(tmp_path)
    try:
        coordinator = farm.start_coordinator(f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out")
        agent = farm.start_agent("probed", "--slots", "1", "--http", "127.0.0.1:0")
        http = agent_http(farm, "probed")
        wait_until(lambda: status(http, "/readyz") == 200, BOOT, "the agent to be ready")
        code, metrics = get(http, "/metrics")
        assert code == 200 and "framefleet_agent_slots_busy" in metrics

        # Chromium gone: alive, connected, but it cannot render until a job relaunches it.
        browsers = [
            p for p in psutil.Process(agent.popen.pid).children(recursive=True) if is_browser(p)
        ]
        assert browsers, "the agent runs no Chromium"
        for browser in browsers:
            browser.kill()
        wait_until(lambda: status(http, "/readyz") == 503, 30, "/readyz to see the browser gone")
        assert "browser not running" in get(http, "/readyz")[1]

        coordinator.stop()
        wait_until(lambda: status(http, "/readyz") == 503, 30, "/readyz to fail")
        assert "not connected" in get(http, "/readyz")[1]
        assert status(http, "/healthz") == 200
        assert agent.alive()
    finally:
        farm.close()


def test_addresses() -> None:
    assert split_address("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert split_address(":9464") == ("0.0.0.0", 9464)
    assert split_address("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_address("9464")

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm_processes import FarmProcesses
from tests.postgres_server import PostgresServer, start_postgres

TEMPLATES = Path(__file__).parent / "templates"

# `make test-fast` runs `pytest -m "not e2e"`: the unit tests, in seconds. A test is e2e when it
# starts real parts: farm processes, Chromium, PostgreSQL, moto's S3 server, a package build or
# install. Modules say so with `pytestmark = pytest.mark.e2e`; a test that uses one of these
# fixtures (directly, through another fixture, or as a "postgres" parameter) is marked here.
E2E_FIXTURES = frozenset({"farm", "postgres", "moto"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        parameters = set(map(str, callspec.params.values())) if callspec is not None else set()
        if fixtures & E2E_FIXTURES or "postgres" in parameters:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmProcesses]:
    """A coordinator on SQLite and two agents, each a separate process, on loopback."""
    root = tmp_path_factory.mktemp("farm")
    farm = FarmProcesses(root)
    try:
        farm.start_coordinator(
            f"sqlite:///{root}/jobs.db",
            root / "out",
            "--lease-ttl",
            "6",
            "--heartbeat-interval",
            "1",
        )
        for n in (1, 2):
            farm.start_agent(f"agent-{n}", "--slots", "1", "--ready-timeout", "4")
        yield farm
    finally:
        farm.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run; tests make their own databases in it."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()

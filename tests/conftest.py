from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm_processes import Farm
from tests.postgres_server import PostgresServer, start_postgres

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """A coordinator on SQLite and two agents, each a separate process, on loopback."""
    root = tmp_path_factory.mktemp("farm")
    farm = Farm(root)
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

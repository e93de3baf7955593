"""Versioned migrations on both real databases: `framefleet migrate` applies what is missing
and can run twice (or twice at once), a coordinator refuses an older schema with a message
naming the command, and a database made by the old create-if-missing path is adopted."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from framefleet.coordinator.store.migrations import SchemaTooOld, latest, migrations, redact
from framefleet.coordinator.store.open import connect, open_store
from framefleet.coordinator.store.sql import SqlStore
from tests.farm_processes import framefleet
from tests.postgres_server import PostgresServer
from tests.store_conformance import new_job

DIALECTS = ["sqlite", "postgres"]


@pytest.fixture(params=DIALECTS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL with nothing in it yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return await postgres.create_database(migrated=False)


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(framefleet(*args), capture_output=True, text=True, timeout=timeout)


def test_both_stores_have_the_same_migrations() -> None:
    sqlite, postgres = migrations("sqlite"), migrations("postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]
    assert latest("sqlite") == len(sqlite) >= 1


def test_passwords_stay_out_of_messages() -> None:
    assert redact("postgresql://u:secret@db:5432/jobs") == "postgresql://u:***@db:5432/jobs"
    message = str(SchemaTooOld("postgresql://u:secret@db/jobs", 0, 1))
    assert "secret" not in message
    assert "framefleet migrate --store postgresql://u:***@db/jobs" in message


async def test_an_unmigrated_store_is_refused_until_migrated(empty_url: str) -> None:
    with pytest.raises(SchemaTooOld, match="run `framefleet migrate --store"):
        await open_store(empty_url, migrate=False)

    first = run("migrate", "--store", empty_url)
    assert first.returncode == 0, first.stderr
    assert f"schema version {latest('sqlite')} (migrated)" in first.stdout
    assert "applied 0001_initial" in first.stderr
    again = run("migrate", "--store", empty_url)
    assert again.returncode == 0, again.stderr
    assert "(already current)" in again.stdout
    assert "applied" not in again.stderr

    store = await open_store(empty_url, migrate=False)
    try:
        assert await store.schema_version() == latest(store.dialect)
        assert (await store.insert(new_job("a"))).id == "a"
    finally:
        await store.close()


async def test_migrations_at_once_apply_once(empty_url: str) -> None:
    stores: list[SqlStore] = list(await asyncio.gather(connect(empty_url), connect(empty_url)))
    try:
        applied = await asyncio.gather(*(store.migrate() for store in stores))
        assert sorted(len(a) for a in applied) == [0, len(migrations(stores[0].dialect))]
        assert await stores[1].schema_version() == latest(stores[1].dialect)
    finally:
        for store in stores:
            await store.close()


async def test_a_store_from_before_migrations_is_adopted_with_its_jobs(empty_url: str) -> None:
    store = await connect(empty_url)
    try:
        # What the old create-if-missing path left: the tables, no schema_version.
        async with store.transaction() as db:
            await store._run_script(db, migrations(store.dialect)[0].sql)
            await db.execute(
                "INSERT INTO jobs (id, state, spec, content_key, output_url, frames_total,"
                " priority, max_attempts, created_at, available_at)"
                " VALUES ('old', 'queued', ?, 'k', 'file:///k.mp4', 1, 0, 3, 1, 1)",
                b"spec",
            )
        assert await store.schema_version() == 0
    finally:
        await store.close()

    # A production coordinator does not touch it; it says what to run, and exits.
    refused = run(
        "coordinator", "--store", empty_url, "--listen", "127.0.0.1:0", "--auto-migrate", "off"
    )
    assert refused.returncode == 2
    assert "framefleet migrate --store" in refused.stderr
    assert "Traceback" not in refused.stderr

    assert run("migrate", "--store", empty_url).returncode == 0
    store = await open_store(empty_url, migrate=False)
    try:
        old = await store.get("old")
        assert old is not None and (old.state.value, old.tenant) == ("queued", "")
    finally:
        await store.close()


async def test_auto_migrate_is_on_for_sqlite_only(tmp_path: Path) -> None:
    from framefleet.coordinator.config import CoordinatorConfig

    assert CoordinatorConfig(store_url=f"sqlite:///{tmp_path}/x.db").migrates
    assert not CoordinatorConfig(store_url="postgresql://db/jobs").migrates
    assert CoordinatorConfig(store_url="postgresql://db/jobs", auto_migrate=True).migrates
    assert not CoordinatorConfig(store_url="sqlite:///x.db", auto_migrate=False).migrates

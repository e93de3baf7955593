"""Opens the store a URL names: sqlite:///path (the embedded default) or postgresql://...,
and checks its schema version (framefleet/coordinator/store/migrations)."""

from __future__ import annotations

import logging
from urllib.parse import urlparse

from framefleet.coordinator.store.migrations import SchemaTooOld, latest, redact
from framefleet.coordinator.store.sql import SqlStore

log = logging.getLogger("framefleet.coordinator")


async def connect(url: str) -> SqlStore:
    """The store at ``url``, as it is: its schema is not checked."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from framefleet.coordinator.store.sqlite import SqliteStore

        # sqlite:///abs/path.db -> /abs/path.db
        return await SqliteStore.open(url.removeprefix("sqlite://"))
    if scheme in ("postgres", "postgresql"):
        from framefleet.coordinator.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    raise ValueError(f"unsupported store URL {url!r} (use sqlite:///path or postgresql://...)")


async def open_store(url: str, migrate: bool) -> SqlStore:
    """The store at ``url`` with the schema this code needs. An older schema is migrated when
    ``migrate`` is set and refused (SchemaTooOld) otherwise."""
    store = await connect(url)
    try:
        current, needed = await store.schema_version(), latest(store.dialect)
        if current < needed:
            if not migrate:
                raise SchemaTooOld(url, current, needed)
            applied = await store.migrate()
            log.info(
                "store migrated",
                extra={"store": redact(url), "applied": [m.version for m in applied]},
            )
        elif current > needed:
            log.warning(
                "the store's schema is newer than this coordinator knows",
                extra={"store": redact(url), "schema": current, "known": needed},
            )
    except BaseException:
        await store.close()
        raise
    return store

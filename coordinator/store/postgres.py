"""The production job store: PostgreSQL through asyncpg.

Claims take the next job with ``FOR UPDATE SKIP LOCKED``, so several coordinators can share one
table without ever granting one job twice. The SQL is shared (sql.py); here the placeholders
are numbered and statements run on a pool, or on one connection inside a transaction.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from coordinator.store.sql import Executor, Row, SqlStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL,
    spec             BYTEA NOT NULL,
    content_key      TEXT NOT NULL,
    output_url       TEXT NOT NULL,
    frames_total     INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    available_at     DOUBLE PRECISION NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    fencing_token    BIGINT NOT NULL DEFAULT 0,
    lease_expires_at DOUBLE PRECISION,
    frames_done      INTEGER NOT NULL DEFAULT 0,
    output_bytes     BIGINT NOT NULL DEFAULT 0,
    error_class      TEXT,
    error_message    TEXT,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    cache_hit        BOOLEAN NOT NULL DEFAULT FALSE,
    source_key       TEXT NOT NULL DEFAULT '',
    batch_id         TEXT,
    row_key          TEXT,
    fair_rank        INTEGER NOT NULL DEFAULT 0,
    trace_context    TEXT NOT NULL DEFAULT '',
    upload_id        TEXT,
    interruptions    INTEGER NOT NULL DEFAULT 0,
    tenant           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (priority DESC, fair_rank, seq)
    WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, state);
CREATE TABLE IF NOT EXISTS sources (
    key    TEXT PRIMARY KEY,
    source BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    finished_at  DOUBLE PRECISION,
    digest       TEXT,
    manifest_url TEXT,
    tenant       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (lease_owner) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output_url, state);
"""


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """The shared SQL's ? placeholders as PostgreSQL's $1, $2, ..."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


class _Connection:
    """Statements on the pool (each on any connection) or on one connection."""

    def __init__(self, db: asyncpg.Pool | PoolConnectionProxy[Any]) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._db.fetch(numbered(sql), *args))

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self._db.execute(numbered(sql), *args)
        return int(status.split()[-1])  # "UPDATE 3"

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self._db.executemany(numbered(sql), rows)


class PostgresStore(SqlStore):
    random32 = "floor(random() * 4294967296)::bigint"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    for_update = " FOR UPDATE"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        super().__init__(_Connection(pool))

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
        async with pool.acquire() as connection:
            # Serialise schema creation between coordinators starting together.
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(7070)")
                await connection.execute(SCHEMA)
                # Stores made before tenants: their jobs and batches belong to no tenant ("").
                for table in ("jobs", "batches"):
                    await connection.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL"
                        " DEFAULT ''"
                    )
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as connection, connection.transaction():
            yield _Connection(connection)

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

from framefleet.coordinator.store.sql import Executor, Row, SqlStore


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
        count = status.split()[-1]  # "UPDATE 3"; "CREATE TABLE" counts nothing
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self._db.executemany(numbered(sql), rows)


class PostgresStore(SqlStore):
    dialect = "postgres"
    has_version_table = "SELECT to_regclass('schema_version') IS NOT NULL"
    random32 = "floor(random() * 4294967296)::bigint"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    for_update = " FOR UPDATE"

    def __init__(self, pool: asyncpg.Pool, claims: asyncpg.Pool | None = None) -> None:
        self._pool = pool
        self._claims_pool = claims
        super().__init__(_Connection(pool), None if claims is None else _Connection(claims))

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
        # The dispatcher's claims on a connection of their own: hundreds of agents
        # reconnecting, heartbeating or completing at once never make them wait for one.
        claims = await asyncpg.create_pool(url, min_size=1, max_size=1)
        return cls(pool, claims)

    async def close(self) -> None:
        await self._pool.close()
        if self._claims_pool is not None:
            await self._claims_pool.close()

    async def _lock_schema(self, db: Executor) -> None:
        # Two `framefleet migrate` runs (or coordinators) at once: the second waits, then
        # finds nothing left to apply.
        await db.fetch("SELECT pg_advisory_xact_lock(7070)")

    async def _run_script(self, db: Executor, sql: str) -> None:
        await db.execute(sql)  # no arguments: one round trip for every statement

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as connection, connection.transaction():
            yield _Connection(connection)

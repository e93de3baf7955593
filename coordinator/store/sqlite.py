"""The embedded job store: one SQLite file in WAL mode, zero setup.

aiosqlite runs every statement on one worker thread; a lock keeps each transaction's
statements together, so no other statement lands inside one. The SQL is shared (sql.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import aiosqlite

from coordinator.store.sql import Executor, Row, SqlStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL,
    spec             BLOB NOT NULL,
    content_key      TEXT NOT NULL,
    output_url       TEXT NOT NULL,
    frames_total     INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    available_at     REAL NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    fencing_token    INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    frames_done      INTEGER NOT NULL DEFAULT 0,
    output_bytes     INTEGER NOT NULL DEFAULT 0,
    error_class      TEXT,
    error_message    TEXT,
    started_at       REAL,
    finished_at      REAL,
    cache_hit        INTEGER NOT NULL DEFAULT 0,
    source_key       TEXT NOT NULL DEFAULT '',
    batch_id         TEXT,
    row_key          TEXT,
    fair_rank        INTEGER NOT NULL DEFAULT 0,
    trace_context    TEXT NOT NULL DEFAULT '',
    upload_id        TEXT,
    interruptions    INTEGER NOT NULL DEFAULT 0,
    tenant           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, fair_rank, seq);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, state);
CREATE TABLE IF NOT EXISTS sources (
    key    TEXT PRIMARY KEY,
    source BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    finished_at  REAL,
    digest       TEXT,
    manifest_url TEXT,
    tenant       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (state, lease_expires_at);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (lease_owner) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output_url, state);
"""


class _Connection:
    """Statements on the one connection, each taking the lock (``lock``), or none inside a
    transaction, which holds it already."""

    def __init__(self, db: aiosqlite.Connection, lock: asyncio.Lock | None) -> None:
        self._db = db
        self._lock = lock

    def _turn(self) -> AbstractAsyncContextManager[Any]:
        return self._lock or nullcontext()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._turn():
            # Executed and fetched in one step on the connection's thread.
            return list(await self._db.execute_fetchall(sql, args))

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._turn():
            cursor = await self._db.execute(sql, args)
            return cursor.rowcount

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self._turn():
            await self._db.executemany(sql, rows)


class SqliteStore(SqlStore):
    random32 = "(random() & 4294967295)"

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._connection = db
        self._lock = asyncio.Lock()
        super().__init__(_Connection(db, self._lock))

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA)
        # Stores made before tenants: their jobs and batches belong to no tenant ("").
        for table in ("jobs", "batches"):
            columns = {row[1] for row in await db.execute_fetchall(f"PRAGMA table_info({table})")}
            if "tenant" not in columns:
                await db.execute(f"ALTER TABLE {table} ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")
        return cls(db)

    async def close(self) -> None:
        await self._connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield _Connection(self._connection, None)
            except BaseException:
                await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")

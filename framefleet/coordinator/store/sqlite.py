"""The embedded job store: one SQLite file in WAL mode, zero setup.

aiosqlite runs every statement on one worker thread; a lock keeps each transaction's
statements together, so no other statement lands inside one. The SQL is shared (sql.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import aiosqlite

from framefleet.coordinator.store.sql import Executor, Row, SqlStore


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


def statements(script: str) -> list[str]:
    """A migration script as single statements (executescript would commit on its own)."""
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    return found


class SqliteStore(SqlStore):
    dialect = "sqlite"
    has_version_table = (
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    )
    random32 = "(random() & 4294967295)"

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._connection = db
        self._lock = asyncio.Lock()
        super().__init__(_Connection(db, self._lock))

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA busy_timeout=5000")
        # Switching a new file to WAL can be refused at once while another connection opens
        # it (SQLite's busy handler does not cover it): try again for the same 5 s.
        for attempt in range(50):
            try:
                await db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 49:
                    await db.close()
                    raise
                await asyncio.sleep(0.1)
        await db.execute("PRAGMA synchronous=NORMAL")
        return cls(db)

    async def close(self) -> None:
        await self._connection.close()

    async def _run_script(self, db: Executor, sql: str) -> None:
        for statement in statements(sql):
            await db.execute(statement)

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

"""The embedded job store: one SQLite file in WAL mode, zero setup.

aiosqlite runs every statement on one worker thread, so statements never interleave; each
state change is a single UPDATE ... RETURNING, which SQLite applies atomically.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from coordinator.store.base import JobRecord, JobState, NewJob

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
    cache_hit        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (state, lease_expires_at);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (lease_owner) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output_url, state);
"""

COLUMNS = (
    "id, state, spec, content_key, output_url, frames_total, priority, max_attempts, created_at,"
    " available_at, attempt, lease_owner, fencing_token, lease_expires_at, frames_done,"
    " output_bytes, error_class, error_message, started_at, finished_at, cache_hit"
)

LEASED = "state = 'leased' AND id = ? AND fencing_token = ?"


def _record(row: Any) -> JobRecord:
    values = list(row)
    values[1] = JobState(values[1])
    values[-1] = bool(values[-1])
    return JobRecord(*values)


class SqliteStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def _one(self, sql: str, *args: Any) -> JobRecord | None:
        async with self._db.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _record(row)

    async def _all(self, sql: str, *args: Any) -> list[JobRecord]:
        async with self._db.execute(sql, args) as cursor:
            return [_record(row) for row in await cursor.fetchall()]

    async def insert(self, job: NewJob) -> JobRecord:
        record = await self._one(
            "INSERT INTO jobs (id, state, spec, content_key, output_url, frames_total, priority,"
            " max_attempts, created_at, available_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)"
            f" RETURNING {COLUMNS}",
            job.id,
            job.spec,
            job.content_key,
            job.output_url,
            job.frames_total,
            job.priority,
            job.max_attempts,
            job.created_at,
            job.created_at,
        )
        assert record is not None
        return record

    async def insert_cached(self, job: NewJob, output_bytes: int) -> JobRecord:
        record = await self._one(
            "INSERT INTO jobs (id, state, spec, content_key, output_url, frames_total, priority,"
            " max_attempts, created_at, available_at, frames_done, output_bytes, finished_at,"
            " cache_hit) VALUES (?, 'succeeded', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
            f" RETURNING {COLUMNS}",
            job.id,
            job.spec,
            job.content_key,
            job.output_url,
            job.frames_total,
            job.priority,
            job.max_attempts,
            job.created_at,
            job.created_at,
            job.frames_total,
            output_bytes,
            job.created_at,
        )
        assert record is not None
        return record

    async def find_output(self, output_url: str) -> JobRecord | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM jobs WHERE output_url = ? AND state = 'succeeded' LIMIT 1",
            output_url,
        )

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._one(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", job_id)

    async def list_jobs(self, states: list[JobState], limit: int) -> list[JobRecord]:
        if not states:
            return await self._all(f"SELECT {COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?", limit)
        marks = ",".join("?" * len(states))
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY seq DESC LIMIT ?",
            *[s.value for s in states],
            limit,
        )

    async def claim(self, agent_id: str, now: float, ttl: float) -> JobRecord | None:
        return await self._one(
            "UPDATE jobs SET state = 'leased', lease_owner = ?, fencing_token = fencing_token + 1,"
            " lease_expires_at = ?, attempt = attempt + 1, started_at = ?, frames_done = 0"
            " WHERE seq = (SELECT seq FROM jobs AS q WHERE state = 'queued' AND available_at <= ?"
            "              AND NOT EXISTS (SELECT 1 FROM jobs AS l WHERE l.state = 'leased'"
            "                              AND l.output_url = q.output_url)"
            "              ORDER BY priority DESC, seq LIMIT 1)"
            f" RETURNING {COLUMNS}",
            agent_id,
            now + ttl,
            now,
            now,
        )

    async def renew(
        self, agent_id: str, leases: list[tuple[str, int]], now: float, ttl: float
    ) -> set[str]:
        renewed: set[str] = set()
        for job_id, token in leases:
            cursor = await self._db.execute(
                f"UPDATE jobs SET lease_expires_at = ? WHERE {LEASED} AND lease_owner = ?",
                (now + ttl, job_id, token, agent_id),
            )
            if cursor.rowcount == 1:
                renewed.add(job_id)
        return renewed

    async def leases_of(self, agent_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE state = 'leased' AND lease_owner = ?", agent_id
        )

    async def progress(self, job_id: str, token: int, frames_done: int) -> bool:
        cursor = await self._db.execute(
            f"UPDATE jobs SET frames_done = ? WHERE {LEASED}", (frames_done, job_id, token)
        )
        return cursor.rowcount == 1

    async def complete(
        self, job_id: str, token: int, output_url: str, output_bytes: int, now: float
    ) -> JobRecord | None:
        return await self._one(
            "UPDATE jobs SET state = 'succeeded', output_url = ?, output_bytes = ?,"
            " frames_done = frames_total, finished_at = ?, lease_expires_at = NULL,"
            " error_class = NULL, error_message = NULL"
            f" WHERE {LEASED} RETURNING {COLUMNS}",
            output_url,
            output_bytes,
            now,
            job_id,
            token,
        )

    async def fail(
        self,
        job_id: str,
        token: int,
        error_class: str,
        message: str,
        retry_at: float | None,
        now: float,
    ) -> JobRecord | None:
        retry = retry_at is not None
        return await self._one(
            "UPDATE jobs SET"
            " state = CASE WHEN ? AND attempt < max_attempts THEN 'queued' ELSE 'failed' END,"
            " available_at = COALESCE(?, available_at),"
            " finished_at = CASE WHEN ? AND attempt < max_attempts THEN NULL ELSE ? END,"
            " error_class = ?, error_message = ?, lease_expires_at = NULL"
            f" WHERE {LEASED} RETURNING {COLUMNS}",
            retry,
            retry_at,
            retry,
            now,
            error_class,
            message,
            job_id,
            token,
        )

    async def complete_waiting(
        self, output_url: str, output_bytes: int, now: float
    ) -> list[JobRecord]:
        return await self._all(
            "UPDATE jobs SET state = 'succeeded', output_bytes = ?, frames_done = frames_total,"
            " finished_at = ?, cache_hit = 1, error_class = NULL, error_message = NULL"
            f" WHERE output_url = ? AND state = 'queued' RETURNING {COLUMNS}",
            output_bytes,
            now,
            output_url,
        )

    async def release(self, job_id: str, token: int, now: float) -> JobRecord | None:
        return await self._one(
            "UPDATE jobs SET state = 'queued', available_at = ?, attempt = attempt - 1,"
            f" lease_expires_at = NULL WHERE {LEASED} RETURNING {COLUMNS}",
            now,
            job_id,
            token,
        )

    async def expire(self, now: float, retry_at: float) -> list[JobRecord]:
        return await self._all(
            "UPDATE jobs SET"
            " state = CASE WHEN attempt < max_attempts THEN 'queued' ELSE 'failed' END,"
            " finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ? END,"
            " available_at = ?, error_class = 'LEASE_EXPIRED',"
            " error_message = 'lease expired: agent ' || lease_owner || ' stopped heartbeating',"
            " lease_expires_at = NULL"
            f" WHERE state = 'leased' AND lease_expires_at < ? RETURNING {COLUMNS}",
            now,
            retry_at,
            now,
        )

    async def extend_leases(self, until: float) -> int:
        cursor = await self._db.execute(
            "UPDATE jobs SET lease_expires_at = MAX(lease_expires_at, ?) WHERE state = 'leased'",
            (until,),
        )
        return cursor.rowcount

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        before = await self.get(job_id)
        if before is None or before.state.final:
            return before
        after = await self._one(
            "UPDATE jobs SET state = 'cancelled', fencing_token = fencing_token + 1,"
            " finished_at = ?, lease_expires_at = NULL"
            " WHERE id = ? AND state IN ('queued', 'leased') AND fencing_token = ?"
            f" RETURNING {COLUMNS}",
            now,
            job_id,
            before.fencing_token,
        )
        return before if after is not None else await self.cancel(job_id, now)

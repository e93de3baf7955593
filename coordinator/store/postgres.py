"""The production job store: PostgreSQL through asyncpg.

Claims take the next job with ``FOR UPDATE SKIP LOCKED``, so several coordinators can share one
table without ever granting one job twice; every state change is one UPDATE ... RETURNING.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from coordinator.store.base import JobRecord, JobState, NewJob

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
    cache_hit        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (priority DESC, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (lease_owner) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output_url, state);
"""

COLUMNS = (
    "id, state, spec, content_key, output_url, frames_total, priority, max_attempts, created_at,"
    " available_at, attempt, lease_owner, fencing_token, lease_expires_at, frames_done,"
    " output_bytes, error_class, error_message, started_at, finished_at, cache_hit"
)

LEASED = "state = 'leased' AND id = $1 AND fencing_token = $2"


def _record(row: Any) -> JobRecord:
    values = list(row)
    values[1] = JobState(values[1])
    return JobRecord(*values)


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
        async with pool.acquire() as connection:
            # Serialise schema creation between coordinators starting together.
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(7070)")
                await connection.execute(SCHEMA)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def _one(self, sql: str, *args: Any) -> JobRecord | None:
        row = await self._pool.fetchrow(sql, *args)
        return None if row is None else _record(row)

    async def _all(self, sql: str, *args: Any) -> list[JobRecord]:
        return [_record(row) for row in await self._pool.fetch(sql, *args)]

    async def insert(self, job: NewJob) -> JobRecord:
        record = await self._one(
            "INSERT INTO jobs (id, state, spec, content_key, output_url, frames_total, priority,"
            " max_attempts, created_at, available_at)"
            f" VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {COLUMNS}",
            job.id,
            job.spec,
            job.content_key,
            job.output_url,
            job.frames_total,
            job.priority,
            job.max_attempts,
            job.created_at,
        )
        assert record is not None
        return record

    async def insert_cached(self, job: NewJob, output_bytes: int) -> JobRecord:
        record = await self._one(
            "INSERT INTO jobs (id, state, spec, content_key, output_url, frames_total, priority,"
            " max_attempts, created_at, available_at, frames_done, output_bytes, finished_at,"
            " cache_hit) VALUES ($1, 'succeeded', $2, $3, $4, $5, $6, $7, $8, $8, $5, $9, $8,"
            f" TRUE) RETURNING {COLUMNS}",
            job.id,
            job.spec,
            job.content_key,
            job.output_url,
            job.frames_total,
            job.priority,
            job.max_attempts,
            job.created_at,
            output_bytes,
        )
        assert record is not None
        return record

    async def find_output(self, output_url: str) -> JobRecord | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM jobs WHERE output_url = $1 AND state = 'succeeded' LIMIT 1",
            output_url,
        )

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._one(f"SELECT {COLUMNS} FROM jobs WHERE id = $1", job_id)

    async def list_jobs(self, states: list[JobState], limit: int) -> list[JobRecord]:
        if not states:
            return await self._all(f"SELECT {COLUMNS} FROM jobs ORDER BY seq DESC LIMIT $1", limit)
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE state = ANY($1) ORDER BY seq DESC LIMIT $2",
            [s.value for s in states],
            limit,
        )

    async def claim(self, agent_id: str, now: float, ttl: float) -> JobRecord | None:
        return await self._one(
            "UPDATE jobs SET state = 'leased', lease_owner = $1, fencing_token = fencing_token + 1,"
            " lease_expires_at = $2, attempt = attempt + 1, started_at = $3, frames_done = 0"
            " WHERE seq = (SELECT seq FROM jobs AS q WHERE state = 'queued' AND available_at <= $3"
            "              AND NOT EXISTS (SELECT 1 FROM jobs AS l WHERE l.state = 'leased'"
            "                              AND l.output_url = q.output_url)"
            "              ORDER BY priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
            f" AND state = 'queued' RETURNING {COLUMNS}",
            agent_id,
            now + ttl,
            now,
        )

    async def renew(
        self, agent_id: str, leases: list[tuple[str, int]], now: float, ttl: float
    ) -> set[str]:
        if not leases:
            return set()
        rows = await self._pool.fetch(
            "UPDATE jobs SET lease_expires_at = $1 FROM unnest($2::text[], $3::bigint[])"
            " AS held(id, token) WHERE jobs.state = 'leased' AND jobs.id = held.id"
            " AND jobs.fencing_token = held.token AND jobs.lease_owner = $4 RETURNING jobs.id",
            now + ttl,
            [job_id for job_id, _ in leases],
            [token for _, token in leases],
            agent_id,
        )
        return {row["id"] for row in rows}

    async def leases_of(self, agent_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE state = 'leased' AND lease_owner = $1", agent_id
        )

    async def progress(self, job_id: str, token: int, frames_done: int) -> bool:
        status = await self._pool.execute(
            f"UPDATE jobs SET frames_done = $3 WHERE {LEASED}", job_id, token, frames_done
        )
        return bool(status == "UPDATE 1")

    async def complete(
        self, job_id: str, token: int, output_url: str, output_bytes: int, now: float
    ) -> JobRecord | None:
        return await self._one(
            "UPDATE jobs SET state = 'succeeded', output_url = $3, output_bytes = $4,"
            " frames_done = frames_total, finished_at = $5, lease_expires_at = NULL,"
            " error_class = NULL, error_message = NULL"
            f" WHERE {LEASED} RETURNING {COLUMNS}",
            job_id,
            token,
            output_url,
            output_bytes,
            now,
        )

    async def complete_waiting(
        self, output_url: str, output_bytes: int, now: float
    ) -> list[JobRecord]:
        return await self._all(
            "UPDATE jobs SET state = 'succeeded', output_bytes = $2, frames_done = frames_total,"
            " finished_at = $3, cache_hit = TRUE, error_class = NULL, error_message = NULL"
            f" WHERE output_url = $1 AND state = 'queued' RETURNING {COLUMNS}",
            output_url,
            output_bytes,
            now,
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
        return await self._one(
            "UPDATE jobs SET"
            " state = CASE WHEN $3::boolean AND attempt < max_attempts"
            "              THEN 'queued' ELSE 'failed' END,"
            " available_at = COALESCE($4::double precision, available_at),"
            " finished_at = CASE WHEN $3::boolean AND attempt < max_attempts"
            "                    THEN NULL ELSE $5::double precision END,"
            " error_class = $6, error_message = $7, lease_expires_at = NULL"
            f" WHERE {LEASED} RETURNING {COLUMNS}",
            job_id,
            token,
            retry_at is not None,
            retry_at,
            now,
            error_class,
            message,
        )

    async def release(self, job_id: str, token: int, now: float) -> JobRecord | None:
        return await self._one(
            "UPDATE jobs SET state = 'queued', available_at = $3, attempt = attempt - 1,"
            f" lease_expires_at = NULL WHERE {LEASED} RETURNING {COLUMNS}",
            job_id,
            token,
            now,
        )

    async def expire(self, now: float, retry_at: float) -> list[JobRecord]:
        return await self._all(
            "UPDATE jobs SET"
            " state = CASE WHEN attempt < max_attempts THEN 'queued' ELSE 'failed' END,"
            " finished_at = CASE WHEN attempt < max_attempts"
            "                    THEN NULL ELSE $1::double precision END,"
            " available_at = $2, error_class = 'LEASE_EXPIRED',"
            " error_message = 'lease expired: agent ' || lease_owner || ' stopped heartbeating',"
            " lease_expires_at = NULL"
            f" WHERE state = 'leased' AND lease_expires_at < $1 RETURNING {COLUMNS}",
            now,
            retry_at,
        )

    async def extend_leases(self, until: float) -> int:
        status = await self._pool.execute(
            "UPDATE jobs SET lease_expires_at = GREATEST(lease_expires_at, $1)"
            " WHERE state = 'leased'",
            until,
        )
        return int(status.split()[-1])

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE", job_id
            )
            if row is None:
                return None
            before = _record(row)
            if not before.state.final:
                await connection.execute(
                    "UPDATE jobs SET state = 'cancelled', fencing_token = fencing_token + 1,"
                    " finished_at = $2, lease_expires_at = NULL WHERE id = $1",
                    job_id,
                    now,
                )
            return before

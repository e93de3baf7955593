"""The production job store: PostgreSQL through asyncpg.

Claims take the next job with ``FOR UPDATE SKIP LOCKED``, so several coordinators can share one
table without ever granting one job twice; every state change is one UPDATE ... RETURNING.
"""

from __future__ import annotations

import math
from typing import Any

import asyncpg

from coordinator.store.base import (
    COLUMNS,
    EXPIRED,
    INSERT_COLUMNS,
    INSERT_COUNT,
    SETTLE,
    BatchRecord,
    Done,
    JobRecord,
    JobState,
    Lease,
    NewBatch,
    NewJob,
    Transition,
    insert_values,
    next_token,
    record_from_row,
    settle_values,
)

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
    interruptions    INTEGER NOT NULL DEFAULT 0
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
    manifest_url TEXT
);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (lease_owner) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output_url, state);
"""

PLACEHOLDERS = ", ".join(f"${n}" for n in range(1, INSERT_COUNT + 1))
INSERT = f"INSERT INTO jobs ({INSERT_COLUMNS}) VALUES ({PLACEHOLDERS})"

LEASED = "state = 'leased' AND id = $1 AND lease_owner = $2 AND fencing_token = $3"
NEXT_TOKEN = next_token("floor(random() * 4294967296)::bigint")


def numbered(sql: str) -> str:
    """The shared SQL's ? placeholders as PostgreSQL's $1, $2, ..."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


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
        return None if row is None else record_from_row(row)

    async def _all(self, sql: str, *args: Any) -> list[JobRecord]:
        return [record_from_row(row) for row in await self._pool.fetch(sql, *args)]

    async def insert(self, job: NewJob) -> JobRecord:
        record = await self._one(f"{INSERT} RETURNING {COLUMNS}", *insert_values(job))
        assert record is not None
        return record

    async def insert_cached(self, job: NewJob, output_bytes: int) -> JobRecord:
        record = await self._one(f"{INSERT} RETURNING {COLUMNS}", *insert_values(job, output_bytes))
        assert record is not None
        return record

    async def insert_batch(
        self, batch: NewBatch, jobs: list[NewJob], cached: dict[str, int]
    ) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO batches (id, name, created_at) VALUES ($1, $2, $3)",
                batch.id,
                batch.name,
                batch.created_at,
            )
            await connection.executemany(INSERT, [insert_values(j, cached.get(j.id)) for j in jobs])

    async def put_source(self, key: str, source: bytes) -> None:
        await self._pool.execute(
            "INSERT INTO sources (key, source) VALUES ($1, $2) ON CONFLICT DO NOTHING", key, source
        )

    async def get_source(self, key: str) -> bytes | None:
        source = await self._pool.fetchval("SELECT source FROM sources WHERE key = $1", key)
        return None if source is None else bytes(source)

    async def find_outputs(self, output_urls: list[str]) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT output_url, MAX(output_bytes) AS size FROM jobs WHERE state = 'succeeded'"
            " AND output_url = ANY($1) GROUP BY output_url",
            output_urls,
        )
        return {row["output_url"]: row["size"] for row in rows}

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        head = await self._pool.fetchrow(
            "SELECT id, name, created_at, finished_at, digest, manifest_url FROM batches"
            " WHERE id = $1",
            batch_id,
        )
        if head is None:
            return None
        groups = await self._pool.fetch(
            "SELECT state, COUNT(*) AS n, SUM(cache_hit::int) AS hits, SUM(frames_done) AS done,"
            " SUM(frames_total) AS total FROM jobs WHERE batch_id = $1 GROUP BY state",
            batch_id,
        )
        return BatchRecord(
            id=head["id"],
            name=head["name"],
            created_at=head["created_at"],
            total=sum(g["n"] for g in groups),
            counts={JobState(g["state"]): g["n"] for g in groups},
            cache_hits=sum(g["hits"] for g in groups),
            frames_done=sum(g["done"] for g in groups),
            frames_total=sum(g["total"] for g in groups),
            finished_at=head["finished_at"],
            digest=head["digest"],
            manifest_url=head["manifest_url"],
        )

    async def batch_jobs(self, batch_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE batch_id = $1 ORDER BY seq", batch_id
        )

    async def ended_batches(self) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT id FROM batches AS b WHERE finished_at IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM jobs WHERE batch_id = b.id AND state IN ('queued', 'leased'))"
        )
        return [row["id"] for row in rows]

    async def finish_batch(
        self, batch_id: str, finished_at: float, digest: str, manifest_url: str
    ) -> bool:
        status = await self._pool.execute(
            "UPDATE batches SET finished_at = $2, digest = $3, manifest_url = $4"
            " WHERE id = $1 AND finished_at IS NULL",
            batch_id,
            finished_at,
            digest,
            manifest_url,
        )
        return bool(status == "UPDATE 1")

    async def cancel_batch(self, batch_id: str, now: float) -> list[JobRecord]:
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                f"SELECT {COLUMNS} FROM jobs WHERE batch_id = $1"
                " AND state IN ('queued', 'leased') FOR UPDATE",
                batch_id,
            )
            await connection.execute(
                f"UPDATE jobs SET state = 'cancelled', fencing_token = {NEXT_TOKEN},"
                " finished_at = $2, lease_expires_at = NULL"
                " WHERE batch_id = $1 AND state IN ('queued', 'leased')",
                batch_id,
                now,
            )
        return [record_from_row(row) for row in rows]

    async def find_output(self, output_url: str) -> JobRecord | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM jobs WHERE output_url = $1 AND state = 'succeeded' LIMIT 1",
            output_url,
        )

    async def count_by_state(self) -> dict[JobState, int]:
        rows = await self._pool.fetch("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {JobState(row["state"]): row["n"] for row in rows}

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

    async def claim(self, agent_id: str, now: float, ttl: float, limit: int) -> list[JobRecord]:
        # Of identical jobs (same output) only the oldest, and none while one is leased. The
        # CTE runs once: a LIMIT ... SKIP LOCKED subquery under IN may be re-evaluated.
        return await self._all(
            "WITH picked AS (SELECT seq FROM jobs AS q WHERE state = 'queued'"
            "   AND available_at <= $3 AND NOT EXISTS (SELECT 1 FROM jobs AS o"
            "       WHERE o.output_url = q.output_url"
            "       AND (o.state = 'leased' OR (o.state = 'queued' AND o.seq < q.seq)))"
            "   ORDER BY priority DESC, fair_rank, seq LIMIT $4 FOR UPDATE SKIP LOCKED)"
            " UPDATE jobs SET state = 'leased', lease_owner = $1,"
            f" fencing_token = {NEXT_TOKEN}, lease_expires_at = $2, attempt = attempt + 1,"
            " started_at = $3, frames_done = 0, upload_id = NULL"
            " FROM picked WHERE jobs.seq = picked.seq"
            f" RETURNING {COLUMNS}",
            agent_id,
            now + ttl,
            now,
            limit,
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

    async def progress(self, lease: Lease, frames_done: int, upload_id: str = "") -> bool:
        status = await self._pool.execute(
            "UPDATE jobs SET frames_done = $4, upload_id = COALESCE(NULLIF($5, ''), upload_id)"
            f" WHERE {LEASED}",
            lease.job_id,
            lease.owner,
            lease.token,
            frames_done,
            upload_id,
        )
        return bool(status == "UPDATE 1")

    async def complete(self, owner: str, done: list[Done], now: float) -> list[JobRecord]:
        return await self._all(
            # d's columns are named apart from jobs' so RETURNING stays unambiguous.
            "UPDATE jobs SET state = 'succeeded', output_url = d.d_url, output_bytes = d.d_size,"
            " frames_done = frames_total, finished_at = $1, lease_expires_at = NULL,"
            " error_class = NULL, error_message = NULL"
            " FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[])"
            " AS d(d_id, d_token, d_url, d_size) WHERE jobs.state = 'leased'"
            " AND jobs.lease_owner = $6 AND jobs.id = d.d_id AND jobs.fencing_token = d.d_token"
            f" RETURNING {COLUMNS}",
            now,
            [d.job_id for d in done],
            [d.token for d in done],
            [d.output_url for d in done],
            [d.output_bytes for d in done],
            owner,
        )

    async def complete_waiting(self, outputs: dict[str, int], now: float) -> list[JobRecord]:
        return await self._all(
            "UPDATE jobs SET state = 'succeeded', output_bytes = d.d_size,"
            " frames_done = frames_total, finished_at = $1, cache_hit = TRUE,"
            " error_class = NULL, error_message = NULL"
            " FROM unnest($2::text[], $3::bigint[]) AS d(d_url, d_size)"
            f" WHERE jobs.state = 'queued' AND jobs.output_url = d.d_url RETURNING {COLUMNS}",
            now,
            list(outputs),
            list(outputs.values()),
        )

    async def settle(
        self, lease: Lease, transition: Transition, now: float, expired_by: float = math.inf
    ) -> JobRecord | None:
        return await self._one(
            numbered(f"{SETTLE} RETURNING {COLUMNS}"),
            *settle_values(lease, transition, now, expired_by),
        )

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        return await self._all(numbered(f"SELECT {COLUMNS} FROM jobs {EXPIRED}"), now, limit)

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
            before = record_from_row(row)
            if not before.state.final:
                await connection.execute(
                    f"UPDATE jobs SET state = 'cancelled', fencing_token = {NEXT_TOKEN},"
                    " finished_at = $2, lease_expires_at = NULL WHERE id = $1",
                    job_id,
                    now,
                )
            return before

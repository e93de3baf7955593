"""The embedded job store: one SQLite file in WAL mode, zero setup.

aiosqlite runs every statement on one worker thread, so statements never interleave; each
state change is a single UPDATE ... RETURNING, which SQLite applies atomically.
"""

from __future__ import annotations

import math
from typing import Any

import aiosqlite

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
    interruptions    INTEGER NOT NULL DEFAULT 0
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
    manifest_url TEXT
);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (state, lease_expires_at);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (lease_owner) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS jobs_output ON jobs (output_url, state);
"""

INSERT = f"INSERT INTO jobs ({INSERT_COLUMNS}) VALUES ({', '.join('?' * INSERT_COUNT)})"

LEASED = "state = 'leased' AND id = ? AND lease_owner = ? AND fencing_token = ?"
NEXT_TOKEN = next_token("(random() & 4294967295)")
# Queued jobs available now, in claim order; of identical jobs (same output) only the oldest,
# and none while one of them is leased.
CLAIMABLE = (
    "SELECT seq FROM jobs AS q WHERE state = 'queued' AND available_at <= ?"
    " AND NOT EXISTS (SELECT 1 FROM jobs AS o WHERE o.output_url = q.output_url"
    "                 AND (o.state = 'leased' OR (o.state = 'queued' AND o.seq < q.seq)))"
    " ORDER BY priority DESC, fair_rank, seq"
)


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

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        # Executed and fetched in one step on the connection's thread, so no other statement
        # runs between the two.
        return list(await self._db.execute_fetchall(sql, args))

    async def _one(self, sql: str, *args: Any) -> JobRecord | None:
        rows = await self._rows(sql, *args)
        return record_from_row(rows[0]) if rows else None

    async def _all(self, sql: str, *args: Any) -> list[JobRecord]:
        return [record_from_row(row) for row in await self._rows(sql, *args)]

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
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            await self._db.execute(
                "INSERT INTO batches (id, name, created_at) VALUES (?, ?, ?)",
                (batch.id, batch.name, batch.created_at),
            )
            await self._db.executemany(INSERT, [insert_values(j, cached.get(j.id)) for j in jobs])
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")

    async def put_source(self, key: str, source: bytes) -> None:
        await self._db.execute(
            "INSERT INTO sources (key, source) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, source)
        )

    async def get_source(self, key: str) -> bytes | None:
        rows = await self._rows("SELECT source FROM sources WHERE key = ?", key)
        return bytes(rows[0][0]) if rows else None

    async def find_outputs(self, output_urls: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(output_urls), 500):
            chunk = output_urls[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._rows(
                "SELECT output_url, MAX(output_bytes) FROM jobs WHERE state = 'succeeded'"
                f" AND output_url IN ({marks}) GROUP BY output_url",
                *chunk,
            )
            found.update({url: size for url, size in rows})
        return found

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        heads = await self._rows(
            "SELECT id, name, created_at, finished_at, digest, manifest_url FROM batches"
            " WHERE id = ?",
            batch_id,
        )
        if not heads:
            return None
        head = heads[0]
        groups = await self._rows(
            "SELECT state, COUNT(*), SUM(cache_hit), SUM(frames_done), SUM(frames_total)"
            " FROM jobs WHERE batch_id = ? GROUP BY state",
            batch_id,
        )
        return BatchRecord(
            id=head[0],
            name=head[1],
            created_at=head[2],
            total=sum(g[1] for g in groups),
            counts={JobState(g[0]): g[1] for g in groups},
            cache_hits=sum(g[2] for g in groups),
            frames_done=sum(g[3] for g in groups),
            frames_total=sum(g[4] for g in groups),
            finished_at=head[3],
            digest=head[4],
            manifest_url=head[5],
        )

    async def batch_jobs(self, batch_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE batch_id = ? ORDER BY seq", batch_id
        )

    async def ended_batches(self) -> list[str]:
        rows = await self._rows(
            "SELECT id FROM batches AS b WHERE finished_at IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM jobs WHERE batch_id = b.id AND state IN ('queued', 'leased'))"
        )
        return [row[0] for row in rows]

    async def finish_batch(
        self, batch_id: str, finished_at: float, digest: str, manifest_url: str
    ) -> bool:
        cursor = await self._db.execute(
            "UPDATE batches SET finished_at = ?, digest = ?, manifest_url = ?"
            " WHERE id = ? AND finished_at IS NULL",
            (finished_at, digest, manifest_url, batch_id),
        )
        return cursor.rowcount == 1

    async def cancel_batch(self, batch_id: str, now: float) -> list[JobRecord]:
        before = await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE batch_id = ? AND state IN ('queued', 'leased')",
            batch_id,
        )
        await self._db.execute(
            f"UPDATE jobs SET state = 'cancelled', fencing_token = {NEXT_TOKEN},"
            " finished_at = ?, lease_expires_at = NULL"
            " WHERE batch_id = ? AND state IN ('queued', 'leased')",
            (now, batch_id),
        )
        return before

    async def find_output(self, output_url: str) -> JobRecord | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM jobs WHERE output_url = ? AND state = 'succeeded' LIMIT 1",
            output_url,
        )

    async def count_by_state(self) -> dict[JobState, int]:
        rows = await self._rows("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {JobState(state): count for state, count in rows}

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

    async def claim(self, agent_id: str, now: float, ttl: float, limit: int) -> list[JobRecord]:
        return await self._all(
            f"UPDATE jobs SET state = 'leased', lease_owner = ?, fencing_token = {NEXT_TOKEN},"
            " lease_expires_at = ?, attempt = attempt + 1, started_at = ?, frames_done = 0,"
            f" upload_id = NULL WHERE seq IN ({CLAIMABLE} LIMIT ?) RETURNING {COLUMNS}",
            agent_id,
            now + ttl,
            now,
            now,
            limit,
        )

    async def renew(
        self, agent_id: str, leases: list[tuple[str, int]], now: float, ttl: float
    ) -> set[str]:
        renewed: set[str] = set()
        for start in range(0, len(leases), 400):
            chunk = leases[start : start + 400]
            pairs = ",".join("(?, ?)" for _ in chunk)
            rows = await self._rows(
                "UPDATE jobs SET lease_expires_at = ? WHERE state = 'leased' AND lease_owner = ?"
                f" AND (id, fencing_token) IN (VALUES {pairs}) RETURNING id",
                now + ttl,
                agent_id,
                *[value for lease in chunk for value in lease],
            )
            renewed.update(row[0] for row in rows)
        return renewed

    async def leases_of(self, agent_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE state = 'leased' AND lease_owner = ?", agent_id
        )

    async def progress(self, lease: Lease, frames_done: int, upload_id: str = "") -> bool:
        cursor = await self._db.execute(
            "UPDATE jobs SET frames_done = ?, upload_id = COALESCE(NULLIF(?, ''), upload_id)"
            f" WHERE {LEASED}",
            (frames_done, upload_id, lease.job_id, lease.owner, lease.token),
        )
        return cursor.rowcount == 1

    async def complete(self, owner: str, done: list[Done], now: float) -> list[JobRecord]:
        records: list[JobRecord] = []
        for start in range(0, len(done), 200):
            chunk = done[start : start + 200]
            rows = ",".join("(?, ?, ?, ?)" for _ in chunk)
            records += await self._all(
                "UPDATE jobs SET state = 'succeeded', output_url = d.column3,"
                " output_bytes = d.column4, frames_done = frames_total, finished_at = ?,"
                " lease_expires_at = NULL, error_class = NULL, error_message = NULL"
                f" FROM (VALUES {rows}) AS d WHERE jobs.state = 'leased' AND jobs.lease_owner = ?"
                f" AND jobs.id = d.column1 AND jobs.fencing_token = d.column2 RETURNING {COLUMNS}",
                now,
                *[v for d in chunk for v in (d.job_id, d.token, d.output_url, d.output_bytes)],
                owner,
            )
        return records

    async def complete_waiting(self, outputs: dict[str, int], now: float) -> list[JobRecord]:
        records: list[JobRecord] = []
        items = list(outputs.items())
        for start in range(0, len(items), 400):
            chunk = items[start : start + 400]
            rows = ",".join("(?, ?)" for _ in chunk)
            records += await self._all(
                "UPDATE jobs SET state = 'succeeded', output_bytes = d.column2,"
                " frames_done = frames_total, finished_at = ?, cache_hit = 1,"
                " error_class = NULL, error_message = NULL"
                f" FROM (VALUES {rows}) AS d WHERE jobs.state = 'queued'"
                f" AND jobs.output_url = d.column1 RETURNING {COLUMNS}",
                now,
                *[v for pair in chunk for v in pair],
            )
        return records

    async def settle(
        self, lease: Lease, transition: Transition, now: float, expired_by: float = math.inf
    ) -> JobRecord | None:
        return await self._one(
            f"{SETTLE} RETURNING {COLUMNS}", *settle_values(lease, transition, now, expired_by)
        )

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        return await self._all(f"SELECT {COLUMNS} FROM jobs {EXPIRED}", now, limit)

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
            f"UPDATE jobs SET state = 'cancelled', fencing_token = {NEXT_TOKEN},"
            " finished_at = ?, lease_expires_at = NULL"
            " WHERE id = ? AND state IN ('queued', 'leased') AND fencing_token = ?"
            f" RETURNING {COLUMNS}",
            now,
            job_id,
            before.fencing_token,
        )
        return before if after is not None else await self.cancel(job_id, now)

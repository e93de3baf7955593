"""The SQL every store shares, written once with ``?`` placeholders, and the row mapping.

A dialect (sqlite.py, postgres.py) supplies only what truly differs: how to connect, run a
statement and open a transaction (PostgreSQL numbers the placeholders), its random function
for fencing tokens, ``SKIP LOCKED`` for claims, and its migrations. Every change of more than
one statement runs in one transaction.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import fields
from typing import Any, ClassVar, Protocol

from framefleet.coordinator.store.base import (
    BatchRecord,
    Done,
    JobRecord,
    JobState,
    Lease,
    NewBatch,
    NewJob,
    Transition,
)
from framefleet.coordinator.store.migrations import VERSION_TABLE, Migration, migrations

# Every store reads a JobRecord from these columns, in its field order.
COLUMNS = ", ".join(f.name for f in fields(JobRecord))
INSERT_COLUMNS = (
    "id, state, spec, content_key, output_url, frames_total, priority, max_attempts,"
    " created_at, available_at, source_key, batch_id, row_key, fair_rank, frames_done,"
    " output_bytes, finished_at, cache_hit, trace_context, tenant, request_id, parent_id,"
    " chunk_index, first_frame, end_frame, chunks"
)
INSERT = (
    f"INSERT INTO jobs ({INSERT_COLUMNS})"
    f" VALUES ({', '.join('?' * (INSERT_COLUMNS.count(',') + 1))})"
)
UNFINISHED = "state IN ('queued', 'leased')"
# Jobs as clients submitted them: not the chunks a split job runs as.
SUBMITTED = "parent_id IS NULL"
# Rows per statement for lists of values: well under both databases' parameter limits.
CHUNK = 200


# available_at of batch rows still arriving: no claim takes them until open_batch.
HIDDEN = 1e18


def insert_values(
    job: NewJob, cached_bytes: int | None = None, hidden: bool = False
) -> tuple[Any, ...]:
    """INSERT values: queued, or already succeeded (a cache hit) when cached_bytes is given,
    or held (leased to nobody) when it is a split job."""
    cached = cached_bytes is not None
    available_at = HIDDEN if hidden else job.created_at
    state = "succeeded" if cached else "leased" if job.chunks else "queued"
    return (
        job.id, state, job.spec, job.content_key, job.output_url,
        job.frames_total, job.priority, job.max_attempts, job.created_at, available_at,
        job.source_key, job.batch_id, job.row_key, job.fair_rank,
        job.frames_total if cached else 0, cached_bytes or 0, job.created_at if cached else None,
        cached, job.trace_context, job.tenant, job.request_id, job.parent_id, job.chunk_index,
        job.first_frame, job.end_frame, job.chunks,
    )  # fmt: skip


_CACHE_HIT = [f.name for f in fields(JobRecord)].index("cache_hit")


def record_from_row(row: Sequence[Any]) -> JobRecord:
    """A JobRecord from a row of COLUMNS (SQLite gives cache_hit as 0/1)."""
    values = list(row)
    values[1] = JobState(values[1])
    values[_CACHE_HIT] = bool(values[_CACHE_HIT])
    return JobRecord(*values)


def typed_values(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> tuple[str, list[Any]]:
    """``VALUES (CAST(? AS T1), ...), ...`` for a list of rows, with its parameters. The casts
    give PostgreSQL the types; to SQLite they are harmless. Columns are column1, column2, ..."""
    row = "(" + ", ".join(f"CAST(? AS {t})" for t in types) + ")"
    return "VALUES " + ", ".join([row] * len(rows)), [v for r in rows for v in r]


# A split job's frames done: its chunks' sum (a statement's start, for UPDATE jobs).
SUM_FRAMES = (
    "UPDATE jobs SET frames_done ="
    " (SELECT COALESCE(SUM(c.frames_done), 0) FROM jobs AS c WHERE c.parent_id = jobs.id)"
)


def chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[start : start + CHUNK] for start in range(0, len(items), CHUNK)]


# A result row: a tuple (SQLite) or an asyncpg Record, both indexed by position.
Row = Any


class Executor(Protocol):
    """Runs one statement: on its own, or inside a transaction."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Runs a statement; returns how many rows it changed."""
        ...

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...


INSERT_BATCH = (
    "INSERT INTO batches (id, name, created_at, tenant, request_id) VALUES (?, ?, ?, ?, ?)"
)


def batch_values(batch: NewBatch) -> tuple[object, ...]:
    return (batch.id, batch.name, batch.created_at, batch.tenant, batch.request_id)


class SqlStore:
    """Every area of ``areas.JobStore``, in SQL both databases run."""

    # Names the folder of migrations (framefleet/coordinator/store/migrations/<dialect>).
    dialect: ClassVar[str]
    # One row, true when the schema_version table exists.
    has_version_table: ClassVar[str]

    # An expression of 32 random bits (the low bits of a fencing token).
    random32: ClassVar[str]
    # Appended to the claim's SELECT: PostgreSQL skips rows another claim has locked.
    skip_locked: ClassVar[str] = ""
    # Appended to a SELECT that a transaction goes on to update.
    for_update: ClassVar[str] = ""

    def __init__(self, executor: Executor, claims: Executor | None = None) -> None:
        self._db = executor
        # Where claims run: a connection kept for them, where the store has several.
        self._claims = claims or executor

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    # --- the schema ----------------------------------------------------------------------

    async def schema_version(self) -> int:
        """The last migration applied (0: none, an empty database)."""
        if not (await self._db.fetch(self.has_version_table))[0][0]:
            return 0
        rows = await self._db.fetch("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(rows[0][0])

    async def migrate(self) -> list[Migration]:
        """Applies the migrations the store lacks, in one transaction; returns them."""
        applied = []
        async with self.transaction() as db:
            await self._lock_schema(db)
            await db.execute(VERSION_TABLE)
            rows = await db.fetch("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            for migration in migrations(self.dialect):
                if migration.version > rows[0][0]:
                    await self._run_script(db, migration.sql)
                    await db.execute(
                        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                        migration.version,
                        migration.name,
                        time.time(),
                    )
                    applied.append(migration)
        return applied

    async def _lock_schema(self, db: Executor) -> None:
        """Keeps two migrations apart (SQLite's write transaction does already)."""

    async def _run_script(self, db: Executor, sql: str) -> None:
        raise NotImplementedError

    def _next_token(self) -> str:
        """A new fencing token from the current one: the grant count in the high 32 bits plus
        one, and 32 random bits below, so tokens grow but cannot be guessed."""
        return f"(fencing_token / {2**32} + 1) * {2**32} + {self.random32}"

    async def _one(self, sql: str, *args: Any) -> JobRecord | None:
        rows = await self._db.fetch(sql, *args)
        return record_from_row(rows[0]) if rows else None

    async def _all(self, sql: str, *args: Any) -> list[JobRecord]:
        return [record_from_row(row) for row in await self._db.fetch(sql, *args)]

    # --- jobs and sources ------------------------------------------------------------------

    async def insert(self, job: NewJob) -> JobRecord:
        record = await self._one(f"{INSERT} RETURNING {COLUMNS}", *insert_values(job))
        assert record is not None
        return record

    async def insert_cached(self, job: NewJob, output_bytes: int) -> JobRecord:
        record = await self._one(f"{INSERT} RETURNING {COLUMNS}", *insert_values(job, output_bytes))
        assert record is not None
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._one(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", job_id)

    # --- split jobs ------------------------------------------------------------------------

    async def insert_split(self, parent: NewJob, chunks: list[NewJob]) -> JobRecord:
        async with self.transaction() as db:
            rows = await db.fetch(f"{INSERT} RETURNING {COLUMNS}", *insert_values(parent))
            await db.executemany(INSERT, [insert_values(chunk) for chunk in chunks])
        return record_from_row(rows[0])

    async def chunks_of(self, parent_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE parent_id = ? ORDER BY chunk_index", parent_id
        )

    async def end_split(
        self,
        parent_id: str,
        state: JobState,
        now: float,
        error_class: str | None = None,
        error_message: str | None = None,
    ) -> JobRecord | None:
        async with self.transaction() as db:
            # Chunks before their parent: the order complete() takes its row locks in.
            await db.execute(
                f"UPDATE jobs SET state = 'cancelled', fencing_token = {self._next_token()},"
                f" finished_at = ?, lease_expires_at = NULL WHERE parent_id = ? AND {UNFINISHED}",
                now,
                parent_id,
            )
            rows = await db.fetch(
                f"UPDATE jobs SET state = ?, fencing_token = {self._next_token()},"
                " finished_at = ?, lease_expires_at = NULL, error_class = COALESCE(?, error_class),"
                " error_message = COALESCE(?, error_message)"
                f" WHERE id = ? AND {UNFINISHED} RETURNING {COLUMNS}",
                state.value,
                now,
                error_class,
                error_message,
                parent_id,
            )
        return record_from_row(rows[0]) if rows else None

    async def in_flight(self, output_url: str) -> bool:
        rows = await self._db.fetch(
            f"SELECT 1 FROM jobs WHERE output_url = ? AND {UNFINISHED} LIMIT 1", output_url
        )
        return bool(rows)

    async def count_by_state(self) -> dict[JobState, int]:
        rows = await self._db.fetch(
            f"SELECT state, COUNT(*) FROM jobs WHERE {SUBMITTED} GROUP BY state"
        )
        return {JobState(state): count for state, count in rows}

    async def queue_depth(self) -> int:
        rows = await self._db.fetch("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
        return int(rows[0][0])

    async def list_jobs(
        self, states: list[JobState], limit: int, tenant: str | None = None, before: str = ""
    ) -> list[JobRecord]:
        where, args = [SUBMITTED], []
        if before:
            where.append("seq < (SELECT seq FROM jobs WHERE id = ?)")
            args.append(before)
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += [s.value for s in states]
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
            *args,
            limit,
        )

    async def find_request(self, tenant: str, request_id: str) -> JobRecord | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM jobs WHERE tenant = ? AND request_id = ? AND batch_id IS NULL",
            tenant,
            request_id,
        )

    async def find_batch_request(self, tenant: str, request_id: str) -> str | None:
        rows = await self._db.fetch(
            "SELECT id FROM batches WHERE tenant = ? AND request_id = ?", tenant, request_id
        )
        return str(rows[0][0]) if rows else None

    async def count_unfinished(self, tenant: str) -> int:
        rows = await self._db.fetch(
            f"SELECT COUNT(*) FROM jobs WHERE tenant = ? AND {UNFINISHED} AND {SUBMITTED}", tenant
        )
        return int(rows[0][0])

    async def put_source(self, key: str, source: bytes) -> None:
        await self._db.execute(
            "INSERT INTO sources (key, source) VALUES (?, ?) ON CONFLICT DO NOTHING", key, source
        )

    async def get_source(self, key: str) -> bytes | None:
        rows = await self._db.fetch("SELECT source FROM sources WHERE key = ?", key)
        return bytes(rows[0][0]) if rows else None

    # --- the result cache ------------------------------------------------------------------

    async def find_output(self, output_url: str) -> JobRecord | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM jobs WHERE output_url = ? AND state = 'succeeded' LIMIT 1",
            output_url,
        )

    async def find_outputs(self, output_urls: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in chunks(output_urls):
            rows = await self._db.fetch(
                "SELECT output_url, MAX(output_bytes) FROM jobs WHERE state = 'succeeded'"
                f" AND output_url IN ({', '.join('?' * len(chunk))}) GROUP BY output_url",
                *chunk,
            )
            found.update({url: size for url, size in rows})
        return found

    async def complete_waiting(self, outputs: dict[str, int], now: float) -> list[JobRecord]:
        records: list[JobRecord] = []
        async with self.transaction() as db:
            for chunk in chunks(list(outputs.items())):
                values, args = typed_values(chunk, ("TEXT", "BIGINT"))
                rows = await db.fetch(
                    "UPDATE jobs SET state = 'succeeded', output_bytes = d.column2,"
                    " frames_done = frames_total, finished_at = ?, cache_hit = TRUE,"
                    " error_class = NULL, error_message = NULL"
                    f" FROM ({values}) AS d WHERE jobs.state = 'queued'"
                    f" AND jobs.output_url = d.column1 RETURNING {COLUMNS}",
                    now,
                    *args,
                )
                records += [record_from_row(row) for row in rows]
        return records

    # --- batches ---------------------------------------------------------------------------

    async def insert_batch(
        self, batch: NewBatch, jobs: list[NewJob], cached: dict[str, int]
    ) -> None:
        async with self.transaction() as db:
            await db.execute(INSERT_BATCH, *batch_values(batch))
            await db.executemany(INSERT, [insert_values(j, cached.get(j.id)) for j in jobs])

    async def insert_rows(self, jobs: list[NewJob], cached: dict[str, int]) -> None:
        async with self.transaction() as db:
            await db.executemany(
                INSERT, [insert_values(j, cached.get(j.id), hidden=True) for j in jobs]
            )

    async def open_batch(self, batch: NewBatch) -> None:
        async with self.transaction() as db:
            await db.execute(INSERT_BATCH, *batch_values(batch))
            await db.execute(
                "UPDATE jobs SET available_at = created_at WHERE batch_id = ? AND available_at = ?",
                batch.id,
                HIDDEN,
            )

    async def discard_rows(self, batch_id: str) -> None:
        await self._db.execute(
            "DELETE FROM jobs WHERE batch_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM batches WHERE id = ?)",
            batch_id,
            batch_id,
        )

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        heads = await self._db.fetch(
            "SELECT id, name, created_at, finished_at, digest, manifest_url, tenant FROM batches"
            " WHERE id = ?",
            batch_id,
        )
        if not heads:
            return None
        head = heads[0]
        groups = await self._db.fetch(
            "SELECT state, COUNT(*), SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END),"
            " SUM(frames_done), SUM(frames_total) FROM jobs WHERE batch_id = ? GROUP BY state",
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
            tenant=head[6],
        )

    async def recent_batches(self, limit: int, tenant: str | None = None) -> list[str]:
        scope, args = ("WHERE tenant = ?", [tenant]) if tenant is not None else ("", [])
        rows = await self._db.fetch(
            f"SELECT id FROM batches {scope} ORDER BY created_at DESC, id LIMIT ?", *args, limit
        )
        return [row[0] for row in rows]

    async def batch_jobs(self, batch_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE batch_id = ? ORDER BY seq", batch_id
        )

    async def ended_batches(self) -> list[str]:
        rows = await self._db.fetch(
            "SELECT id FROM batches AS b WHERE finished_at IS NULL AND NOT EXISTS"
            f" (SELECT 1 FROM jobs WHERE batch_id = b.id AND {UNFINISHED})"
        )
        return [row[0] for row in rows]

    async def finish_batch(
        self, batch_id: str, finished_at: float, digest: str, manifest_url: str
    ) -> bool:
        changed = await self._db.execute(
            "UPDATE batches SET finished_at = ?, digest = ?, manifest_url = ?"
            " WHERE id = ? AND finished_at IS NULL",
            finished_at,
            digest,
            manifest_url,
            batch_id,
        )
        return changed == 1

    async def retry_failed_rows(self, batch_id: str, now: float, limit: int) -> int:
        async with self.transaction() as db:
            count = await db.execute(
                "UPDATE jobs SET state = 'queued', attempt = 0, interruptions = 0,"
                " available_at = ?, lease_owner = NULL, lease_expires_at = NULL, frames_done = 0,"
                " error_class = NULL, error_message = NULL, started_at = NULL,"
                " finished_at = NULL, upload_id = NULL WHERE seq IN (SELECT seq FROM jobs"
                "   WHERE batch_id = ? AND state = 'failed' ORDER BY seq LIMIT ?)",
                now,
                batch_id,
                limit,
            )
            if count:  # running again: a new digest and manifest when these rows end
                await db.execute(
                    "UPDATE batches SET finished_at = NULL, digest = NULL, manifest_url = NULL"
                    " WHERE id = ?",
                    batch_id,
                )
        return count

    async def cancel_batch(
        self, batch_id: str, now: float, limit: int
    ) -> tuple[list[str], list[JobRecord]]:
        async with self.transaction() as db:
            # Locks the step's rows (PostgreSQL; SQLite's write transaction holds them all):
            # a claim skips them, so which were leased cannot change before the update.
            picked = await db.fetch(
                f"SELECT seq, state FROM jobs WHERE batch_id = ? AND {UNFINISHED}"
                f" LIMIT ?{self.for_update}",
                batch_id,
                limit,
            )
            leased = {seq for seq, state in picked if state == "leased"}
            ids: list[str] = []
            before: list[JobRecord] = []
            # No ORDER BY: the (batch_id, state) index gives any ``limit`` rows without reading
            # the rest, so each step costs its own rows, not the batch's.
            for some in chunks([seq for seq, _ in picked]):
                marks = ", ".join("?" * len(some))
                if leased.intersection(some):
                    before += [
                        record_from_row(row)
                        for row in await db.fetch(
                            f"SELECT {COLUMNS} FROM jobs WHERE seq IN ({marks})"
                            " AND state = 'leased'",
                            *some,
                        )
                    ]
                rows = await db.fetch(
                    f"UPDATE jobs SET state = 'cancelled', fencing_token = {self._next_token()},"
                    f" finished_at = ?, lease_expires_at = NULL WHERE seq IN ({marks})"
                    " RETURNING id",
                    now,
                    *some,
                )
                ids += [row[0] for row in rows]
        return ids, before

    # --- leases ----------------------------------------------------------------------------

    async def claim(self, agent_id: str, now: float, ttl: float, limit: int) -> list[JobRecord]:
        # Of identical jobs (same output) only the oldest, and none while one is leased. The
        # CTE runs once: a LIMIT ... SKIP LOCKED subquery under IN may be re-evaluated.
        rows = await self._claims.fetch(
            "WITH picked AS (SELECT seq FROM jobs AS q WHERE state = 'queued'"
            "   AND available_at <= ? AND NOT EXISTS (SELECT 1 FROM jobs AS o"
            "       WHERE o.output_url = q.output_url"
            "       AND (o.state = 'leased' OR (o.state = 'queued' AND o.seq < q.seq)))"
            f"   ORDER BY priority DESC, fair_rank, seq LIMIT ?{self.skip_locked})"
            " UPDATE jobs SET state = 'leased', lease_owner = ?,"
            f" fencing_token = {self._next_token()}, lease_expires_at = ?,"
            " attempt = attempt + 1, upload_id = NULL,"
            # An assembly keeps the start and the frames its chunks made.
            " started_at = CASE WHEN chunks > 0 THEN COALESCE(started_at, ?) ELSE ? END,"
            " frames_done = CASE WHEN chunks > 0 THEN frames_done ELSE 0 END"
            f" FROM picked WHERE jobs.seq = picked.seq RETURNING {COLUMNS}",
            now,
            limit,
            agent_id,
            now + ttl,
            now,
            now,
        )
        return [record_from_row(row) for row in rows]

    async def renew(
        self, agent_id: str, leases: list[tuple[str, int]], now: float, ttl: float
    ) -> set[str]:
        renewed: set[str] = set()
        if not leases:  # an idle agent's heartbeat: no round trips for an empty transaction
            return renewed
        parts = chunks(leases)
        # One statement is atomic on its own: a busy agent's heartbeat is one round trip.
        one = len(parts) == 1
        async with nullcontext(self._db) if one else self.transaction() as db:
            for chunk in parts:
                values, args = typed_values(chunk, ("TEXT", "BIGINT"))
                rows = await db.fetch(
                    f"UPDATE jobs SET lease_expires_at = ? FROM ({values}) AS held"
                    " WHERE jobs.state = 'leased' AND jobs.lease_owner = ?"
                    " AND jobs.id = held.column1 AND jobs.fencing_token = held.column2"
                    " RETURNING jobs.id",
                    now + ttl,
                    *args,
                    agent_id,
                )
                renewed.update(row[0] for row in rows)
        return renewed

    async def leases_of(self, agent_id: str) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE state = 'leased' AND lease_owner = ?", agent_id
        )

    async def extend_leases(self, until: float) -> int:
        return await self._db.execute(
            "UPDATE jobs SET lease_expires_at = CASE WHEN lease_expires_at < ? THEN ?"
            " ELSE lease_expires_at END WHERE state = 'leased'",
            until,
            until,
        )

    async def progress(
        self, lease: Lease, frames_done: int, upload_id: str = "", frames_total: int = 0
    ) -> bool:
        async with self.transaction() as db:
            rows = await db.fetch(
                "UPDATE jobs SET frames_done = ?, upload_id = COALESCE(NULLIF(?, ''), upload_id),"
                " frames_total = CASE WHEN frames_total = 0 THEN ? ELSE frames_total END"
                " WHERE state = 'leased' AND id = ? AND lease_owner = ? AND fencing_token = ?"
                " RETURNING parent_id",
                frames_done,
                upload_id,
                frames_total,
                lease.job_id,
                lease.owner,
                lease.token,
            )
            if rows and rows[0][0] is not None:
                await self._lock_parent(db, rows[0][0])
                await db.execute(f"{SUM_FRAMES} WHERE id = ?", rows[0][0])
        return bool(rows)

    async def _lock_parent(self, db: Executor, parent_id: str) -> None:
        """Lock a split job's row before adding up its chunks. A sum taken inside one UPDATE
        keeps that statement's snapshot even after waiting for a sibling chunk's transaction,
        so it would miss that chunk; once the lock is held, the next statement sees it."""
        await db.fetch(f"SELECT id FROM jobs WHERE id = ?{self.for_update}", parent_id)

    async def complete(self, owner: str, done: list[Done], now: float) -> list[JobRecord]:
        records: list[JobRecord] = []
        async with self.transaction() as db:
            for chunk in chunks(done):
                values, args = typed_values(
                    [(d.job_id, d.token, d.output_bytes) for d in chunk],
                    ("TEXT", "BIGINT", "BIGINT"),
                )
                rows = await db.fetch(
                    "UPDATE jobs SET state = 'succeeded',"
                    " output_bytes = d.column3, frames_done = frames_total, finished_at = ?,"
                    " lease_expires_at = NULL, error_class = NULL, error_message = NULL"
                    f" FROM ({values}) AS d WHERE jobs.state = 'leased' AND jobs.lease_owner = ?"
                    " AND jobs.id = d.column1 AND jobs.fencing_token = d.column2"
                    f" RETURNING {COLUMNS}",
                    now,
                    *args,
                    owner,
                )
                records += [record_from_row(row) for row in rows]
            parents = Counter(r.parent_id for r in records if r.parent_id is not None)
            for parent_id, succeeded in sorted(parents.items()):
                await self._lock_parent(db, parent_id)
                await db.execute(
                    f"{SUM_FRAMES}, chunks_done = chunks_done + ?, available_at = ?,"
                    " state = CASE WHEN chunks_done + ? >= chunks THEN 'queued' ELSE state END"
                    " WHERE id = ? AND state = 'leased' AND lease_owner IS NULL",
                    succeeded,
                    now,
                    succeeded,
                    parent_id,
                )
        return records

    async def settle(
        self, lease: Lease, transition: Transition, now: float, expired_by: float = math.inf
    ) -> JobRecord | None:
        return await self._one(
            "UPDATE jobs SET state = ?, available_at = ?, finished_at = ?,"
            " error_class = COALESCE(?, error_class), error_message = COALESCE(?, error_message),"
            " attempt = attempt - ?, interruptions = interruptions + ?, lease_expires_at = NULL"
            " WHERE state = 'leased' AND id = ? AND lease_owner = ? AND fencing_token = ?"
            f" AND lease_expires_at < ? RETURNING {COLUMNS}",
            transition.state.value,
            transition.available_at,
            now if transition.state.final else None,
            transition.error_class,
            transition.error_message,
            0 if transition.spends_attempt else 1,
            int(transition.interruption),
            lease.job_id,
            lease.owner,
            lease.token,
            expired_by,
        )

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        return await self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE state = 'leased' AND lease_expires_at < ?"
            " ORDER BY lease_expires_at LIMIT ?",
            now,
            limit,
        )

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        async with self.transaction() as db:
            rows = await db.fetch(
                f"SELECT {COLUMNS} FROM jobs WHERE id = ?{self.for_update}", job_id
            )
            if not rows:
                return None
            before = record_from_row(rows[0])
            if not before.state.final:
                await db.execute(
                    f"UPDATE jobs SET state = 'cancelled', fencing_token = {self._next_token()},"
                    " finished_at = ?, lease_expires_at = NULL WHERE id = ?",
                    now,
                    job_id,
                )
            return before

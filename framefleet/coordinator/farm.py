"""The coordinator's job logic: every state change goes through here, to the store and out
to watchers and agents."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Collection, Coroutine, Iterable
from dataclasses import replace
from typing import Any

from framefleet import outputs
from framefleet.coordinator import batch_finisher, metrics
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.convert import job_message
from framefleet.coordinator.events import JobEvents
from framefleet.coordinator.job_trace import job_span
from framefleet.coordinator.lease_book import LeaseBook
from framefleet.coordinator.named_outputs import name_outputs
from framefleet.coordinator.queries import Queries
from framefleet.coordinator.retry_policy import RetryPolicy
from framefleet.coordinator.sessions import Session, Sessions
from framefleet.coordinator.splitting import delete_chunks, plan, split
from framefleet.coordinator.store import (
    BatchRecord,
    Done,
    JobRecord,
    JobState,
    JobStore,
    Lease,
    NewBatch,
    NewJob,
    Transition,
)
from framefleet.coordinator.webhooks import Webhooks, webhook_url
from framefleet.core import jobspec, naming, sources, telemetry
from framefleet.core.errors import ErrorClass, FramefleetError, from_wire
from framefleet.outputs import abort_upload
from framefleet.outputs.roots import normalised, within
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.coordinator")

SOURCE_CACHE = 64
# What an agent is told when it reports on a lease it no longer holds.
STALE = "stale fencing token: the lease is no longer yours"


class QuotaExceeded(FramefleetError):
    """A submit that would pass the tenant's cap on unfinished jobs (RESOURCE_EXHAUSTED)."""


# Output checks (stat, S3 HeadObject) at once when a submit finds recorded results.
OUTPUT_CHECKS = 32
# Reconnecting agents' lease reconciliations at once: half of PostgreSQL's pool (8), so that
# hundreds of agents reconnecting together (a coordinator lost) do not queue the dispatcher's
# claims behind theirs.
RECONCILES = 4


class Farm:
    def __init__(
        self, store: JobStore, config: CoordinatorConfig, policy: RetryPolicy | None = None
    ) -> None:
        # Private: every change goes through the operations below (tests/test_farm_door.py).
        self._store = store
        self.config = config
        self.policy = policy or RetryPolicy.from_config(config)
        self.clock = config.clock
        self.events = JobEvents()
        self._sessions = Sessions()
        self._leases = LeaseBook(self.clock)
        self._reconciles = asyncio.Semaphore(RECONCILES)
        # Recently used sources by key, so assignments need not read them back from the store.
        self._sources: dict[str, pb.JobSpec] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Completion webhooks, once the coordinator starts their workers (server.py).
        self.webhooks: Webhooks | None = None
        # Jobs and batches as a client may see them (gRPC, the console).
        self.queries = Queries(store, store)

    def publish(self, record: JobRecord, fps: float = 0.0) -> None:
        if self.events.watched(record.id):
            self.events.publish(job_message(record, with_spec=False), fps)
        if record.state.final:
            if record.parent_id is None:  # a job's outcome, not its chunks'
                metrics.OUTCOMES.labels(record.state.value).inc()
                if self.webhooks is not None:
                    self.webhooks.notify(record)
            ran = (record.finished_at or 0.0) - (record.started_at or 0.0)
            # One line per job outcome, with the ids that lead to its trace.
            log.info(
                "job %s",
                record.state.value,
                extra={
                    "job_id": record.id,
                    "state": record.state.value,
                    "content_key": record.content_key,
                    "batch_id": record.batch_id,
                    "row_key": record.row_key,
                    "attempt": record.attempt,
                    "agent_id": record.lease_owner,
                    "error_class": record.error_class,
                    "output_url": record.output_url,
                    "output_bytes": record.output_bytes,
                    "frames": record.frames_total,
                    "seconds": round(ran, 3) if record.started_at and record.finished_at else None,
                    "cache_hit": record.cache_hit,
                    **telemetry.trace_ids(telemetry.from_text(record.trace_context)),
                },
            )

    # --- clients ---------------------------------------------------------------------------

    def destination(self, spec: pb.JobSpec) -> str:
        destination = spec.destination or self.config.default_destination
        if not destination:
            raise FramefleetError(ErrorClass.INVALID_JOB, "the job names no destination")
        roots = self.config.allowed_outputs or [self.config.default_destination]
        if not within(normalised(destination), roots):
            raise FramefleetError(
                ErrorClass.INVALID_JOB,
                # Which outputs are allowed is the operator's configuration: not named here.
                f"destination {destination!r} is outside this coordinator's allowed outputs"
                " (its operator's --allow-output)",
            )
        if not outputs.supports(jobspec.destination_url(destination)):
            known = ", ".join(sorted(outputs.schemes()))
            raise FramefleetError(
                ErrorClass.INVALID_JOB, f"no output sink for {destination!r} (schemes: {known})"
            )
        return destination

    async def keep_source(self, spec: pb.JobSpec) -> str:
        """Stores the spec's source once; returns its key."""
        key = jobspec.source_key(spec)
        if key not in self._sources:
            source = sources.source_only(spec)
            await self._store.put_source(key, source.SerializeToString())
            self._remember_source(key, source)
        return key

    def _remember_source(self, key: str, source: pb.JobSpec) -> None:
        self._sources[key] = source
        while len(self._sources) > SOURCE_CACHE:
            del self._sources[next(iter(self._sources))]

    async def source(self, key: str) -> pb.JobSpec:
        source = self._sources.get(key)
        if source is None:
            data = await self._store.get_source(key)
            source = pb.JobSpec.FromString(data or b"")
            self._remember_source(key, source)
        return source

    def new_job(
        self,
        spec: pb.JobSpec,
        output: jobspec.Output,
        source_key: str,
        destination: str,
        batch_name: str = "",
        **fields: Any,
    ) -> NewJob:
        """A job row for a validated spec whose source is stored under source_key; ``fields``
        sets the rest (batch, row key, rank, trace context)."""
        key = jobspec.content_key(spec, source_key, output)
        rest = sources.without_source(spec)
        if rest.output_name:  # stored expanded: the name is this job's from now on
            values = {
                **jobspec.params_dict(spec.params),
                "row_key": fields.get("row_key") or "",
                "batch": batch_name or fields.get("batch_id") or "",
                "batch_id": fields.get("batch_id") or "",
                "key": key,
            }
            suffix = f".{jobspec.SUFFIXES[output.format]}"
            rest.output_name = naming.expand(rest.output_name, values, suffix)
        fields.setdefault("trace_context", telemetry.to_text(telemetry.inject()))
        return NewJob(
            id=uuid.uuid4().hex,
            spec=rest.SerializeToString(),
            content_key=key,
            output_url=jobspec.output_url(destination, key, output.format),
            frames_total=output.frames,
            priority=spec.priority,
            max_attempts=spec.max_attempts or jobspec.DEFAULT_MAX_ATTEMPTS,
            created_at=self.clock(),
            source_key=source_key,
            **fields,
        )

    async def submit(self, spec: pb.JobSpec, tenant: str = "", request_id: str = "") -> JobRecord:
        """A new job, or the one this tenant's request id already made (a retried submit)."""
        if request_id and (first := await self._store.find_request(tenant, request_id)):
            return first
        output = jobspec.validate(spec)
        destination = self.destination(spec)
        webhook_url(spec, self.config.allowed_webhooks)
        await self.check_quota(tenant, 1)
        source = await self.keep_source(spec)
        job = self.new_job(spec, output, source, destination, tenant=tenant, request_id=request_id)
        # Result cache: the same content at the same destination is already there.
        done = None if spec.force else await self._store.find_output(job.output_url)
        if done is not None and await self.intact({job.output_url: done.output_bytes}):
            if not job.frames_total:  # a composition's own length: the render that made it knows
                job = replace(job, frames_total=done.frames_total)
            record = await self._store.insert_cached(job, done.output_bytes)
            metrics.CACHE_HITS.inc()
            await name_outputs([record])
            self.publish(record)
            return record
        ranges = await plan(spec, output, self.spare_slots)
        try:
            # An identical job in flight makes this one wait for its output: not split.
            if len(ranges) > 1 and not await self._store.in_flight(job.output_url):
                record = await self._store.insert_split(*split(job, ranges))
            else:
                record = await self._store.insert(job)
        except Exception:
            # The same request id, inserted meanwhile by a concurrent retry (unique index).
            if request_id and (first := await self._store.find_request(tenant, request_id)):
                return first
            raise
        self._leases.wake()
        return record

    async def spare_slots(self) -> int:
        """Slots of the connected agents that wait for work now, less the work already queued
        for them: a burst of submits splits the first jobs, not every one over every slot."""
        free = sum(self._leases.free_slots(session) for session in self._sessions.all())
        return free - await self._store.queue_depth() if free > 1 else free

    async def check_quota(self, tenant: str, adding: int) -> None:
        """Refuses work that would put a tenant over --max-queued-per-tenant unfinished jobs."""
        cap = self.config.max_unfinished_per_tenant
        if cap and (unfinished := await self._store.count_unfinished(tenant)) + adding > cap:
            raise QuotaExceeded(
                ErrorClass.INVALID_JOB,
                f"tenant {tenant!r} has {unfinished} queued or running jobs; {adding} more would"
                f" pass its limit of {cap} (--max-queued-per-tenant)",
            )

    async def intact(self, recorded: dict[str, int]) -> dict[str, int]:
        """Of the outputs the store says exist (URL -> size), the ones that really do, with
        that size: a cache hit is served only then. A deleted object, or a record some agent
        got wrong, renders again instead."""
        checks = asyncio.Semaphore(OUTPUT_CHECKS)

        async def check(url: str, size: int) -> bool:
            async with checks:
                try:
                    return await outputs.size(url) == size
                except FramefleetError:
                    return False  # cannot look: render rather than serve what may be missing

        urls = list(recorded)
        found = await asyncio.gather(*(check(url, recorded[url]) for url in urls))
        return {url: recorded[url] for url, ok in zip(urls, found, strict=True) if ok}

    async def cancel(self, job_id: str) -> JobRecord | None:
        record = await self._store.get(job_id)
        if record is not None and record.parent_id is not None:
            return await self.cancel(record.parent_id)  # a chunk is cancelled as its job
        if record is not None and record.chunks:
            return await self.end_split(record, JobState.CANCELLED, "cancelled by a client")
        before = await self._store.cancel(job_id, self.clock())
        if before is None or before.state.final:
            return before
        self.fence(before, "cancelled by a client")
        self.abandon_upload(before)  # the agent aborts too, if it is alive
        after = await self._store.get(job_id)
        assert after is not None
        self.publish(after)
        return after

    async def end_split(
        self,
        parent: JobRecord,
        state: JobState,
        reason: str,
        error_class: str | None = None,
    ) -> JobRecord | None:
        """Ends a split job (cancelled, or failed with a chunk's error) with its unfinished
        chunks, fences their agents and removes the chunk objects. Returns the job as it is
        now (None: no such job)."""
        family = [parent, *await self._store.chunks_of(parent.id)]
        message = reason if error_class else None
        ended = await self._store.end_split(parent.id, state, self.clock(), error_class, message)
        if ended is None:
            return await self._store.get(parent.id)  # it had ended already
        for before in family:
            self.fence(before, reason)
            self.abandon_upload(before)  # the agent aborts too, if it is alive
        self._in_background(delete_chunks(ended))
        self.publish(ended)
        self._leases.wake()
        return ended

    def fence(self, before: JobRecord, reason: str) -> None:
        """Tells the agent holding a lease that was just taken away to drop the job."""
        session = self._sessions.get(before.lease_owner)
        if session is not None and before.state == JobState.LEASED:
            self._leases.cancel(session, before.id, before.fencing_token, reason)

    # --- agents ----------------------------------------------------------------------------

    async def claim(self, agent_id: str, limit: int) -> list[JobRecord]:
        now = self.clock()
        records = await self._store.claim(agent_id, now, self.config.lease_ttl, limit)
        for record in records:
            job_span(record, "queue_wait", record.available_at, now)
            self.publish(record)
        return records

    async def renew(self, agent_id: str, leases: list[tuple[str, int]]) -> set[str]:
        return await self._store.renew(agent_id, leases, self.clock(), self.config.lease_ttl)

    async def progress(self, agent_id: str, report: pb.Progress) -> bool:
        lease = report.lease
        held = Lease(lease.job_id, agent_id, lease.fencing_token)
        total = report.frames_total
        if not await self._store.progress(held, report.frames_done, report.upload_id, total):
            return False
        # A chunk's progress is its job's: the lease book knows the job of a chunk leased on
        # this stream (after a restart, the watch's poll still shows it).
        session = self._sessions.get(agent_id)
        parent_id = None if session is None else self._leases.parent_of(session, lease.job_id)
        if parent_id is not None and self.events.watched(parent_id):
            if parent := await self._store.get(parent_id):
                self.publish(parent)  # frames summed over its chunks; no one chunk's rate
        elif self.events.watched(lease.job_id):
            record = await self._store.get(lease.job_id)
            if record is not None:
                self.publish(record, report.fps)
        return True

    def abandon_upload(self, record: JobRecord) -> None:
        """The lease was lost with its agent (killed, or restarted without it): abort the
        attempt's S3 multipart upload, which nobody will complete or abort now."""
        if record.upload_id:
            self._in_background(self._abort_upload(record.output_url, record.upload_id))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abort_upload(self, url: str, upload_id: str) -> None:
        try:
            await abort_upload(url, upload_id)
        except Exception:
            log.exception("aborting an orphaned upload failed", extra={"url": url})

    async def complete(self, agent_id: str, reports: list[pb.Completed]) -> list[JobRecord]:
        """Records agent_id's successes (one store call for all); returns the accepted ones."""
        now = self.clock()
        done = [Done(r.lease.job_id, r.lease.fencing_token, r.output_bytes) for r in reports]
        records = await self._store.complete(agent_id, done, now)
        jobs = [r for r in records if r.parent_id is None]
        # Named before anyone hears it succeeded: a client that sees "succeeded" finds the file.
        await name_outputs(jobs)
        if refused := {r.lease.job_id for r in reports} - {r.id for r in records}:
            self._in_background(self._remove_late_chunks(refused))
        by_job = {r.lease.job_id: r for r in reports}
        for record in records:
            report = by_job[record.id]
            if report.render_seconds > 0 and report.frames:  # an assembly draws no frames
                metrics.RENDER_SECONDS.observe(report.render_seconds)
                metrics.RENDER_FPS.observe(report.frames / report.render_seconds)
            job_span(record, "attempt", record.started_at, now, outcome="succeeded")
            self.publish(record)
        for parent_id in {r.parent_id for r in records if r.parent_id is not None}:
            if parent := await self._store.get(parent_id):  # counted, or queued for assembly
                self.publish(parent)
        if jobs:
            # Identical jobs that waited for these renders share their outputs.
            outputs = {r.output_url: r.output_bytes for r in jobs}
            waiters = await self._store.complete_waiting(outputs, now)
            await name_outputs(waiters)
            for waiting in waiters:
                metrics.CACHE_HITS.inc()
                self.publish(waiting)
        return records

    async def _remove_late_chunks(self, job_ids: set[str]) -> None:
        """A chunk finished by an agent that had been told to stop (its job failed or was
        cancelled meanwhile) wrote an object nobody will join: remove it."""
        for job_id in job_ids:
            record = await self._store.get(job_id)
            if record is None or record.parent_id is None:
                continue
            parent = await self._store.get(record.parent_id)
            if parent is not None and parent.state.final:
                await delete_chunks(parent)

    async def _held(self, agent_id: str, lease: pb.LeaseRef) -> JobRecord | None:
        """The job if agent_id holds its lease with that token (the store checks again as it
        writes; this read gives the policy the attempt counts it decides on)."""
        record = await self._store.get(lease.job_id)
        if (
            record is None
            or record.state != JobState.LEASED
            or record.lease_owner != agent_id
            or record.fencing_token != lease.fencing_token
        ):
            return None
        return record

    async def _settle(
        self,
        record: JobRecord,
        transition: Transition,
        outcome: str = "",
        expired_by: float = math.inf,
    ) -> JobRecord | None:
        """Applies the policy's decision to a lease that is still current."""
        now = self.clock()
        assert record.lease_owner is not None
        lease = Lease(record.id, record.lease_owner, record.fencing_token)
        settled = await self._store.settle(lease, transition, now, expired_by)
        if settled is None:
            return None
        if transition.error_class is not None:
            metrics.FAILURES.labels(transition.error_class).inc()
        job_span(
            settled,
            "attempt",
            settled.started_at,
            now,
            transition.error_class,
            outcome=outcome or settled.state.value,
            error_message=transition.error_message or "",
        )
        self.publish(settled)
        self._leases.wake()  # its slot may be free, the job claimable again
        if settled.state == JobState.QUEUED:  # and again when its backoff ends
            self._leases.wake_at(settled.available_at)
        if settled.state == JobState.FAILED:
            await self._failed_for_good(settled)
        return settled

    async def _failed_for_good(self, record: JobRecord) -> None:
        """A chunk that failed for good fails its job (its error); a failed assembly leaves
        chunk objects nobody will join."""
        if record.parent_id is not None:
            parent = await self._store.get(record.parent_id)
            if parent is not None:
                reason = f"chunk {record.chunk_index}: {record.error_message or 'failed'}"
                error_class = record.error_class or ErrorClass.INTERNAL
                await self.end_split(parent, JobState.FAILED, reason, error_class)
        elif record.chunks:
            self._in_background(delete_chunks(record))

    async def fail(self, agent_id: str, msg: pb.Failed) -> JobRecord | None:
        """The agent's failure report; the policy decides on retry by its error class."""
        record = await self._held(agent_id, msg.lease)
        if record is None:
            return None
        error_class = from_wire(msg.error, msg.error_class) or ErrorClass.INTERNAL
        transition = self.policy.failed(record, error_class, msg.message, self.clock())
        return await self._settle(record, transition)

    async def agent_lost(self, record: JobRecord) -> JobRecord | None:
        """The holder reconnected without this lease (it restarted)."""
        settled = await self._settle(record, self.policy.agent_lost(record, self.clock()))
        if settled is not None:
            self.abandon_upload(record)
        return settled

    async def release(
        self, agent_id: str, job_id: str, token: int, interrupted: bool = False
    ) -> JobRecord | None:
        """A lease given back unfinished: an interruption (a draining agent), or an
        assignment that never arrived."""
        record = await self._held(agent_id, pb.LeaseRef(job_id=job_id, fencing_token=token))
        if record is None:
            return None
        now = self.clock()
        if interrupted:
            return await self._settle(record, self.policy.interrupted(record, now))
        return await self._settle(record, self.policy.handed_back(record, now), "released")

    async def expire_leases(self, limit: int = 1000) -> list[JobRecord]:
        """Settles leases past their expiry (up to ``limit``) as the policy says."""
        now = self.clock()
        expired: list[JobRecord] = []
        for record in await self._store.expired(now, limit):
            settled = await self._settle(record, self.policy.expired(record, now), expired_by=now)
            if settled is None:
                continue  # renewed or settled meanwhile
            log.warning("lease expired", extra={"job_id": record.id, "attempt": record.attempt})
            metrics.LEASE_EXPIRIES.inc()
            self.abandon_upload(record)
            expired.append(settled)
        return expired

    async def check_store(self) -> None:
        """Raises unless the store answers (the readiness probe)."""
        await self._store.get("")

    async def sample_store(self) -> None:
        """The store's gauges (jobs by state, queue depth) for /metrics."""
        await metrics.sample_store(self._store)

    async def finish_batches(self) -> list[str]:
        """Finishes the batches whose rows have all ended (digest, manifest): batch_finisher."""
        return await batch_finisher.finish_once(self._store, self.clock)

    # --- batches (batches.py) --------------------------------------------------------------

    async def batch(self, batch_id: str) -> BatchRecord | None:
        """The batch as it is now, whoever owns it (clients read through ``queries``)."""
        return await self._store.get_batch(batch_id)

    async def batch_request(self, tenant: str, request_id: str) -> BatchRecord | None:
        """The batch this tenant's request id made already (a retried submit), if any."""
        first = await self._store.find_batch_request(tenant, request_id)
        return None if first is None else await self._store.get_batch(first)

    async def add_rows(self, rows: list[NewJob], force: bool) -> None:
        """Stores rows of a batch still arriving, hidden until it opens; a row whose output
        exists (and is intact) is stored as a cache hit, unless ``force``."""
        cached: dict[str, int] = {}
        if not force:
            done = await self.intact(await self._store.find_outputs([j.output_url for j in rows]))
            cached = {j.id: done[j.output_url] for j in rows if j.output_url in done}
        await self._store.insert_rows(rows, cached)

    async def open_batch(self, batch: NewBatch) -> None:
        await self._store.open_batch(batch)

    async def discard_rows(self, batch_id: str) -> None:
        await self._store.discard_rows(batch_id)

    async def retry_failed_rows(self, batch_id: str, limit: int) -> int:
        """Queues up to ``limit`` failed rows again; returns how many (fewer: none left)."""
        count = await self._store.retry_failed_rows(batch_id, self.clock(), limit)
        if count:
            self._leases.wake()
        return count

    async def cancel_rows(self, batch_id: str, limit: int) -> int:
        """Cancels up to ``limit`` rows that have not ended, in one transaction: the holders of
        leased rows are told to drop them, watchers of a row see it end, and one log line stands
        for the rows' outcomes. Returns how many (fewer than ``limit``: none are left)."""
        ids, leased = await self._store.cancel_batch(batch_id, self.clock(), limit)
        for before in leased:
            self.fence(before, "batch cancelled by a client")
        published = 0
        for job_id in ids:
            if self.events.watched(job_id):
                after = await self._store.get(job_id)
                if after is not None:
                    self.publish(after)  # counts and logs its outcome itself
                    published += 1
        if ids:
            metrics.OUTCOMES.labels(JobState.CANCELLED.value).inc(len(ids) - published)
            log.info("batch rows cancelled", extra={"batch_id": batch_id, "rows": len(ids)})
        return len(ids)

    # --- agent streams (agent_service.py, dispatcher.py, the reaper, the console) ----------

    async def connect(self, agent_id: str, slots: int) -> Session:
        """A new stream of agent_id; an earlier one of the same agent is closed first. It
        takes no work until ``reconcile`` has counted the leases its Hello reported."""
        await self._sessions.close_previous(agent_id)
        session = self._sessions.register(agent_id, slots)
        self._leases.joining(session)
        return session

    def disconnect(self, session: Session) -> None:
        self._sessions.unregister(session)
        self._leases.forget(session)

    async def reconcile(self, session: Session, reported: Iterable[pb.LeaseRef]) -> None:
        """Keeps the leases both sides agree on, cancels the agent's stale ones, and fails at
        once (retryable, an attempt spent) the ones the agent no longer has: it restarted,
        and a job that keeps killing its agent must run out of attempts. Then the session
        may take work (``connect``)."""
        book = self._leases
        async with self._reconciles:  # a reconnect storm leaves the claims store connections
            ours = {r.id: r for r in await self._store.leases_of(session.agent_id)}
            for lease in reported:
                record = ours.pop(lease.job_id, None)
                if record is not None and record.fencing_token == lease.fencing_token:
                    book.keep(session, lease.job_id, lease.fencing_token, record.parent_id)
                else:
                    book.cancel(session, lease.job_id, lease.fencing_token, STALE)
            if kept := book.held(session):
                await self.renew(session.agent_id, list(kept.items()))
            for record in ours.values():
                await self.agent_lost(record)
        book.joined(session)

    def heard_from(self, session: Session) -> None:
        self._leases.heard_from(session)

    def drop(self, session: Session, job_id: str, token: int, reason: str = STALE) -> None:
        """Tells the agent to drop a job whose lease it does not hold (any more)."""
        self._leases.cancel(session, job_id, token, reason)

    def settled(self, session: Session, lease: pb.LeaseRef, accepted: bool) -> None:
        """The agent reported an outcome of that lease; ``accepted``: the store took it."""
        self._leases.settle(session, lease, accepted)

    def lost_in_transit(
        self, session: Session, reported: Collection[str], grace: float
    ) -> list[tuple[str, int]]:
        return self._leases.lost_in_transit(session, reported, grace)

    def fence_expired(self, record: JobRecord) -> None:
        """An expired lease's holder, if still connected, went silent: it takes no more work
        until it speaks, and is told to drop the job."""
        session = self._sessions.get(record.lease_owner)
        if session is not None:
            self._leases.mark_silent(session)
            self._leases.cancel(session, record.id, record.fencing_token, "lease expired")

    def wake(self) -> None:
        """There may be work to hand out: the dispatcher looks now."""
        self._leases.wake()

    async def wait_for_work(self, tick: float) -> None:
        await self._leases.wait_for_work(tick)

    def grant(
        self, session: Session, job_id: str, token: int, parent_id: str | None = None
    ) -> None:
        self._leases.grant(session, job_id, token, parent_id)

    def free_slots(self, session: Session) -> int:
        return self._leases.free_slots(session)

    def held(self, session: Session) -> dict[str, int]:
        """The leases a connected agent holds: job id -> fencing token."""
        return self._leases.held(session)

    def is_silent(self, session: Session) -> bool:
        return self._leases.is_silent(session)

    def agents(self) -> list[Session]:
        """The connected agents' streams."""
        return self._sessions.all()

    def rotated_agents(self) -> list[Session]:
        """The connected agents, in the dispatcher's round-robin order."""
        return self._sessions.rotated()

    def gone_agents(self) -> list[Session]:
        """Agents that disconnected recently (the console lists them)."""
        return self._sessions.gone()

    async def wait_for_agents(self, count: int) -> None:
        await self._sessions.wait_for(count)

"""The coordinator's job logic: every state change goes through here, to the store and out
to watchers and agents."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from typing import Any

from coordinator import metrics
from coordinator.config import CoordinatorConfig
from coordinator.convert import job_message
from coordinator.events import JobEvents
from coordinator.job_trace import job_span
from coordinator.sessions import Sessions
from coordinator.store import Done, JobRecord, JobState, JobStore, NewJob
from framefleet.core import jobspec, telemetry
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb
from outputs import abort_upload

log = logging.getLogger("framefleet.coordinator")

SOURCE_CACHE = 64


class Farm:
    def __init__(self, store: JobStore, config: CoordinatorConfig) -> None:
        self.store = store
        self.config = config
        self.clock = config.clock
        self.events = JobEvents()
        self.sessions = Sessions()
        # Set whenever there may be work to hand out.
        self.work_available = asyncio.Event()
        # Recently used sources by key, so assignments need not read them back from the store.
        self._sources: dict[str, pb.JobSpec] = {}
        self._background: set[asyncio.Task[None]] = set()

    def publish(self, record: JobRecord, fps: float = 0.0) -> None:
        if self.events.watched(record.id):
            self.events.publish(job_message(record, with_spec=False), fps)
        if record.state.final:
            metrics.OUTCOMES.labels(record.state.value).inc()
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

    def retry_at(self, attempt: int) -> float:
        """Exponential backoff with full jitter in its upper half."""
        delay = min(self.config.retry_cap, self.config.retry_base * 2.0 ** max(0, attempt - 1))
        return self.clock() + delay * random.uniform(0.5, 1.0)

    # --- clients ---------------------------------------------------------------------------

    def destination(self, spec: pb.JobSpec) -> str:
        destination = spec.destination or self.config.default_destination
        if not destination:
            raise FramefleetError(ErrorClass.INVALID_JOB, "the job names no destination")
        return destination

    async def store_source(self, spec: pb.JobSpec) -> str:
        """Stores the spec's source once; returns its key."""
        key = jobspec.source_key(spec)
        if key not in self._sources:
            source = jobspec.source_only(spec)
            await self.store.put_source(key, source.SerializeToString())
            self._remember_source(key, source)
        return key

    def _remember_source(self, key: str, source: pb.JobSpec) -> None:
        self._sources[key] = source
        while len(self._sources) > SOURCE_CACHE:
            del self._sources[next(iter(self._sources))]

    async def source(self, key: str) -> pb.JobSpec:
        source = self._sources.get(key)
        if source is None:
            data = await self.store.get_source(key)
            source = pb.JobSpec.FromString(data or b"")
            self._remember_source(key, source)
        return source

    def new_job(
        self,
        spec: pb.JobSpec,
        output: jobspec.Output,
        source_key: str,
        destination: str,
        **fields: Any,
    ) -> NewJob:
        """A job row for a validated spec whose source is stored under source_key; ``fields``
        sets the rest (batch, row key, rank, trace context)."""
        key = jobspec.content_key(spec, source_key, output)
        rest = spec if spec.WhichOneof("source") is None else jobspec.without_source(spec)
        fields.setdefault("trace_context", telemetry.to_text(telemetry.inject()))
        return NewJob(
            id=uuid.uuid4().hex,
            spec=rest.SerializeToString(),
            content_key=key,
            output_url=jobspec.output_url(destination, key),
            frames_total=output.frames,
            priority=spec.priority,
            max_attempts=spec.max_attempts or jobspec.DEFAULT_MAX_ATTEMPTS,
            created_at=self.clock(),
            source_key=source_key,
            **fields,
        )

    async def submit(self, spec: pb.JobSpec) -> JobRecord:
        output = jobspec.validate(spec)
        destination = self.destination(spec)
        job = self.new_job(spec, output, await self.store_source(spec), destination)
        # Result cache: the same content at the same destination is already there.
        done = None if spec.force else await self.store.find_output(job.output_url)
        if done is not None:
            record = await self.store.insert_cached(job, done.output_bytes)
            metrics.CACHE_HITS.inc()
            self.publish(record)
            return record
        record = await self.store.insert(job)
        self.work_available.set()
        return record

    async def cancel(self, job_id: str) -> JobRecord | None:
        before = await self.store.cancel(job_id, self.clock())
        if before is None or before.state.final:
            return before
        self.fence(before, "cancelled by a client")
        self.abandon_upload(before)  # the agent aborts too, if it is alive
        after = await self.store.get(job_id)
        assert after is not None
        self.publish(after)
        return after

    def fence(self, before: JobRecord, reason: str) -> None:
        """Tells the agent holding a lease that was just taken away to drop the job."""
        session = self.sessions.get(before.lease_owner)
        if session is not None and before.state == JobState.LEASED:
            session.cancel(before.id, before.fencing_token, reason)

    # --- agents ----------------------------------------------------------------------------

    async def claim(self, agent_id: str, limit: int) -> list[JobRecord]:
        now = self.clock()
        records = await self.store.claim(agent_id, now, self.config.lease_ttl, limit)
        for record in records:
            job_span(record, "queue_wait", record.available_at, now)
            self.publish(record)
        return records

    async def renew(self, agent_id: str, leases: list[tuple[str, int]]) -> set[str]:
        return await self.store.renew(agent_id, leases, self.clock(), self.config.lease_ttl)

    async def progress(self, report: pb.Progress) -> bool:
        lease = report.lease
        if not await self.store.progress(
            lease.job_id, lease.fencing_token, report.frames_done, report.upload_id
        ):
            return False
        if self.events.watched(lease.job_id):
            record = await self.store.get(lease.job_id)
            if record is not None:
                self.publish(record, report.fps)
        return True

    def abandon_upload(self, record: JobRecord) -> None:
        """The lease was lost with its agent (killed, or restarted without it): abort the
        attempt's S3 multipart upload, which nobody will complete or abort now."""
        if record.upload_id:
            task = asyncio.create_task(self._abort_upload(record.output_url, record.upload_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _abort_upload(self, url: str, upload_id: str) -> None:
        try:
            await abort_upload(url, upload_id)
        except Exception:
            log.exception("aborting an orphaned upload failed", extra={"url": url})

    async def complete(self, reports: list[pb.Completed]) -> list[JobRecord]:
        """Records successes (one store call for all); returns the accepted ones."""
        now = self.clock()
        done = [
            Done(r.lease.job_id, r.lease.fencing_token, r.output_url, r.output_bytes)
            for r in reports
        ]
        records = await self.store.complete(done, now)
        by_job = {r.lease.job_id: r for r in reports}
        for record in records:
            report = by_job[record.id]
            if report.render_seconds > 0:
                metrics.RENDER_SECONDS.observe(report.render_seconds)
                metrics.RENDER_FPS.observe(report.frames / report.render_seconds)
            job_span(record, "attempt", record.started_at, now, outcome="succeeded")
            self.publish(record)
        if records:
            # Identical jobs that waited for these renders share their outputs.
            outputs = {r.output_url: r.output_bytes for r in records}
            for waiting in await self.store.complete_waiting(outputs, now):
                metrics.CACHE_HITS.inc()
                self.publish(waiting)
        return records

    async def fail(self, msg: pb.Failed) -> JobRecord | None:
        current = await self.store.get(msg.lease.job_id)
        if current is None:
            return None
        retry_at = self.retry_at(current.attempt) if msg.retryable else None
        record = await self.store.fail(
            msg.lease.job_id,
            msg.lease.fencing_token,
            msg.error_class or ErrorClass.INTERNAL,
            msg.message,
            retry_at,
            self.clock(),
        )
        if record is not None:
            metrics.FAILURES.labels(record.error_class).inc()
            job_span(
                record,
                "attempt",
                record.started_at,
                self.clock(),
                record.error_class,
                outcome=record.state.value,
                error_message=msg.message,
            )
            self.publish(record)
            self.work_available.set()
        return record

    async def release(self, job_id: str, token: int, interrupted: bool = False) -> JobRecord | None:
        """Requeues a lease given back unfinished. An interruption (a draining agent) spends
        no attempt but counts against the interruption budget."""
        budget = self.config.max_interruptions if interrupted else None
        record = await self.store.release(job_id, token, self.clock(), budget)
        if record is not None:
            outcome = record.state.value if interrupted else "released"
            job_span(record, "attempt", record.started_at, self.clock(), outcome=outcome)
            self.publish(record)
            self.work_available.set()
        return record

    async def expire_leases(self) -> list[JobRecord]:
        now = self.clock()
        expired = await self.store.expire(now, now)
        for record in expired:
            log.warning("lease expired", extra={"job_id": record.id, "attempt": record.attempt})
            metrics.LEASE_EXPIRIES.inc()
            metrics.FAILURES.labels(ErrorClass.LEASE_EXPIRED).inc()
            job_span(
                record,
                "attempt",
                record.started_at,
                now,
                ErrorClass.LEASE_EXPIRED,
                outcome=record.state.value,
            )
            self.abandon_upload(record)
            self.publish(record)
        if expired:
            self.work_available.set()
        return expired

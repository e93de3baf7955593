"""The coordinator's job logic: every state change goes through here, to the store and out
to watchers and agents."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid

from coordinator.config import CoordinatorConfig
from coordinator.convert import job_message
from coordinator.events import JobEvents
from coordinator.sessions import Sessions
from coordinator.store import JobRecord, JobStore, NewJob
from framefleet import jobspec
from framefleet.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.coordinator")


class Farm:
    def __init__(self, store: JobStore, config: CoordinatorConfig) -> None:
        self.store = store
        self.config = config
        self.clock = config.clock
        self.events = JobEvents()
        self.sessions = Sessions()
        # Set whenever there may be work to hand out.
        self.work_available = asyncio.Event()

    def publish(self, record: JobRecord, fps: float = 0.0) -> None:
        self.events.publish(job_message(record, with_spec=False), fps)
        if record.state.final:
            log.info(
                "job %s",
                record.state.value,
                extra={
                    "job_id": record.id,
                    "state": record.state.value,
                    "content_key": record.content_key,
                    "attempt": record.attempt,
                    "error_class": record.error_class,
                    "output_url": record.output_url,
                    "output_bytes": record.output_bytes,
                    "frames": record.frames_total,
                    "cache_hit": record.cache_hit,
                },
            )

    def retry_at(self, attempt: int) -> float:
        """Exponential backoff with full jitter in its upper half."""
        delay = min(self.config.retry_cap, self.config.retry_base * 2.0 ** max(0, attempt - 1))
        return self.clock() + delay * random.uniform(0.5, 1.0)

    # --- clients ---------------------------------------------------------------------------

    async def submit(self, spec: pb.JobSpec) -> JobRecord:
        output = jobspec.validate(spec)
        destination = spec.destination or self.config.default_destination
        if not destination:
            raise FramefleetError(ErrorClass.INVALID_JOB, "the job names no destination")
        key = jobspec.content_key(spec)
        job = NewJob(
            id=uuid.uuid4().hex,
            spec=spec.SerializeToString(),
            content_key=key,
            output_url=jobspec.output_url(destination, key),
            frames_total=output.frames,
            priority=spec.priority,
            max_attempts=spec.max_attempts or jobspec.DEFAULT_MAX_ATTEMPTS,
            created_at=self.clock(),
        )
        # Result cache: the same content at the same destination is already there.
        done = None if spec.force else await self.store.find_output(job.output_url)
        if done is not None:
            record = await self.store.insert_cached(job, done.output_bytes)
            self.publish(record)
            return record
        record = await self.store.insert(job)
        self.work_available.set()
        return record

    async def cancel(self, job_id: str) -> JobRecord | None:
        before = await self.store.cancel(job_id, self.clock())
        if before is None or before.state.final:
            return before
        session = self.sessions.get(before.lease_owner)
        if session is not None and before.state == "leased":
            session.cancel(job_id, before.fencing_token, "cancelled by a client")
        after = await self.store.get(job_id)
        assert after is not None
        self.publish(after)
        return after

    # --- agents ----------------------------------------------------------------------------

    async def claim(self, agent_id: str) -> JobRecord | None:
        record = await self.store.claim(agent_id, self.clock(), self.config.lease_ttl)
        if record is not None:
            self.publish(record)
        return record

    async def renew(self, agent_id: str, leases: list[tuple[str, int]]) -> set[str]:
        return await self.store.renew(agent_id, leases, self.clock(), self.config.lease_ttl)

    async def progress(self, job_id: str, token: int, frames_done: int, fps: float) -> bool:
        if not await self.store.progress(job_id, token, frames_done):
            return False
        record = await self.store.get(job_id)
        if record is not None:
            self.publish(record, fps)
        return True

    async def complete(self, msg: pb.Completed) -> JobRecord | None:
        record = await self.store.complete(
            msg.lease.job_id,
            msg.lease.fencing_token,
            msg.output_url,
            msg.output_bytes,
            self.clock(),
        )
        if record is not None:
            self.publish(record)
            # Identical jobs that waited for this render share its output.
            for waiting in await self.store.complete_waiting(
                record.output_url, record.output_bytes, self.clock()
            ):
                self.publish(waiting)
        return record

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
            self.publish(record)
            self.work_available.set()
        return record

    async def release(self, job_id: str, token: int) -> JobRecord | None:
        record = await self.store.release(job_id, token, self.clock())
        if record is not None:
            self.publish(record)
            self.work_available.set()
        return record

    async def expire_leases(self) -> list[JobRecord]:
        now = self.clock()
        expired = await self.store.expire(now, now)
        for record in expired:
            log.warning("lease expired", extra={"job_id": record.id, "attempt": record.attempt})
            self.publish(record)
        if expired:
            self.work_available.set()
        return expired

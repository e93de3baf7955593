"""The client-facing gRPC service: submit, get, list, cancel, watch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio as aio

from coordinator.convert import STORE_STATE, job_message
from coordinator.farm import Farm
from framefleet.errors import FramefleetError
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc

Context = aio.ServicerContext[Any, Any]

# A watcher re-reads the store this often, so it also sees changes made by another
# coordinator sharing the table.
WATCH_POLL_SECONDS = 1.0


class JobService(pb_grpc.JobServiceServicer):  # type: ignore[misc]
    def __init__(self, farm: Farm) -> None:
        self.farm = farm

    async def SubmitJob(
        self, request: pb.SubmitJobRequest, context: Context
    ) -> pb.SubmitJobResponse:
        try:
            record = await self.farm.submit(request.spec)
        except FramefleetError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return pb.SubmitJobResponse(job=job_message(record))

    async def _job(self, job_id: str, context: Context) -> pb.Job:
        record = await self.farm.store.get(job_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}")
        return job_message(record)

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=await self._job(request.job_id, context))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        states = [STORE_STATE[s] for s in request.states if s in STORE_STATE]
        records = await self.farm.store.list_jobs(states, request.limit or 100)
        return pb.ListJobsResponse(jobs=[job_message(r, with_spec=False) for r in records])

    async def CancelJob(
        self, request: pb.CancelJobRequest, context: Context
    ) -> pb.CancelJobResponse:
        record = await self.farm.cancel(request.job_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}")
        return pb.CancelJobResponse(job=job_message(record))

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: Context
    ) -> AsyncIterator[pb.WatchJobResponse]:
        queue = self.farm.events.subscribe(request.job_id)
        try:
            job = await self._job(request.job_id, context)
            job.ClearField("spec")
            yield pb.WatchJobResponse(job=job)
            last = job
            while last.state not in FINAL:
                update: pb.WatchJobResponse | None = None
                with contextlib.suppress(TimeoutError):
                    update = await asyncio.wait_for(queue.get(), WATCH_POLL_SECONDS)
                if update is None:
                    fresh = await self._job(request.job_id, context)
                    fresh.ClearField("spec")
                    if fresh == last:
                        continue
                    update = pb.WatchJobResponse(job=fresh)
                last = update.job
                yield update
        finally:
            self.farm.events.unsubscribe(request.job_id, queue)


FINAL = frozenset({pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED})

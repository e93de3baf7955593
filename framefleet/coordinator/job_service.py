"""The client-facing gRPC service: jobs (submit, get, list, cancel, watch) and batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

import grpc
import grpc.aio as aio
from opentelemetry.trace import Span, SpanKind

from framefleet.coordinator.auth import Authenticator
from framefleet.coordinator.batches import batch_message, cancel_batch, submit_batch
from framefleet.coordinator.convert import STORE_STATE, job_message
from framefleet.coordinator.farm import Farm, QuotaExceeded
from framefleet.coordinator.store import JobRecord
from framefleet.coordinator.tokens import Principal
from framefleet.core import telemetry
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.rpc_errors import refusal, status
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc

Context = aio.ServicerContext[Any, Any]

# A watcher re-reads the store this often, so it also sees changes made by another
# coordinator sharing the table.
WATCH_POLL_SECONDS = 1.0
BATCH_POLL_SECONDS = 0.5
DEFAULT_PAGE, MAX_PAGE = 100, 1000


class JobService(pb_grpc.JobServiceServicer):  # type: ignore[misc]
    def __init__(self, farm: Farm, auth: Authenticator) -> None:
        self.farm = farm
        self.auth = auth

    # --- who is calling, and what they may see ------------------------------------------------
    # Jobs and batches belong to the tenant (token name) that submitted them. Another tenant's
    # job is NOT_FOUND, exactly as a job that does not exist: ids cannot be probed.

    async def _caller(self, context: Context, writes: bool = False) -> Principal:
        principal = self.auth.principal(context.invocation_metadata())
        if principal is None:  # the Gate let it in, but the token was revoked since
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the client token was revoked")
        if writes and not principal.writes:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {principal.name!r} has role {principal.role}: it may only read",
            )
        return principal

    async def _record(self, job_id: str, context: Context, caller: Principal) -> JobRecord:
        record = await self.farm.queries.job(caller, job_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}")
        return record

    async def SubmitJob(
        self, request: pb.SubmitJobRequest, context: Context
    ) -> pb.SubmitJobResponse:
        caller = await self._caller(context, writes=True)
        with _server_span("SubmitJob", context) as span:
            try:
                record = await self.farm.submit(request.spec, caller.name, request.request_id)
            except FramefleetError as e:
                span.set_attribute("framefleet.error.class", e.error_class)
                await context.abort_with_status(status(_refusal(e), e))
            span.set_attributes(
                {"framefleet.job.id": record.id, "framefleet.cache_hit": record.cache_hit}
            )
        return pb.SubmitJobResponse(job=job_message(record))

    async def _job(self, job_id: str, context: Context, caller: Principal) -> pb.Job:
        return job_message(await self._record(job_id, context, caller))

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        caller = await self._caller(context)
        return pb.GetJobResponse(job=await self._job(request.job_id, context, caller))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        caller = await self._caller(context)
        if request.limit > MAX_PAGE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{ErrorClass.INVALID_JOB}: limit {request.limit}: a page holds at most"
                f" {MAX_PAGE} jobs (follow next_page_token for more)",
            )
        limit = request.limit or DEFAULT_PAGE
        states = [STORE_STATE[s] for s in request.states if s in STORE_STATE]
        records = await self.farm.queries.jobs(caller, states, limit, before=request.page_token)
        # The token is the page's last job id: the next page starts below it.
        token = records[-1].id if len(records) == limit else ""
        return pb.ListJobsResponse(
            jobs=[job_message(r, with_spec=False) for r in records], next_page_token=token
        )

    async def CancelJob(
        self, request: pb.CancelJobRequest, context: Context
    ) -> pb.CancelJobResponse:
        caller = await self._caller(context)
        await self._record(request.job_id, context, caller)  # NOT_FOUND before the role
        await self._caller(context, writes=True)
        record = await self.farm.cancel(request.job_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}")
        return pb.CancelJobResponse(job=job_message(record))

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: Context
    ) -> AsyncIterator[pb.WatchJobResponse]:
        caller = await self._caller(context)
        queue = self.farm.events.subscribe(request.job_id)
        try:
            job = await self._job(request.job_id, context, caller)
            job.ClearField("spec")
            yield pb.WatchJobResponse(job=job)
            last = job
            while last.state not in FINAL:
                # A token revoked mid-watch ends the watch (UNAUTHENTICATED) within a poll.
                caller = await self._caller(context)
                update: pb.WatchJobResponse | None = None
                with contextlib.suppress(TimeoutError):
                    update = await asyncio.wait_for(queue.get(), WATCH_POLL_SECONDS)
                if update is None:
                    fresh = await self._job(request.job_id, context, caller)
                    fresh.ClearField("spec")
                    if fresh == last:
                        continue
                    update = pb.WatchJobResponse(job=fresh)
                last = update.job
                yield update
        finally:
            self.farm.events.unsubscribe(request.job_id, queue)

    # --- batches ---------------------------------------------------------------------------

    async def SubmitBatch(
        self, request_iterator: AsyncIterator[pb.SubmitBatchRequest], context: Context
    ) -> pb.SubmitBatchResponse:
        caller = await self._caller(context, writes=True)
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("message") != "header":
            await context.abort_with_status(
                refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    ErrorClass.INVALID_JOB,
                    "a batch starts with its header",
                )
            )

        async def rows() -> AsyncIterator[pb.BatchRow]:
            async for request in requests:
                if request.WhichOneof("message") != "rows":
                    raise FramefleetError(ErrorClass.INVALID_JOB, "only rows follow the header")
                for row in request.rows.rows:
                    yield row

        with _server_span("SubmitBatch", context) as span:
            try:
                record = await submit_batch(self.farm, first.header, rows(), caller.name)
            except FramefleetError as e:
                span.set_attribute("framefleet.error.class", e.error_class)
                await context.abort_with_status(status(_refusal(e), e))
            span.set_attributes({"framefleet.batch.id": record.id, "framefleet.rows": record.total})
        return pb.SubmitBatchResponse(batch=batch_message(record, self.farm.clock()))

    async def _batch(self, batch_id: str, context: Context, caller: Principal) -> pb.Batch:
        record = await self.farm.queries.batch(caller, batch_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no batch {batch_id!r}")
        return batch_message(record, self.farm.clock())

    async def GetBatch(self, request: pb.GetBatchRequest, context: Context) -> pb.GetBatchResponse:
        caller = await self._caller(context)
        return pb.GetBatchResponse(batch=await self._batch(request.batch_id, context, caller))

    async def CancelBatch(
        self, request: pb.CancelBatchRequest, context: Context
    ) -> pb.CancelBatchResponse:
        caller = await self._caller(context)
        await self._batch(request.batch_id, context, caller)  # NOT_FOUND before the role
        await self._caller(context, writes=True)
        if await cancel_batch(self.farm, request.batch_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no batch {request.batch_id!r}")
        return pb.CancelBatchResponse(batch=await self._batch(request.batch_id, context, caller))

    async def WatchBatch(
        self, request: pb.WatchBatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchBatchResponse]:
        """Polls the batch's counts: one read per interval, whatever the batch's size."""
        last: pb.Batch | None = None
        while True:
            caller = await self._caller(context)  # a token revoked mid-watch ends it
            batch = await self._batch(request.batch_id, context, caller)
            if batch != last:
                yield pb.WatchBatchResponse(batch=batch)
                last = batch
            if batch.HasField("finished_at"):
                return
            await asyncio.sleep(BATCH_POLL_SECONDS)


def _refusal(error: FramefleetError) -> grpc.StatusCode:
    return (
        grpc.StatusCode.RESOURCE_EXHAUSTED
        if isinstance(error, QuotaExceeded)
        else grpc.StatusCode.INVALID_ARGUMENT
    )


def _server_span(name: str, context: Context) -> AbstractContextManager[Span]:
    """A server span that continues the caller's trace (W3C headers in the gRPC metadata)."""
    metadata = context.invocation_metadata() or ()
    parent = telemetry.extract((k, v) for k, v in metadata if isinstance(v, str))
    return telemetry.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER)


FINAL = frozenset({pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED})

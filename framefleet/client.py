"""The Python SDK: an async client over the coordinator's JobService, and a thin sync wrapper."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import grpc.aio as aio
from opentelemetry.trace import SpanKind

from framefleet.core import telemetry
from framefleet.core.channel import TOKEN_ENV, Tls, bearer, open_channel
from framefleet.core.errors import ErrorClass, FramefleetError, from_wire
from framefleet.core.rpc_errors import from_rpc_error
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc

T = TypeVar("T")
# AsyncClient's default: TLS from $FRAMEFLEET_TLS_CA when it is set.
FROM_ENV: Literal["env"] = "env"
ROWS_PER_MESSAGE = 500
PAGE = 1000  # the coordinator's largest ListJobs page
FINAL_STATES = frozenset({pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED})


class JobFailed(FramefleetError):
    """A job ended failed or cancelled; ``job`` is its final record."""

    def __init__(self, job: pb.Job) -> None:
        state = pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
        error_class = from_wire(job.error, job.error_class)
        what = error_class or ("CANCELLED" if state == "cancelled" else ErrorClass.INTERNAL)
        super().__init__(
            error_class or ErrorClass.INTERNAL, f"job {job.id} {state}: {job.error_message or what}"
        )
        self.job = job


def _translate(error: aio.AioRpcError) -> Exception:
    """A refusal's error class is in the status details; other errors stay as they are."""
    return from_rpc_error(error) or error


class AsyncClient:
    """``async with AsyncClient("127.0.0.1:7070") as client: job = await client.submit(spec)``

    ``tls`` and ``token`` default to $FRAMEFLEET_TLS_CA and $FRAMEFLEET_TOKEN; ``tls=None`` is
    plaintext (a loopback coordinator without TLS), ``token=""`` sends none."""

    def __init__(
        self, target: str, tls: Tls | Literal["env"] | None = FROM_ENV, token: str | None = None
    ) -> None:
        self._channel = open_channel(target, Tls.from_env() if tls == FROM_ENV else tls)
        self._stub = pb_grpc.JobServiceStub(self._channel)
        self._auth = bearer(os.environ.get(TOKEN_ENV, "") if token is None else token)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        # The trace context travels as W3C headers in the call's metadata, beside the token.
        return self._auth + tuple(telemetry.inject().items())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, metadata=self._metadata())
        except aio.AioRpcError as e:
            raise _translate(e) from e

    async def submit(self, spec: pb.JobSpec, request_id: str = "") -> pb.Job:
        """Queues a job. ``request_id`` (default: a new random one) makes a retry of this call
        return the first job instead of submitting it twice."""
        request = pb.SubmitJobRequest(spec=spec, request_id=request_id or uuid.uuid4().hex)
        with telemetry.tracer.start_as_current_span("framefleet.submit", kind=SpanKind.CLIENT):
            response: pb.SubmitJobResponse = await self._call("SubmitJob", request)
        return response.job

    async def get(self, job_id: str) -> pb.Job:
        response: pb.GetJobResponse = await self._call("GetJob", pb.GetJobRequest(job_id=job_id))
        return response.job

    async def list(self, states: list[pb.JobState] | None = None, limit: int = 100) -> list[pb.Job]:
        """Up to ``limit`` jobs, newest first, fetched a page (at most 1000) at a time."""
        jobs: list[pb.Job] = []
        token = ""
        while len(jobs) < limit:
            request = pb.ListJobsRequest(
                states=states or [], limit=min(limit - len(jobs), PAGE), page_token=token
            )
            response: pb.ListJobsResponse = await self._call("ListJobs", request)
            jobs += response.jobs
            token = response.next_page_token
            if not token:
                break
        return jobs

    async def cancel(self, job_id: str) -> pb.Job:
        response: pb.CancelJobResponse = await self._call(
            "CancelJob", pb.CancelJobRequest(job_id=job_id)
        )
        return response.job

    async def watch(self, job_id: str) -> AsyncIterator[pb.WatchJobResponse]:
        """State changes and progress until the job ends (the last item is its final state)."""
        try:
            watch = self._stub.WatchJob(
                pb.WatchJobRequest(job_id=job_id), metadata=self._metadata()
            )
            async for update in watch:
                yield update
        except aio.AioRpcError as e:
            raise _translate(e) from e

    async def submit_batch(
        self,
        spec: pb.JobSpec,
        rows: Iterable[tuple[str, Mapping[str, Any]]],
        name: str = "",
        request_id: str = "",
    ) -> pb.Batch:
        """One template (spec), many rows of (row key, parameters); an empty row key means a
        hash of the row. Rows stream to the coordinator: memory stays flat for big batches.
        ``request_id`` (default: a new random one): a retry returns the first batch."""
        batch_request = uuid.uuid4().hex

        def requests() -> Iterator[pb.SubmitBatchRequest]:
            header = pb.BatchHeader(spec=spec, name=name, request_id=request_id or batch_request)
            yield pb.SubmitBatchRequest(header=header)
            chunk = pb.BatchRows()
            for key, params in rows:
                row = chunk.rows.add(row_key=key)
                row.params.update(params)
                if len(chunk.rows) == ROWS_PER_MESSAGE:
                    yield pb.SubmitBatchRequest(rows=chunk)
                    chunk = pb.BatchRows()
            if chunk.rows:
                yield pb.SubmitBatchRequest(rows=chunk)

        with telemetry.tracer.start_as_current_span(
            "framefleet.submit_batch", kind=SpanKind.CLIENT
        ):
            try:
                response: pb.SubmitBatchResponse = await self._stub.SubmitBatch(
                    requests(), metadata=self._metadata()
                )
            except aio.AioRpcError as e:
                raise _translate(e) from e
        return response.batch

    async def get_batch(self, batch_id: str) -> pb.Batch:
        response: pb.GetBatchResponse = await self._call(
            "GetBatch", pb.GetBatchRequest(batch_id=batch_id)
        )
        return response.batch

    async def cancel_batch(self, batch_id: str) -> pb.Batch:
        response: pb.CancelBatchResponse = await self._call(
            "CancelBatch", pb.CancelBatchRequest(batch_id=batch_id)
        )
        return response.batch

    async def watch_batch(self, batch_id: str) -> AsyncIterator[pb.Batch]:
        """Aggregate progress until every row has ended; the last one carries the digest."""
        try:
            request = pb.WatchBatchRequest(batch_id=batch_id)
            async for update in self._stub.WatchBatch(request, metadata=self._metadata()):
                yield update.batch
        except aio.AioRpcError as e:
            raise _translate(e) from e

    async def wait_batch(self, batch_id: str) -> pb.Batch:
        """The batch once every row has ended, with its digest."""
        last = await self.get_batch(batch_id)
        async for batch in self.watch_batch(batch_id):
            last = batch
        return last

    async def wait(self, job_id: str) -> pb.Job:
        """The job's final record; raises JobFailed unless it succeeded."""
        job: pb.Job | None = None
        async for update in self.watch(job_id):
            job = update.job
        if job is None or job.state not in FINAL_STATES:
            job = await self.get(job_id)
        if job.state != pb.JOB_STATE_SUCCEEDED:
            raise JobFailed(job)
        return job


class Client:
    """Blocking wrapper: the async client on a private event loop thread."""

    def __init__(
        self, target: str, tls: Tls | Literal["env"] | None = FROM_ENV, token: str | None = None
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._async = self._run(self._make(target, tls, token))

    @staticmethod
    async def _make(
        target: str, tls: Tls | Literal["env"] | None, token: str | None
    ) -> AsyncClient:
        return AsyncClient(target, tls, token)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def submit(self, spec: pb.JobSpec) -> pb.Job:
        return self._run(self._async.submit(spec))

    def get(self, job_id: str) -> pb.Job:
        return self._run(self._async.get(job_id))

    def cancel(self, job_id: str) -> pb.Job:
        return self._run(self._async.cancel(job_id))

    def wait(self, job_id: str) -> pb.Job:
        return self._run(self._async.wait(job_id))

    def submit_batch(
        self, spec: pb.JobSpec, rows: Iterable[tuple[str, Mapping[str, Any]]], name: str = ""
    ) -> pb.Batch:
        return self._run(self._async.submit_batch(spec, rows, name))

    def get_batch(self, batch_id: str) -> pb.Batch:
        return self._run(self._async.get_batch(batch_id))

    def cancel_batch(self, batch_id: str) -> pb.Batch:
        return self._run(self._async.cancel_batch(batch_id))

    def wait_batch(self, batch_id: str) -> pb.Batch:
        return self._run(self._async.wait_batch(batch_id))

    def watch(self, job_id: str) -> Iterator[pb.WatchJobResponse]:
        updates = aiter(self._async.watch(job_id))

        async def step() -> pb.WatchJobResponse:
            return await anext(updates)

        while True:
            try:
                yield self._run(step())
            except StopAsyncIteration:
                return

"""Error classes on the wire: the proto enum matches the Python vocabulary, refusals carry it in
the gRPC status details (read by the SDK without parsing text), and reports fall back to the
class name from peers that predate the enum."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio as aio
import pytest

from framefleet.client import AsyncClient, JobFailed
from framefleet.core.errors import ErrorClass, FramefleetError, from_wire, to_wire
from framefleet.core.rpc_errors import DETAILS_KEY, from_rpc_error, refusal
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc


def test_the_enum_and_the_vocabulary_match() -> None:
    wire = {name.removeprefix("ERROR_CLASS_") for name in pb.ErrorClass.keys()}
    assert wire - {"UNSPECIFIED"} == set(ErrorClass.__members__)
    for error_class in ErrorClass:
        assert from_wire(to_wire(error_class)) is error_class


def test_reading_a_class_from_any_peer() -> None:
    assert from_wire(pb.ERROR_CLASS_UNSPECIFIED) is None
    assert from_wire(0, "CAPTURE_TIMEOUT") is ErrorClass.CAPTURE_TIMEOUT  # an older peer
    # The enum wins over a contradicting name.
    assert from_wire(pb.ERROR_CLASS_ENCODE_ERROR, "INVALID_JOB") is ErrorClass.ENCODE_ERROR
    assert from_wire(999) is ErrorClass.INTERNAL  # a newer peer's class
    assert from_wire(0, "SOMETHING_NEW") is ErrorClass.INTERNAL
    assert to_wire("") == pb.ERROR_CLASS_UNSPECIFIED
    assert to_wire("SOMETHING_NEW") == pb.ERROR_CLASS_INTERNAL


def test_a_failed_job_raises_its_enum_class() -> None:
    job = pb.Job(id="j", state=pb.JOB_STATE_FAILED, error=pb.ERROR_CLASS_TEMPLATE_SCRIPT_ERROR)
    assert JobFailed(job).error_class is ErrorClass.TEMPLATE_SCRIPT_ERROR
    legacy = pb.Job(id="j", state=pb.JOB_STATE_FAILED, error_class="OUTPUT_ERROR")
    assert JobFailed(legacy).error_class is ErrorClass.OUTPUT_ERROR
    cancelled = JobFailed(pb.Job(id="j", state=pb.JOB_STATE_CANCELLED))
    assert "job j cancelled: CANCELLED" in str(cancelled)


class Refusing(pb_grpc.JobServiceServicer):  # type: ignore[misc]
    """Refuses with a class whose name appears nowhere in the message text, so only the
    details can tell it; GetJob refuses the old way, with text alone."""

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: Any) -> None:
        status = refusal(grpc.StatusCode.FAILED_PRECONDITION, ErrorClass.OUTPUT_ERROR, "no disk")
        await context.abort_with_status(status)

    async def GetJob(self, request: pb.GetJobRequest, context: Any) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_JOB: text only")


@pytest.fixture
async def refusing_server() -> AsyncIterator[str]:
    server = aio.server()
    pb_grpc.add_JobServiceServicer_to_server(Refusing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_the_sdk_reads_the_class_from_the_details(refusing_server: str) -> None:
    async with AsyncClient(refusing_server) as client:
        with pytest.raises(FramefleetError) as refused:
            await client.submit(pb.JobSpec())
        assert refused.value.error_class is ErrorClass.OUTPUT_ERROR
        assert str(refused.value) == "OUTPUT_ERROR: no disk"
        cause = refused.value.__cause__
        assert isinstance(cause, aio.AioRpcError)
        assert cause.code() == grpc.StatusCode.FAILED_PRECONDITION
        # People and tools such as grpcurl still read the class in the message.
        assert cause.details() == "OUTPUT_ERROR: no disk"
        assert any(key == DETAILS_KEY for key, _ in cause.trailing_metadata() or ())
        # Text alone is not parsed: without details, the gRPC error stays as it is.
        with pytest.raises(aio.AioRpcError) as plain:
            await client.get("x")
        assert from_rpc_error(plain.value) is None

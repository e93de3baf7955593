"""Refusals on gRPC: the error class travels as an ``ErrorDetail`` in the standard rich status
(a google.rpc.Status in the grpc-status-details-bin trailer, grpcio-status), so every client
reads the class from a typed field. The status message stays "CLASS: message" for people and
tools such as grpcurl."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from framefleet.core.errors import ErrorClass, FramefleetError, from_wire, to_wire
from framefleet.v1 import framefleet_pb2 as pb

DETAILS_KEY = "grpc-status-details-bin"


def status(code: grpc.StatusCode, error: FramefleetError) -> grpc.Status:
    """The status a server aborts with for ``error``
    (``await context.abort_with_status(status(...))``)."""
    detail = any_pb2.Any()
    detail.Pack(pb.ErrorDetail(error_class=to_wire(error.error_class), message=error.args[0]))
    rich = status_pb2.Status(code=code.value[0], message=str(error), details=[detail])
    return rpc_status.to_status(rich)


def refusal(code: grpc.StatusCode, error_class: ErrorClass, message: str) -> grpc.Status:
    return status(code, FramefleetError(error_class, message))


def from_rpc_error(error: grpc.RpcError) -> FramefleetError | None:
    """The FramefleetError a refused call carries in its details; None for any other error."""
    # Both a sync call's error and grpc.aio's AioRpcError have trailing_metadata().
    trailing_metadata = getattr(error, "trailing_metadata", None)
    trailers: Any = trailing_metadata() if callable(trailing_metadata) else None
    for key, value in trailers or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            message = pb.ErrorDetail()
            if detail.Unpack(message):
                error_class = from_wire(message.error_class) or ErrorClass.INTERNAL
                return FramefleetError(error_class, message.message)
    return None

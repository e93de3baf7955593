"""Bytes that do not decode as the request answer INVALID_ARGUMENT with a short reason, not
grpc's UNKNOWN and an error-level traceback per call: a peer that sends garbage (params
nested past protobuf's limit, strings that are not UTF-8, noise) is logged at warning level at
most once a minute per host, so it cannot fill the log.

Every handler the coordinator serves is rebuilt by ``guarded`` (from auth.Gate) with a request
deserializer that turns a decode failure into an ``Undecodable`` marker, and a behaviour that
refuses the call when it meets one. Streamed requests are decoded as they are read, so a
refusal before the first read decodes nothing."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import grpc.aio as aio

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

log = logging.getLogger("framefleet.coordinator")

LOG_EVERY = 60.0  # seconds between warnings about one host
_MAX_HOSTS = 4096  # hosts remembered; the oldest are forgotten past this
_last_warning: dict[str, float] = {}


@dataclass(frozen=True)
class Undecodable:
    reason: str


def _host(peer: str) -> str:
    """The peer without its port ("ipv4:10.0.0.5:4242" -> "ipv4:10.0.0.5"): a new connection
    is the same sender."""
    return peer.rsplit(":", 1)[0] if peer.count(":") > 1 else peer


def note(peer: str, method: str, reason: str, clock: Callable[[], float] = time.monotonic) -> bool:
    """Logs an undecodable request from ``peer`` unless its host was logged within LOG_EVERY;
    returns whether it logged."""
    host, now = _host(peer), clock()
    last = _last_warning.get(host)
    if last is not None and now - last < LOG_EVERY:
        return False
    if len(_last_warning) >= _MAX_HOSTS:
        for old in sorted(_last_warning, key=_last_warning.__getitem__)[: _MAX_HOSTS // 4]:
            del _last_warning[old]
    _last_warning[host] = now
    log.warning(
        "undecodable request refused (more from this host are not logged for a minute)",
        extra={"peer": host, "method": method, "reason": reason},
    )
    return True


def _deserializer(decode: Callable[[bytes], Any] | None, kind: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if decode is None:
            return data
        try:
            return decode(data)
        except Exception as e:  # DecodeError, RecursionError, UnicodeDecodeError...
            return Undecodable(f"the request is not a valid {kind}: {type(e).__name__}")

    return deserialize


async def _refuse(context: aio.ServicerContext[Any, Any], method: str, request: Any) -> None:
    if isinstance(request, Undecodable):
        note(context.peer(), method, request.reason)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)


async def _checked(
    requests: AsyncIterator[Any], context: aio.ServicerContext[Any, Any], method: str
) -> AsyncIterator[Any]:
    async for request in requests:
        await _refuse(context, method, request)
        yield request


Check = Callable[[aio.ServicerContext[Any, Any]], Any]


def guarded(handler: Handler, method: str, before: Check | None = None) -> Handler:
    """``handler`` with undecodable requests refused as INVALID_ARGUMENT; ``before`` (an async
    check of the call's context, e.g. its client certificate) runs before any request is
    read or decoded."""
    kind = method.rsplit("/", 1)[-1] + " request"
    decode = _deserializer(handler.request_deserializer, kind)
    encode = handler.response_serializer

    async def prepare(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        if before is not None:
            await before(context)
        if handler.request_streaming:
            return _checked(request, context, method)
        await _refuse(context, method, request)
        return request

    behaviour: Any = (
        handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary
    )
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            async for response in behaviour(await prepare(request, context), context):
                yield response

        wrapped: Any = streaming
    else:

        async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            result = behaviour(await prepare(request, context), context)
            return await result if inspect.isawaitable(result) else result

        wrapped = call
    make = {
        (True, True): grpc.stream_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (False, False): grpc.unary_unary_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(wrapped, request_deserializer=decode, response_serializer=encode)

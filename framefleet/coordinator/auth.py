"""Who may call what. JobService calls need a client token (``authorization: Bearer``);
AgentService streams need a client certificate from the agent CA (checked in agent_service,
where the stream's peer is known); health and reflection stay open. Anything else is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

import grpc
import grpc.aio as aio

from framefleet.coordinator.decoding import guarded
from framefleet.coordinator.tokens import OPEN, Principal, TokenFile

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

# grpc's typing of metadata differs between call details and contexts; both iterate as pairs.
Metadata = Iterable[tuple[str, Any]]

JOB_SERVICE = "framefleet.v1.JobService"
AGENT_SERVICE = "framefleet.v1.AgentService"
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
        AGENT_SERVICE,
    }
)


class Authenticator:
    """Maps a call's metadata to its principal; without a token file everyone is OPEN."""

    def __init__(self, tokens: TokenFile | None) -> None:
        self.tokens = tokens

    def principal(self, metadata: Metadata | None) -> Principal | None:
        if self.tokens is None:
            return OPEN
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and token:
                    return self.tokens.lookup(token.strip())
        return None


def _refusal(handler: Handler, code: grpc.StatusCode, message: str) -> Handler:
    """A handler of the same shape as ``handler`` that refuses the call."""

    async def abort(_request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    async def abort_stream(_request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    streaming = abort_stream if handler.response_streaming else abort
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming)
    return grpc.unary_unary_rpc_method_handler(abort)


class Gate(aio.ServerInterceptor):
    """Refuses JobService calls without a known token before any handler runs, AgentService
    streams without an agent certificate (when agents need one) before their first message is
    read, and every method of a service it does not know; every handler it lets through
    answers undecodable requests as INVALID_ARGUMENT (coordinator.decoding)."""

    def __init__(self, auth: Authenticator, agent_certificates: bool = False) -> None:
        self.auth = auth
        self.agent_certificates = agent_certificates

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        service = details.method.strip("/").partition("/")[0]
        if service == AGENT_SERVICE and self.agent_certificates:
            return guarded(handler, details.method, before=require_agent_certificate)
        if service in OPEN_SERVICES:
            return guarded(handler, details.method)
        if service != JOB_SERVICE:
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, "not served")
        if self.auth.principal(details.invocation_metadata) is None:
            return _refusal(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "a valid client token is required (--token or FRAMEFLEET_TOKEN; "
                "`framefleet token add` makes one)",
            )
        return guarded(handler, details.method)


AGENT_CERTIFICATE_REQUIRED = (
    "agents connect to the agent address with a certificate from the agent CA"
)


def agent_name(context: aio.ServicerContext[Any, Any]) -> str | None:
    """The common name of the client certificate the TLS handshake verified, if any."""
    names = list((context.auth_context() or {}).get("x509_common_name") or [])
    return bytes(names[0]).decode() if names else None


async def require_agent_certificate(context: aio.ServicerContext[Any, Any]) -> None:
    if agent_name(context) is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, AGENT_CERTIFICATE_REQUIRED)

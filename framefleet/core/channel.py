"""gRPC channel and server options every side uses, and the client's secure channel."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio as aio

# gRPC messages must carry a whole template bundle.
GRPC_MESSAGE_BYTES = 64 * 1024 * 1024
GRPC_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES),
]

TLS_CA_ENV = "FRAMEFLEET_TLS_CA"
TOKEN_ENV = "FRAMEFLEET_TOKEN"


@dataclass(frozen=True)
class Tls:
    """How a client or agent reaches a TLS coordinator: the CA that signed the coordinator's
    certificate and, for agents, their own certificate and key (their identity)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    # The name the coordinator's certificate must carry, when it differs from the target's host.
    server_name: str = ""

    @classmethod
    def from_env(cls) -> Tls | None:
        ca = os.environ.get(TLS_CA_ENV)
        return cls(Path(ca)) if ca else None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a TLS certificate needs its key, and a key its certificate")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


def open_channel(target: str, tls: Tls | None = None) -> aio.Channel:
    """A channel to the coordinator: TLS when ``tls`` is given, plaintext otherwise."""
    if tls is None:
        return aio.insecure_channel(target, options=GRPC_OPTIONS)
    options = list(GRPC_OPTIONS)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return aio.secure_channel(target, tls.credentials(), options=options)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries a client token."""
    return (("authorization", f"Bearer {token}"),) if token else ()

"""The coordinator's TLS material (--tls-cert, --tls-key, and --agent-ca for the agents' port),
re-read when the files change: a renewed certificate (cert-manager, a Kubernetes Secret's
volume update, `framefleet certs` run again) is served without a restart.

gRPC asks for it on every handshake (dynamic server credentials, whose fetcher returns the new
configuration or None for no change); the HTTPS --http address loads it into its SSL context.
Files are compared by inode, modification time and size, so a check is a few stat calls; the
coordinator also checks every few seconds (for the HTTPS address between handshakes). New
material is used only once the key matches the certificate and the CA parses: a half-written or
mismatched pair keeps the previous one, with an error in the log.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

log = logging.getLogger("framefleet.coordinator")

Stamp = tuple[tuple[int, int, int], ...]


def _stamp(paths: list[Path]) -> Stamp:
    stats = [p.stat() for p in paths]
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


def _validate(cert: bytes, key: bytes, ca: bytes | None) -> None:
    """Raises ValueError unless ``key`` is the key of ``cert`` (and ``ca`` parses)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        try:
            context.load_cert_chain(cert_file, key_file)
            if ca is not None:
                context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as e:
            raise ValueError(f"unusable certificate, key or CA: {e}") from e


class CertificateFiles:
    """The current certificate, key and optional client CA, and a version that grows with each
    accepted change. Safe to call from gRPC's handshake threads and the event loop alike."""

    def __init__(self, cert: Path, key: Path, ca: Path | None = None) -> None:
        self.cert, self.key, self.ca = cert, key, ca
        self._lock = threading.Lock()
        self.version = 0
        self._stamp: Stamp = ()
        self._material: tuple[bytes, bytes, bytes | None] = (b"", b"", None)
        self._listeners: list[Callable[[], None]] = []
        if not self.refresh():
            raise ValueError(f"cannot use {cert} and {key}" + (f" with {ca}" if ca else ""))

    @property
    def paths(self) -> list[Path]:
        return [self.cert, self.key, *([self.ca] if self.ca else [])]

    def material(self) -> tuple[bytes, bytes, bytes | None]:
        with self._lock:
            return self._material

    def on_change(self, listener: Callable[[], None]) -> None:
        """Calls ``listener`` after each accepted change (from whichever thread noticed it)."""
        self._listeners.append(listener)

    def refresh(self) -> bool:
        """Re-reads the files if they changed; True when the current material is new."""
        try:
            stamp = _stamp(self.paths)
        except OSError:
            return False  # mid-swap (a Secret volume's symlink flip): keep what we have
        with self._lock:
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                cert, key = self.cert.read_bytes(), self.key.read_bytes()
                ca = self.ca.read_bytes() if self.ca else None
                _validate(cert, key, ca)
            except (OSError, ValueError) as e:
                log.error("TLS files changed but cannot be used, keeping the previous: %s", e)
                return False
            self._material = (cert, key, ca)
            self.version += 1
        if self.version > 1:
            log.info("TLS certificate reloaded", extra={"cert": str(self.cert)})
        for listener in self._listeners:
            try:
                listener()
            except (OSError, ssl.SSLError) as e:  # the files changed again meanwhile
                log.error("TLS reload: %s", e)
        return True

    def grpc_credentials(self, require_client_auth: bool = False) -> grpc.ServerCredentials:
        """Server credentials that pick up a change at the next handshake."""
        seen = self.version

        def configuration() -> grpc.ServerCertificateConfiguration:
            cert, key, ca = self.material()
            roots = ca if require_client_auth else None
            return grpc.ssl_server_certificate_configuration([(key, cert)], roots)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            nonlocal seen
            self.refresh()
            if self.version == seen:
                return None
            seen = self.version
            return configuration()

        # grpc's stubs type the fetcher without its documented None (no change).
        return grpc.dynamic_ssl_server_credentials(
            configuration(),
            fetch,  # type: ignore[arg-type]
            require_client_authentication=require_client_auth,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A server SSL context (the --http address) that follows the files."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self.on_change(lambda: context.load_cert_chain(self.cert, self.key))
        return context

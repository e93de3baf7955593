"""An HTTP proxy on loopback that sits between an S3 client and moto's server and injects
faults into chosen UploadPart calls: a 503 SlowDown error, or a connection cut without a reply.

It runs its own asyncio loop on a background thread, so synchronous fixtures, async tests and
agent processes can all use it. It also counts what passed through: UploadPart attempts per part
number, and the most UploadPart requests it saw in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit

Fault = Literal["slowdown", "drop"]

SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>"
)


@dataclass
class Rule:
    part_number: int | None  # None: any part
    fault: Fault
    remaining: int


@dataclass
class Seen:
    """One request as the proxy saw it."""

    at: float  # time.monotonic() when the request's head arrived
    method: str
    path: str
    query: dict[str, list[str]]
    fault: Fault | None

    @property
    def part_number(self) -> int | None:
        """The part number of an UploadPart request, else None."""
        if self.method == "PUT" and "partNumber" in self.query and "uploadId" in self.query:
            return int(self.query["partNumber"][0])
        return None


@dataclass
class _Request:
    method: str
    target: str
    head: bytes  # request line and headers as forwarded (Expect removed)
    body: bytes  # raw body bytes as received (chunked framing kept)
    keep_alive: bool
    started: float  # when its head arrived


@dataclass
class FaultProxy:
    upstream_host: str
    upstream_port: int
    host: str = "127.0.0.1"
    port: int = 0
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    parts_in_flight: int = 0
    max_parts_in_flight: int = 0
    # Seconds each UploadPart is held before it is forwarded: a slow link, so parts pile up.
    part_delay: float = 0.0
    # Emulates one shared uplink of this many bytes per second (0: loopback speed): a request
    # body is forwarded once the link would have carried it, after the bodies queued before it.
    link_bytes_per_s: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._link_free_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    # --- control (any thread) --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_part(self, part_number: int | None, fault: Fault, times: int = 1) -> None:
        """The next ``times`` UploadPart attempts of ``part_number`` (None: any) get ``fault``."""
        with self._lock:
            self.rules.append(Rule(part_number, fault, times))

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.seen.clear()
            self.max_parts_in_flight = self.parts_in_flight
            self.part_delay = 0.0

    def part_attempts(self) -> Counter[int]:
        """UploadPart requests received, faulted or not, by part number."""
        with self._lock:
            return Counter(s.part_number for s in self.seen if s.part_number is not None)

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:
                failure.append(e)
                started.set()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="s3-fault-proxy", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or self._thread is None:
            return

        async def shutdown() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the proxy (its own loop) ----------------------------------------------------------

    def _record(self, request: _Request) -> tuple[Seen, Fault | None]:
        parts = urlsplit(request.target)
        seen = Seen(
            request.started,
            request.method,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            None,
        )
        with self._lock:
            number = seen.part_number
            if number is not None:
                for rule in self.rules:
                    if rule.remaining > 0 and rule.part_number in (None, number):
                        rule.remaining -= 1
                        seen.fault = rule.fault
                        break
            self.seen.append(seen)
        return seen, seen.fault

    def _in_flight(self, delta: int) -> None:
        with self._lock:
            self.parts_in_flight += delta
            self.max_parts_in_flight = max(self.max_parts_in_flight, self.parts_in_flight)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader, writer)
                if request is None:
                    return
                seen, fault = self._record(request)
                if fault == "drop":
                    # Cut the connection without a reply, as a dropped link or a dying LB would.
                    writer.transport.abort()
                    return
                if fault == "slowdown":
                    writer.write(_slowdown_response())
                    await writer.drain()
                    continue
                is_part = seen.part_number is not None
                if is_part:
                    self._in_flight(+1)
                try:
                    if is_part and self.part_delay:
                        await asyncio.sleep(self.part_delay)
                    await self._through_link(len(request.body))
                    response, keep_alive = await self._forward(request)
                finally:
                    if is_part:
                        self._in_flight(-1)
                writer.write(response)
                await writer.drain()
                if not (keep_alive and request.keep_alive):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _through_link(self, size: int) -> None:
        if not self.link_bytes_per_s or not size:
            return
        with self._lock:
            now = time.monotonic()
            self._link_free_at = max(now, self._link_free_at) + size / self.link_bytes_per_s
            wait = self._link_free_at - now
        await asyncio.sleep(wait)

    async def _forward(self, request: _Request) -> tuple[bytes, bool]:
        """Sends the request upstream on a fresh connection and returns the whole response,
        rewritten to say whether the client's connection can stay open."""
        reader, writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            writer.write(request.head + request.body)
            await writer.drain()
            raw = await reader.read()  # the upstream request says Connection: close
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = [h for h in lines[1:] if not h.lower().startswith(b"connection:")]
        names = {h.split(b":", 1)[0].strip().lower() for h in headers}
        framed = b"content-length" in names or b"transfer-encoding" in names
        status = lines[0].split(b" ", 2)
        no_body = request.method == "HEAD" or (len(status) > 1 and status[1] in (b"204", b"304"))
        keep_alive = framed or no_body
        headers.append(b"Connection: keep-alive" if keep_alive else b"Connection: close")
        return b"\r\n".join([lines[0], *headers]) + b"\r\n\r\n" + body, keep_alive


def _slowdown_response() -> bytes:
    return (
        b"HTTP/1.1 503 Slow Down\r\n"
        b"Content-Type: application/xml\r\n"
        b"Content-Length: " + str(len(SLOWDOWN_BODY)).encode() + b"\r\n"
        b"Connection: keep-alive\r\n\r\n" + SLOWDOWN_BODY
    )


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> _Request | None:
    """Reads one HTTP/1.1 request; None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    started = time.monotonic()
    lines = head[:-4].split(b"\r\n")
    method, target, version = lines[0].decode("latin-1").split(" ", 2)
    headers: list[bytes] = []
    length, chunked, expect, keep_alive = 0, False, False, version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key, value = name.strip().lower(), value.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif key == b"expect" and value == b"100-continue":
            expect = True
            continue  # the proxy answers it; upstream gets the whole body at once
        elif key == b"connection":
            keep_alive = value != b"close"
            continue
        headers.append(line)
    headers.append(b"Connection: close")
    if expect:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if chunked:
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                # Trailers, then the blank line.
                while True:
                    trailer = await reader.readuntil(b"\r\n")
                    body += trailer
                    if trailer == b"\r\n":
                        break
                break
            body += await reader.readexactly(size + 2)
        data = bytes(body)
    else:
        data = await reader.readexactly(length)
    forwarded = b"\r\n".join([lines[0], *headers]) + b"\r\n\r\n"
    return _Request(method, target, forwarded, data, keep_alive, started)


def main() -> None:
    """Runs the proxy in its own process (benchmarks): prints its URL, serves until killed."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="S3 fault proxy (and link emulator)")
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--link-mbps", type=float, default=0.0, help="uplink, Mbit/s (0: none)")
    args = parser.parse_args()
    proxy = FaultProxy("127.0.0.1", args.upstream_port, link_bytes_per_s=args.link_mbps * 125_000)
    proxy.start()
    print(proxy.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    proxy.stop()


if __name__ == "__main__":
    main()

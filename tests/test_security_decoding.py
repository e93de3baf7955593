"""Bytes that do not decode as the request (issue 26): a real coordinator with TLS, tokens and
agent certificates answers INVALID_ARGUMENT with a short reason, logs one warning per host a
minute and no traceback, and refuses an AgentService stream without a certificate before it
reads anything."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from framefleet.coordinator import decoding
from tests.farm_processes import FarmProcesses

JOB_SERVICE = "/framefleet.v1.JobService/"
CONNECT = "/framefleet.v1.AgentService/Connect"


def _nested_struct(depth: int) -> bytes:
    """A google.protobuf.Struct nested ``depth`` levels, by hand: past protobuf's limit it
    does not decode."""
    struct = b""
    for _ in range(depth):
        value = b"\x2a" + _len(struct)  # Value.struct_value
        entry = b"\x0a\x01a" + b"\x12" + _len(value)  # fields {"a": value}
        struct = b"\x0a" + _len(entry)
    return struct


def _len(data: bytes) -> bytes:
    n, out = len(data), b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out + data


GARBAGE = [
    b"\xff\xff\xff\xff",  # no such field, a varint that never ends
    b"\x0a\x02\xff\xfe",  # job_id = bytes that are not UTF-8
    b"\x0a\x10abc",  # a length past the end
    # SubmitJobRequest.spec (1) -> JobSpec.params (Struct) nested 200 deep
    b"\x0a" + _len(b"\x1a" + _len(_nested_struct(200))),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmProcesses]:
    root = tmp_path_factory.mktemp("decoding")
    farm = FarmProcesses(root)
    try:
        farm.start_coordinator(f"sqlite:///{root}/jobs.db", root / "out")
        yield farm
    finally:
        farm.close()


def _channel(farm: FarmProcesses, address: str, agent: bool = False) -> grpc.Channel:
    assert farm.trust is not None
    chain: tuple[bytes, bytes] | tuple[None, None] = (None, None)
    if agent:
        cert, key = farm.trust.agent_cert("agent-x")
        chain = (key.read_bytes(), cert.read_bytes())
    credentials = grpc.ssl_channel_credentials(farm.trust.ca.read_bytes(), *chain)
    return grpc.secure_channel(address, credentials)


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    return error.code()


@pytest.mark.e2e
def test_undecodable_requests_are_invalid_argument_and_logged_once(secured: FarmProcesses) -> None:
    assert secured.trust is not None
    metadata = (("authorization", f"Bearer {secured.trust.token}"),)
    with _channel(secured, secured.address) as channel:
        for method in ("GetJob", "SubmitJob", "CancelJob"):
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                JOB_SERVICE + method
            )
            for garbage in GARBAGE:
                with pytest.raises(grpc.RpcError) as refused:
                    call(garbage, metadata=metadata, timeout=10)
                assert _code(refused.value) == grpc.StatusCode.INVALID_ARGUMENT, garbage
                details = refused.value.details() or ""
                assert details.startswith(f"the request is not a valid {method} request")
                assert len(details) < 120
        # Streamed requests and streamed answers too.
        batch: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
            JOB_SERVICE + "SubmitBatch"
        )
        watch: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
            JOB_SERVICE + "WatchJob"
        )
        for attempt in (
            lambda: batch(iter([GARBAGE[0]]), metadata=metadata, timeout=10),
            lambda: list(watch(GARBAGE[1], metadata=metadata, timeout=10)),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                attempt()
            assert _code(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    # The agent port, with an agent certificate: garbage in the stream is refused too.
    with _channel(secured, secured.agent_address, agent=True) as channel:
        connect: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(CONNECT)
        with pytest.raises(grpc.RpcError) as refused:
            list(connect(iter([GARBAGE[1]]), timeout=10))
        assert _code(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    log = (secured.root / "logs" / "coordinator.log").read_text()
    assert log.count("undecodable request refused") == 1, log[-3000:]
    assert "Traceback" not in log and "Unexpected DecodeError" not in log, log[-3000:]


@pytest.mark.e2e
def test_connect_without_a_certificate_is_refused_before_reading(secured: FarmProcesses) -> None:
    """On the client port anyone can open a stream: it is refused as UNAUTHENTICATED without
    its bytes being decoded (garbage gets the same answer as a Hello)."""
    with _channel(secured, secured.address) as channel:
        connect: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(CONNECT)
        for garbage in GARBAGE:
            with pytest.raises(grpc.RpcError) as refused:
                list(connect(iter([garbage]), timeout=10))
            assert _code(refused.value) == grpc.StatusCode.UNAUTHENTICATED


def test_one_warning_a_minute_per_host(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    decoding._last_warning.clear()
    with caplog.at_level(logging.WARNING, "framefleet.coordinator"):
        logged = [
            decoding.note(f"ipv4:10.0.0.5:{port}", "/m", "bad", clock=lambda: now[0])
            for port in range(4000, 4010)
        ]
        assert logged == [True] + [False] * 9  # new connections are the same host
        assert decoding.note("ipv4:10.0.0.6:1", "/m", "bad", clock=lambda: now[0])
        now[0] += decoding.LOG_EVERY
        assert decoding.note("ipv4:10.0.0.5:4000", "/m", "bad", clock=lambda: now[0])
    assert len(caplog.records) == 3 and all(r.exc_info is None for r in caplog.records)


def test_a_nested_struct_past_the_limit_does_not_decode() -> None:
    """The hand-made fixture is what it says: valid shallow, undecodable deep."""
    from google.protobuf import struct_pb2
    from google.protobuf.message import DecodeError

    struct_pb2.Struct.FromString(_nested_struct(10))
    with pytest.raises(DecodeError):
        struct_pb2.Struct.FromString(_nested_struct(200))

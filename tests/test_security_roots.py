"""Issue 26's two escapes, replayed by a fake coordinator against a real agent process with
``--output-root``, over plaintext and over mutual TLS (a compromised coordinator has the right
certificate): both are refused as OUTPUT_ERROR, nothing outside the root is written, read or
deleted, and the agent renders the next job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio as aio
import pytest

from framefleet.core.jobspec import template_job
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc
from tests.farm_processes import FarmProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TEMPLATE = Path(__file__).parent / "templates" / "solid.html"
ANSWER_TIMEOUT = 120


def small_job() -> pb.JobSpec:
    return template_job(str(TEMPLATE), {}, width=64, height=64, fps=10, frames=3)


class ScriptedCoordinator(pb_grpc.AgentServiceServicer):  # type: ignore[misc]
    """Welcomes one agent, then sends whatever the test queues and hands back its answers
    (acknowledging each, as a coordinator would)."""

    def __init__(self) -> None:
        self.outgoing: asyncio.Queue[pb.ConnectResponse] = asyncio.Queue()
        self.answers: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()

    async def Connect(
        self, requests: AsyncIterator[pb.ConnectRequest], context: object
    ) -> AsyncIterator[pb.ConnectResponse]:
        hello = await anext(aiter(requests))
        assert hello.HasField("hello")
        yield pb.ConnectResponse(
            welcome=pb.Welcome(heartbeat_interval_ms=1000, lease_ttl_ms=20000, session_epoch=1)
        )
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                yield await self.outgoing.get()
        finally:
            reader.cancel()

    async def _read(self, requests: AsyncIterator[pb.ConnectRequest]) -> None:
        async for request in requests:
            inner = request.bundle.messages if request.HasField("bundle") else [request]
            for message in inner:
                kind = message.WhichOneof("message")
                if kind in ("failed", "completed"):
                    await self.answers.put(message)
                    lease = getattr(message, kind).lease
                    await self.outgoing.put(pb.ConnectResponse(ack=pb.Ack(lease=lease)))

    async def send(self, assign: pb.Assign) -> pb.ConnectRequest:
        """Sends ``assign`` and returns the agent's answer about that job."""
        await self.outgoing.put(pb.ConnectResponse(assign=assign))
        while True:
            answer = await asyncio.wait_for(self.answers.get(), ANSWER_TIMEOUT)
            outcome = getattr(answer, answer.WhichOneof("message"))
            if outcome.lease.job_id == assign.lease.job_id:
                return answer


def _assign(job_id: str, output_url: str, token: int, **extra: object) -> pb.Assign:
    return pb.Assign(
        lease=pb.LeaseRef(job_id=job_id, fencing_token=token),
        attempt=1,
        spec=small_job(),
        source_key="s",
        output_url=output_url,
        **extra,  # type: ignore[arg-type]
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.asynccontextmanager
async def _serve(fake: ScriptedCoordinator, farm: FarmProcesses) -> AsyncIterator[str]:
    server = aio.server()
    pb_grpc.add_AgentServiceServicer_to_server(fake, server)
    if farm.trust is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:  # the coordinator's own certificate: as a compromised coordinator would have it
        trust = farm.trust.root
        credentials = grpc.ssl_server_credentials(
            [((trust / "coordinator.key").read_bytes(), (trust / "coordinator.pem").read_bytes())],
            root_certificates=farm.trust.ca.read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "mtls"])
async def test_neither_escape_leaves_the_output_root(tmp_path: Path, secure: bool) -> None:
    root, outside = tmp_path / "out", tmp_path / "outside"
    (root / "x.").mkdir(parents=True)  # as a first, harmless Assign to ROOT/x./y.mp4 makes it
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious\n")
    (root / "link").symlink_to(outside)
    before = _snapshot(outside)
    fake = ScriptedCoordinator()
    farm = FarmProcesses(tmp_path / "farm", secure=secure)
    try:
        async with _serve(fake, farm) as address:
            farm.agent_address = address
            farm.start_agent("aimed", "--slots", "1", "--output-root", str(root))
            base = root.as_uri()
            # 1. An assembly whose job id walks out of the root, its '#' hiding the suffix.
            job_id = "/../../outside/victim.txt#"
            steal = _assign(
                job_id,
                f"{base}/x",
                1,
                chunk_urls=[f"{base}/x./../../outside/victim.txt#.chunk000"],
            )
            # 2. A render through ROOT/link -> OUTSIDE, its name percent-encoded.
            through = _assign("escape-2", f"{base}/lin%6B/y.mp4", 2)
            for assign in (steal, through):
                answer = await fake.send(assign)
                assert answer.WhichOneof("message") == "failed", answer
                assert answer.failed.error_class == "OUTPUT_ERROR", answer
            assert _snapshot(outside) == before
            assert not (root / "x").exists()
            # The agent goes on serving: the next job renders inside the root.
            good = await fake.send(_assign("good-1", f"{base}/ok/z.mp4", 3))
            assert good.WhichOneof("message") == "completed", farm.logs()
            assert (root / "ok" / "z.mp4").stat().st_size > 0
            assert _snapshot(outside) == before
            assert victim.read_text() == "precious\n"
    finally:
        farm.close()

"""The network attacks of issue 11, replayed against a coordinator with TLS, client tokens and
agent certificates, and real agent processes: each one fails safe.

Attacks on the job's page (popups, WebRTC, symlinks, memory) live in their own suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio as aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framefleet.client import AsyncClient
from framefleet.core.channel import Tls, bearer, open_channel
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import template_job
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc
from tests.farm_processes import FarmProcesses, Trust, framefleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TEMPLATE = Path(__file__).parent / "templates" / "solid.html"


def small_job(**params: object) -> pb.JobSpec:
    return template_job(str(TEMPLATE), dict(params), width=64, height=64, fps=10, frames=3)


@pytest.fixture(scope="module")
def trusted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmProcesses]:
    """A secure coordinator (TLS, tokens, agent CA) and one real agent with a certificate."""
    root = tmp_path_factory.mktemp("trusted")
    farm = FarmProcesses(root)
    try:
        farm.start_coordinator(
            f"sqlite:///{root}/jobs.db",
            root / "out",
            "--max-slots-per-agent",
            "2",
            "--lease-ttl",
            "6",
            "--heartbeat-interval",
            "1",
        )
        farm.start_agent("agent-1", "--slots", "1", "--ready-timeout", "10")
        yield farm
    finally:
        farm.close()


def _trust(farm: FarmProcesses) -> Trust:
    assert farm.trust is not None
    return farm.trust


async def _stub(farm: FarmProcesses, token: str = "") -> tuple[aio.Channel, pb_grpc.JobServiceStub]:
    channel = open_channel(farm.address, Tls(_trust(farm).ca))
    return channel, pb_grpc.JobServiceStub(channel)


# --- clients -------------------------------------------------------------------------------


async def test_anonymous_and_forged_tokens_are_refused(trusted: FarmProcesses) -> None:
    channel, stub = await _stub(trusted)
    async with channel:
        calls: dict[str, Callable[[Any], Awaitable[object]]] = {
            "ListJobs": lambda md: stub.ListJobs(pb.ListJobsRequest(), metadata=md),
            "GetJob": lambda md: stub.GetJob(pb.GetJobRequest(job_id="x"), metadata=md),
            "CancelJob": lambda md: stub.CancelJob(pb.CancelJobRequest(job_id="x"), metadata=md),
            "SubmitJob": lambda md: stub.SubmitJob(
                pb.SubmitJobRequest(spec=small_job()), metadata=md
            ),
        }
        for name, call in calls.items():
            for metadata in ((), bearer("fft_guessed"), (("authorization", "Basic x"),)):
                with pytest.raises(aio.AioRpcError) as refused:
                    await call(metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        watch = stub.WatchJob(pb.WatchJobRequest(job_id="x"))
        with pytest.raises(aio.AioRpcError) as refused:
            await watch.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Health stays open (load balancers, probes).
        health: Any = health_pb2_grpc.HealthStub(channel)  # typeshed leaves the methods out
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_plaintext_and_untrusted_servers_get_nothing(
    trusted: FarmProcesses, tmp_path: Path
) -> None:
    async with aio.insecure_channel(trusted.address) as channel:
        with pytest.raises(aio.AioRpcError) as refused:
            await pb_grpc.JobServiceStub(channel).ListJobs(
                pb.ListJobsRequest(), metadata=bearer(_trust(trusted).token), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA does not hand its token to this server.
    stranger = Trust(tmp_path / "stranger")
    async with AsyncClient(trusted.address, Tls(stranger.ca), stranger.token) as client:
        with pytest.raises(aio.AioRpcError) as refused:
            await client.list()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_token_added_while_running_works_at_once(trusted: FarmProcesses) -> None:
    token = _trust(trusted).add_token("latecomer", "submit")
    async with AsyncClient(trusted.address, Tls(_trust(trusted).ca), token) as client:
        job = await client.wait((await client.submit(small_job(who="late"))).id)
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.output_bytes > 0


def test_cli_over_tls_with_a_token(trusted: FarmProcesses) -> None:
    """The CLI as a user runs it, --tls-ca and --token from the environment the test farm sets."""
    result = subprocess.run(
        framefleet(
            "submit",
            "--coordinator",
            trusted.address,
            str(TEMPLATE),
            "--wait",
            "--width",
            "64",
            "--height",
            "64",
            "--fps",
            "10",
            "--frames",
            "3",
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stderr}\n{trusted.logs()}"
    env = {**os.environ, "FRAMEFLEET_TOKEN": "fft_wrong"}
    result = subprocess.run(
        framefleet("status", "--coordinator", trusted.address),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0 and "UNAUTHENTICATED" in result.stderr, result.stderr


# --- agents --------------------------------------------------------------------------------


async def _hello(
    farm: FarmProcesses, tls: Tls | None, address: str, agent_id: str, slots: int = 1
) -> tuple[aio.Channel, aio.StreamStreamCall[pb.ConnectRequest, pb.ConnectResponse]]:
    channel = open_channel(address, tls)
    call = pb_grpc.AgentServiceStub(channel).Connect()
    await call.write(pb.ConnectRequest(hello=pb.Hello(agent_id=agent_id, slots=slots)))
    return channel, call


async def test_a_process_without_an_agent_certificate_gets_no_work(
    trusted: FarmProcesses, tmp_path: Path
) -> None:
    trust = _trust(trusted)
    async with AsyncClient(trusted.address) as client:
        queued = await client.submit(small_job(secret="for agents only"))
    # On the client address, over TLS but with no client certificate: no identity, no Hello.
    # The stream is refused before anything is read, so sending the Hello may already fail;
    # when the refusal overtakes it on the wire, gRPC reports the failed send as INTERNAL.
    channel = open_channel(trusted.address, Tls(trust.ca))
    async with channel:
        call = pb_grpc.AgentServiceStub(channel).Connect()
        sent = True
        try:
            await call.write(pb.ConnectRequest(hello=pb.Hello(agent_id="agent-9", slots=1)))
        except aio.AioRpcError:
            sent = False
        code = await call.code()
        assert code == grpc.StatusCode.UNAUTHENTICATED or (
            not sent and code == grpc.StatusCode.INTERNAL
        ), code
    # On the agent address, a certificate from another CA fails the handshake.
    stranger = Trust(tmp_path / "stranger")
    cert, key = stranger.agent_cert("agent-9")
    channel = open_channel(trusted.agent_address, Tls(trust.ca, cert, key))
    async with channel:
        with pytest.raises(aio.AioRpcError) as refused:
            call = pb_grpc.AgentServiceStub(channel).Connect()
            await call.write(pb.ConnectRequest(hello=pb.Hello(slots=1)))
            await call.read()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with AsyncClient(trusted.address) as client:
        job = await client.wait(queued.id)
    assert job.state == pb.JOB_STATE_SUCCEEDED  # rendered by the real agent


async def test_a_certificate_cannot_claim_another_agents_id(trusted: FarmProcesses) -> None:
    trust = _trust(trusted)
    cert, key = trust.agent_cert("intruder")
    tls = Tls(trust.ca, cert, key)
    channel, call = await _hello(trusted, tls, trusted.agent_address, "agent-1")
    async with channel:
        with pytest.raises(aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "intruder" in (refused.value.details() or "")
    # The real agent-1 kept its stream: it still renders.
    async with AsyncClient(trusted.address) as client:
        job = await client.wait((await client.submit(small_job(after="intruder"))).id)
    assert job.state == pb.JOB_STATE_SUCCEEDED


async def test_a_huge_slot_count_is_capped(trusted: FarmProcesses) -> None:
    """Hello with slots = 2^32-1 gets --max-slots-per-agent (2) leases, not the queue."""
    trust = _trust(trusted)
    cert, key = trust.agent_cert("greedy")
    async with AsyncClient(trusted.address) as client:
        jobs = [await client.submit(small_job(n=n, greedy=True)) for n in range(6)]
        channel, call = await _hello(
            trusted, Tls(trust.ca, cert, key), trusted.agent_address, "", slots=2**32 - 1
        )
        async with channel:
            assigned: set[str] = set()
            welcome = await call.read()
            assert isinstance(welcome, pb.ConnectResponse) and welcome.HasField("welcome")

            async def collect() -> None:
                while True:
                    message = await call.read()
                    if not isinstance(message, pb.ConnectResponse):
                        return
                    inner = (
                        message.bundle.messages
                        if message.WhichOneof("message") == "bundle"
                        else [message]
                    )
                    assigned.update(m.assign.lease.job_id for m in inner if m.HasField("assign"))

            reader = asyncio.create_task(collect())
            # The real agent renders what greedy does not hold; once every job is either done
            # or held by greedy, greedy's share is what it was given.
            ids = {job.id for job in jobs}
            while True:
                done = {j.id for j in await client.list([pb.JOB_STATE_SUCCEEDED], 1000)}
                if len(ids & done) + len(assigned & ids) == len(ids):
                    break
                await asyncio.sleep(0.2)
            assert 0 < len(assigned & ids) <= 2, assigned
            reader.cancel()
        # Greedy's stream is gone; its leases are recovered and everything still renders.
        for job in jobs:
            final = await client.wait(job.id)
            assert final.state == pb.JOB_STATE_SUCCEEDED


def test_exposed_listen_refuses_without_trust(tmp_path: Path) -> None:
    command = framefleet(
        "coordinator", "--listen", "0.0.0.0:0", "--store", f"sqlite:///{tmp_path}/j.db"
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no TLS" in result.stderr and "no client tokens" in result.stderr, result.stderr
    process = subprocess.Popen(
        [*command, "--insecure"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert "listening on" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert "WARNING: --insecure" in stderr


# --- tenants -------------------------------------------------------------------------------


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def test_tenants_see_and_cancel_only_their_own(trusted: FarmProcesses) -> None:
    """The anonymous ListJobs/CancelJob of the issue, now with a token of another tenant."""
    trust = _trust(trusted)
    ca = Tls(trust.ca)
    acme = AsyncClient(trusted.address, ca, trust.add_token("acme", "submit"))
    bolt = AsyncClient(trusted.address, ca, trust.add_token("bolt", "submit"))
    acme_reader = AsyncClient(trusted.address, ca, trust.add_token("acme", "read"))
    admin = AsyncClient(trusted.address, ca, trust.token)
    async with acme, bolt, acme_reader, admin:
        job = await acme.submit(small_job(customer="ada@example.com"))
        batch = await acme.submit_batch(small_job(), [("r1", {"n": 1}), ("r2", {"n": 2})])

        # Another tenant: not found, exactly like an id that does not exist.
        for probe in (job.id, "0" * 32):
            assert await _code(bolt.get(probe)) == grpc.StatusCode.NOT_FOUND
            assert await _code(bolt.cancel(probe)) == grpc.StatusCode.NOT_FOUND
            assert await _code(anext(aiter(bolt.watch(probe)))) == grpc.StatusCode.NOT_FOUND
        assert await _code(bolt.get_batch(batch.id)) == grpc.StatusCode.NOT_FOUND
        assert await _code(bolt.cancel_batch(batch.id)) == grpc.StatusCode.NOT_FOUND
        assert job.id not in {j.id for j in await bolt.list()}
        assert not {j.batch_id for j in await bolt.list()} & {batch.id}

        # The same tenant with a read token: reads, never writes.
        assert (await acme_reader.get(job.id)).spec.params["customer"] == "ada@example.com"
        assert job.id in {j.id for j in await acme_reader.list()}
        assert await _code(acme_reader.cancel(job.id)) == grpc.StatusCode.PERMISSION_DENIED
        assert await _code(acme_reader.submit(small_job())) == grpc.StatusCode.PERMISSION_DENIED

        # An admin sees every tenant's, and may cancel.
        assert job.id in {j.id for j in await admin.list([], 1000)}
        assert (await admin.cancel_batch(batch.id)).id == batch.id
        final = await acme.get(job.id)
        assert final.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_LEASED, pb.JOB_STATE_QUEUED)


# --- forged results ------------------------------------------------------------------------


def _is_welcome(message: object) -> bool:
    return isinstance(message, pb.ConnectResponse) and message.HasField("welcome")


def _file_size(url: str) -> int | None:
    path = Path(url.removeprefix("file://"))
    return path.stat().st_size if path.exists() else None


async def _next_assign(
    call: aio.StreamStreamCall[pb.ConnectRequest, pb.ConnectResponse],
) -> pb.Assign:
    while True:
        message = await call.read()
        assert isinstance(message, pb.ConnectResponse), "stream ended before an Assign"
        inner = message.bundle.messages if message.HasField("bundle") else [message]
        for m in inner:
            if m.HasField("assign"):
                return m.assign


async def test_a_forged_completion_neither_moves_the_output_nor_poisons_the_cache(
    tmp_path: Path,
) -> None:
    """An agent (with a valid certificate) reports Completed for its lease, with an output URL
    of its choosing and a size, but renders nothing: the job keeps the coordinator's URL, and
    a resubmit is not served from the cache because the object is not there; it renders."""
    farm = FarmProcesses(tmp_path)
    try:
        farm.start_coordinator(f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out")
        trust = _trust(farm)
        cert, key = trust.agent_cert("liar")
        channel, call = await _hello(farm, Tls(trust.ca, cert, key), farm.agent_address, "")
        async with channel, AsyncClient(farm.address) as client:
            job = await client.submit(small_job(victim=True))
            assign = await _next_assign(call)
            assert assign.lease.job_id == job.id
            forged = pb.Completed(
                lease=assign.lease, output_url="file:///tmp/elsewhere.mp4", output_bytes=4242
            )
            await call.write(pb.ConnectRequest(completed=forged))
            done = await client.wait(job.id)
            out = (tmp_path / "out").as_uri()
            assert done.output_url.startswith(out) and done.output_bytes == 4242
            assert _file_size(done.output_url) is None  # the liar wrote nothing

            again = await client.submit(small_job(victim=True))
            assert not again.cache_hit and again.state == pb.JOB_STATE_QUEUED
            call.cancel()
        farm.start_agent("honest", "--slots", "1", "--ready-timeout", "10")
        async with AsyncClient(farm.address) as client:
            rendered = await client.wait(again.id)
        assert rendered.output_url == done.output_url and not rendered.cache_hit
        assert _file_size(rendered.output_url) == rendered.output_bytes > 0
    finally:
        farm.close()


class FakeCoordinator(pb_grpc.AgentServiceServicer):  # type: ignore[misc]
    """Something posing as a coordinator: it welcomes an agent and aims its first job at a file
    of its choosing, then records what the agent answers."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.answers: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()

    async def Connect(
        self, requests: AsyncIterator[pb.ConnectRequest], context: object
    ) -> AsyncIterator[pb.ConnectResponse]:
        hello = await anext(aiter(requests))
        assert hello.HasField("hello")
        yield pb.ConnectResponse(
            welcome=pb.Welcome(heartbeat_interval_ms=1000, lease_ttl_ms=20000, session_epoch=1)
        )
        yield pb.ConnectResponse(
            assign=pb.Assign(
                lease=pb.LeaseRef(job_id="bait", fencing_token=1),
                attempt=1,
                spec=small_job(),
                source_key="s",
                output_url=self.target,
            )
        )
        async for request in requests:
            inner = request.bundle.messages if request.HasField("bundle") else [request]
            for message in inner:
                if message.WhichOneof("message") in ("failed", "completed"):
                    await self.answers.put(message)


async def test_a_fake_coordinator_cannot_aim_an_agent_at_a_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    fake = FakeCoordinator(victim.as_uri())
    server = aio.server()
    pb_grpc.add_AgentServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    farm = FarmProcesses(tmp_path / "farm", secure=False)
    try:
        farm.agent_address = f"127.0.0.1:{port}"
        farm.start_agent("aimed", "--slots", "1", "--output-root", str(tmp_path / "out"))
        answer = await asyncio.wait_for(fake.answers.get(), 120)
        assert answer.WhichOneof("message") == "failed", answer
        assert answer.failed.error_class == "OUTPUT_ERROR"
        assert "--output-root" in answer.failed.message
        assert victim.read_text() == "precious\n"
    finally:
        farm.close()
        await server.stop(0)


@pytest.mark.parametrize(
    "destination", ["~/videos", "../../tmp/x", "/etc", "s3://someone-elses-bucket/x"]
)
async def test_destinations_outside_the_allowed_roots_are_refused_at_submit(
    trusted: FarmProcesses, destination: str
) -> None:
    spec = small_job()
    spec.destination = destination
    async with AsyncClient(trusted.address) as client:
        with pytest.raises(FramefleetError) as refused:
            await client.submit(spec)
    assert refused.value.error_class == ErrorClass.INVALID_JOB
    # The operator's allowed outputs are its configuration: a refusal does not list them.
    told = str(refused.value).replace(destination, "")  # it may repeat what was asked
    assert str(trusted.root) not in told and "/tmp" not in told, told


@pytest.mark.parametrize("key", ["../../etc/passwd", "a/b", "x\\y", "..", "bell\x07", "k" * 129])
async def test_row_keys_that_could_name_a_path_are_refused(
    trusted: FarmProcesses, key: str
) -> None:
    async with AsyncClient(trusted.address) as client:
        with pytest.raises(FramefleetError) as refused:
            await client.submit_batch(small_job(), [("fine", {"n": 1}), (key, {"n": 2})])
    assert refused.value.error_class == ErrorClass.INVALID_JOB


# --- limits --------------------------------------------------------------------------------


def _spec_with(**changes: object) -> pb.JobSpec:
    spec = small_job()
    for name, value in changes.items():
        if name == "labels":
            spec.labels.update(value)  # type: ignore[call-overload]
        elif name == "params":
            spec.params.update(value)  # type: ignore[arg-type]
        else:
            setattr(spec, name, value)
    return spec


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"params": {"blob": "x" * 70_000}}, "parameters are"),
        ({"params": {"deep": _nested(40)}}, "nested more than"),
        ({"labels": {f"k{n}": "v" for n in range(40)}}, "labels"),
        ({"labels": {"k": "v" * 300}}, "label"),
        ({"priority": 2**31 - 1}, "priority"),
        ({"max_attempts": 2**32 - 1}, "max_attempts"),
    ],
)
async def test_oversized_input_is_refused_by_name_at_the_coordinator(
    trusted: FarmProcesses, changes: dict[str, object], named: str
) -> None:
    """Sent straight over gRPC (no SDK-side checks): INVALID_ARGUMENT naming the limit."""
    channel, stub = await _stub(trusted)
    async with channel:
        request = pb.SubmitJobRequest(spec=_spec_with(**changes))
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.SubmitJob(request, metadata=bearer(_trust(trusted).token))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "INVALID_JOB" in (refused.value.details() or "")
    assert named in (refused.value.details() or "")


@pytest.mark.parametrize(
    "args",
    [
        ["--width", "-2"],
        ["--fps", str(2**32)],
        ["--priority", str(2**32)],
        ["--param", "x=" + "[" * 5000 + "]" * 5000],
    ],
)
def test_bad_numbers_and_nesting_exit_2_without_a_traceback(args: list[str]) -> None:
    result = subprocess.run(
        framefleet("submit", str(TEMPLATE), "--coordinator", "127.0.0.1:1", *args),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "INVALID_JOB" in result.stderr and "Traceback" not in result.stderr


def test_non_utf8_parameters_and_documents_exit_2(tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    params.write_bytes(b'{"name": "\xff\xfe"}')
    document = tmp_path / "doc.json"
    document.write_bytes(b'{"width": 64, "name": "\xff"}')
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}")
    for args in (
        [str(TEMPLATE), "--params", str(params)],
        [str(document)],
        [str(deep)],
    ):
        result = subprocess.run(
            framefleet("submit", *args, "--coordinator", "127.0.0.1:1"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "INVALID_JOB" in result.stderr and "Traceback" not in result.stderr


# --- idempotent submits, pages, quotas -----------------------------------------------------


async def test_a_retried_submit_returns_the_first_job_or_batch(trusted: FarmProcesses) -> None:
    trust = _trust(trusted)
    bolt_token = trust.add_token("bolt-retry", "submit")
    async with (
        AsyncClient(trusted.address) as client,
        AsyncClient(trusted.address, Tls(trust.ca), bolt_token) as bolt,
    ):
        first = await client.submit(small_job(retry=1), request_id="retry-1")
        again = await client.submit(small_job(retry=1), request_id="retry-1")
        assert again.id == first.id
        assert (await client.submit(small_job(retry=1))).id != first.id  # a new id each call
        # Request ids are per tenant: another tenant's same id is its own job.
        assert (await bolt.submit(small_job(retry=1), request_id="retry-1")).id != first.id

        rows = [("a", {"n": 1}), ("b", {"n": 2})]
        batch = await client.submit_batch(small_job(), rows, "retry", request_id="batch-1")
        retried = await client.submit_batch(small_job(), rows, "retry", request_id="batch-1")
        assert retried.id == batch.id and retried.total == 2
        rows_of_batch = [j for j in await client.list([], 1000) if j.batch_id == batch.id]
        assert len(rows_of_batch) == 2


async def test_list_jobs_pages_and_caps_its_page_size(trusted: FarmProcesses) -> None:
    channel, stub = await _stub(trusted)
    metadata = bearer(_trust(trusted).token)
    async with channel, AsyncClient(trusted.address) as client:
        for n in range(5):
            await client.submit(small_job(page=n))
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.ListJobs(pb.ListJobsRequest(limit=5000), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 1000" in (refused.value.details() or "")
        seen: list[str] = []
        token = ""
        while True:
            page = await stub.ListJobs(
                pb.ListJobsRequest(limit=2, page_token=token), metadata=metadata
            )
            seen += [j.id for j in page.jobs]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) == len(await client.list([], 10_000))


async def test_a_tenant_cannot_queue_past_its_cap(tmp_path: Path) -> None:
    farm = FarmProcesses(tmp_path)  # no agent: everything stays queued
    try:
        farm.start_coordinator(
            f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out", "--max-queued-per-tenant", "3"
        )
        trust = _trust(farm)
        greedy = AsyncClient(farm.address, Tls(trust.ca), trust.add_token("greedy", "submit"))
        modest = AsyncClient(farm.address, Tls(trust.ca), trust.add_token("modest", "submit"))
        async with greedy, modest:
            for n in range(3):
                await greedy.submit(small_job(n=n))
            for attempt in (
                greedy.submit(small_job(n=4)),
                greedy.submit_batch(small_job(), [("x", {"n": 5})]),
            ):
                with pytest.raises(FramefleetError) as refused:
                    await attempt
                assert "--max-queued-per-tenant" in str(refused.value)
            await modest.submit(small_job(n=1))  # other tenants are not held back
    finally:
        farm.close()


async def test_a_batch_refused_midway_leaves_no_rows_behind(trusted: FarmProcesses) -> None:
    """Rows are stored in chunks as they stream in (memory stays bounded); a refusal after
    several chunks removes them, and none was ever claimable."""
    trust = _trust(trusted)
    token = trust.add_token("midway", "submit")
    rows = [(f"r{n}", {"n": n}) for n in range(4500)] + [("r7", {"n": 7})]  # a duplicate key
    async with AsyncClient(trusted.address, Tls(trust.ca), token) as client:
        with pytest.raises(FramefleetError) as refused:
            await client.submit_batch(small_job(), rows)
        assert "appears twice" in str(refused.value)
        assert await client.list([], 10_000) == []


async def test_a_second_stream_for_one_identity_replaces_the_first_and_reconciles(
    tmp_path: Path,
) -> None:
    """The same certificate connects again (a restarted agent): the old stream is closed, and
    the lease it held, which the new Hello does not report, goes back to the queue at once and
    comes to the new stream with a new token."""
    farm = FarmProcesses(tmp_path)
    try:
        farm.start_coordinator(f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out")
        trust = _trust(farm)
        cert, key = trust.agent_cert("twin")
        tls = Tls(trust.ca, cert, key)
        old_channel, old = await _hello(farm, tls, farm.agent_address, "")
        async with old_channel, AsyncClient(farm.address) as client:
            assert _is_welcome(await old.read())
            job = await client.submit(small_job(twin=True))
            first = await _next_assign(old)
            new_channel, new = await _hello(farm, tls, farm.agent_address, "")
            async with new_channel:
                assert _is_welcome(await new.read())
                with pytest.raises(aio.AioRpcError) as ended:
                    await asyncio.wait_for(_next_assign(old), 60)  # the old stream ends instead
                assert ended.value.code() == grpc.StatusCode.ABORTED
                second = await asyncio.wait_for(_next_assign(new), 60)
                assert second.lease.job_id == job.id
                assert second.lease.fencing_token > first.lease.fencing_token
                new.cancel()
    finally:
        farm.close()

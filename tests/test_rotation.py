"""Tokens and certificates changed under a running coordinator, as an operator changes them:
`framefleet token list|revoke` on its tokens file, new certificate files where the old ones
were (a renewal, a Kubernetes Secret's volume update). Real gRPC over TLS, the coordinator a
separate process; nothing restarts."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import grpc
import grpc.aio as aio
import pytest

from framefleet.client import AsyncClient
from framefleet.commands.certs import make_ca, make_leaf
from framefleet.core.channel import Tls, bearer, open_channel
from framefleet.core.jobspec import template_job
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc
from tests.farm_processes import FarmProcesses, framefleet, wait_until

pytestmark = pytest.mark.e2e

TEMPLATE = Path(__file__).parent / "templates" / "solid.html"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(framefleet(*args), capture_output=True, text=True, timeout=60)


async def code(address: str, ca: Path, token: str) -> grpc.StatusCode:
    """What ListJobs answers this token with (OK when it works)."""
    async with AsyncClient(address, Tls(ca), token) as client:
        try:
            await client.list()
        except aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def test_token_list_shows_names_roles_and_ids_never_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    acme = run("token", "add", "acme", "--tokens", str(tokens)).stdout.strip()
    run("token", "add", "bolt", "--role", "read", "--tokens", str(tokens))
    listed = run("token", "list", "--tokens", str(tokens))
    assert listed.returncode == 0, listed.stderr
    assert acme not in listed.stdout
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "ID", "CREATED"]
    assert [line.split()[:2] for line in lines[1:]] == [["acme", "submit"], ["bolt", "read"]]
    rows = json.loads(run("token", "list", "--json", "--tokens", str(tokens)).stdout)
    assert [r["name"] for r in rows] == ["acme", "bolt"]
    assert all(len(r["id"]) == 12 and r["created"].endswith("Z") for r in rows)
    missing = run("token", "list", "--tokens", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "none.json" in missing.stderr


def test_revoke_by_name_or_id_and_a_name_unknown_is_an_error(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    for _ in range(2):
        run("token", "add", "acme", "--tokens", str(tokens))
    run("token", "add", "bolt", "--tokens", str(tokens))
    first = json.loads(run("token", "list", "--json", "--tokens", str(tokens)).stdout)[0]["id"]
    assert run("token", "revoke", "acme", "--id", first, "--tokens", str(tokens)).returncode == 0
    names = [
        r["name"]
        for r in json.loads(run("token", "list", "--json", "--tokens", str(tokens)).stdout)
    ]
    assert names == ["acme", "bolt"]
    gone = run("token", "revoke", "nobody", "--tokens", str(tokens))
    assert gone.returncode == 2 and "no token 'nobody'" in gone.stderr
    assert run("token", "revoke", "acme", "--tokens", str(tokens)).returncode == 0
    names = [
        r["name"]
        for r in json.loads(run("token", "list", "--json", "--tokens", str(tokens)).stdout)
    ]
    assert names == ["bolt"]


def test_a_revoked_token_is_refused_at_once_even_mid_watch(tmp_path: Path) -> None:
    """No restart, no SIGHUP: the next call is UNAUTHENTICATED, and a watch already open ends
    with UNAUTHENTICATED; the other tenant's token keeps working."""
    farm = FarmProcesses(tmp_path)
    try:
        farm.start_coordinator(f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out")
        trust = farm.trust
        assert trust is not None
        acme = trust.add_token("acme", "submit")

        async def scenario() -> None:
            assert await code(farm.address, trust.ca, acme) == grpc.StatusCode.OK
            # A job no agent will take (none runs): its watch stays open until refused.
            async with AsyncClient(farm.address, Tls(trust.ca), acme) as client:
                job = await client.submit(
                    template_job(str(TEMPLATE), {}, width=64, height=64, frames=1)
                )
            channel = open_channel(farm.address, Tls(trust.ca))
            async with channel:
                watch = pb_grpc.JobServiceStub(channel).WatchJob(
                    pb.WatchJobRequest(job_id=job.id), metadata=bearer(acme)
                )
                first = await watch.read()
                assert first.job.id == job.id
                revoked = await asyncio.to_thread(
                    run, "token", "revoke", "acme", "--tokens", str(trust.tokens)
                )
                assert revoked.returncode == 0, revoked.stderr
                assert await code(farm.address, trust.ca, acme) == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(aio.AioRpcError) as ended:
                    async with asyncio.timeout(10):
                        while True:
                            await watch.read()
                assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert await code(farm.address, trust.ca, trust.token) == grpc.StatusCode.OK

        asyncio.run(scenario())
    finally:
        farm.close()


def _https_issuer(address: str, ca: Path) -> bool:
    """Whether the --http address completes an HTTPS request trusting ``ca`` alone."""
    context = ssl.create_default_context(cafile=ca)
    try:
        with urllib.request.urlopen(f"https://{address}/healthz", timeout=5, context=context):
            return True
    except OSError:
        return False


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    """The coordinator's certificate, key and agent CA are replaced by ones from a new CA (a
    CA rotation, the harshest renewal): new handshakes on the gRPC port, the agents' port and
    the HTTPS address use them; a key that does not match (a half-done copy) is not used."""
    farm = FarmProcesses(tmp_path)
    try:
        farm.start_coordinator(
            f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out", "--http", "127.0.0.1:0"
        )
        trust = farm.trust
        assert trust is not None
        old_ca = tmp_path / "old-ca.pem"
        shutil.copy(trust.ca, old_ca)
        new = tmp_path / "new"
        new.mkdir()
        make_ca(new)
        make_leaf(new, "coordinator", ["127.0.0.1", "localhost"], server=True)
        agent_cert, agent_key = make_leaf(new, "agent-9", [], server=False)

        def replace(source: Path, target: Path) -> None:
            """As a Secret volume or an installer does: a whole new file moved into place."""
            staged = target.with_name(target.name + ".new")
            shutil.copy(source, staged)
            staged.replace(target)

        # Only the certificate, with the old key: unusable, so the old pair stays.
        replace(new / "coordinator.pem", trust.root / "coordinator.pem")
        assert asyncio.run(code(farm.address, old_ca, trust.token)) == grpc.StatusCode.OK
        replace(new / "coordinator.key", trust.root / "coordinator.key")
        replace(new / "ca.pem", trust.ca)

        def served_by_new() -> bool:
            return (
                asyncio.run(code(farm.address, new / "ca.pem", trust.token)) == grpc.StatusCode.OK
            )

        wait_until(served_by_new, 20, "the gRPC port to serve the new certificate")
        assert asyncio.run(code(farm.address, old_ca, trust.token)) == grpc.StatusCode.UNAVAILABLE
        wait_until(lambda: _https_issuer(farm.http, new / "ca.pem"), 20, "HTTPS to follow")
        assert not _https_issuer(farm.http, old_ca)

        async def agent_handshake() -> bool:
            tls = Tls(new / "ca.pem", agent_cert, agent_key)
            async with open_channel(farm.agent_address, tls) as channel:
                try:
                    await asyncio.wait_for(channel.channel_ready(), 10)
                except TimeoutError:
                    return False
                return True

        assert asyncio.run(agent_handshake()), "the agents' port refused an agent of the new CA"
        assert farm.processes[0].alive()
    finally:
        farm.close()

"""Completion webhooks as a product built on the farm sees them: a POST when its job ends,
signed so it can tell the farm's from a forger's, retried when its server stumbles, never to a
URL the coordinator does not allow, and never in the way of the farm's work. The coordinator
and agent are separate processes; the receiver is a real HTTP server in this test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from framefleet.client import AsyncClient
from framefleet.core.jobspec import template_job
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, framefleet, wait_until

pytestmark = pytest.mark.e2e

SECRET = b"s3cret-shared-with-the-receiver"


@dataclass
class Receiver:
    """Records every POST; answers 503 to the first ``stumbles``, and holds requests to paths
    under /hang/ until the test ends (a receiver that never answers)."""

    stumbles: int = 0
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def serve(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, dict(self.headers), body))
                if self.path.startswith("/hang/"):
                    receiver.release.wait(60)
                status = 503 if receiver.stumbles > 0 else 204
                receiver.stumbles -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = receiver.serve()
    yield receiver
    receiver.release.set()
    server.shutdown()


def start(tmp_path: Path, receiver: Receiver) -> FarmProcesses:
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET + b"\n")
    farm = FarmProcesses(tmp_path, secure=False)
    farm.start_coordinator(
        f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out",
        "--allow-webhook", f"{receiver.url}/hooks", "--allow-webhook", f"{receiver.url}/hang",
        "--webhook-secret", str(secret),
    )  # fmt: skip
    return farm


def cli(farm: FarmProcesses, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        framefleet(*args, "--coordinator", farm.address),
        capture_output=True,
        text=True,
        timeout=120,
    )


def submit(farm: FarmProcesses, webhook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(
        farm, "submit", str(TEMPLATES / "solid.html"), "--width", "64", "--height", "64",
        "--fps", "10", "--frames", "2", "--webhook", webhook, *extra,
    )  # fmt: skip


def test_a_cancelled_job_posts_a_signed_outcome_retried_past_a_503(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.stumbles = 1
    farm = start(tmp_path, receiver)
    try:
        submitted = submit(farm, f"{receiver.url}/hooks/done")
        assert submitted.returncode == 0, submitted.stderr + farm.logs()
        job_id = submitted.stdout.strip()
        assert receiver.posts == []  # queued, not ended: nothing yet
        assert cli(farm, "cancel", job_id).returncode == 0
        wait_until(lambda: len(receiver.posts) >= 2, 30, "the POST and its retry")
        (first_path, first, body), (_, retried, again) = receiver.posts[:2]
        assert first_path == "/hooks/done" and again == body
        assert first["X-Framefleet-Delivery"] == retried["X-Framefleet-Delivery"]
        # The receiver's check: HMAC-SHA256 of the exact body with the shared secret.
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(first["X-Framefleet-Signature"], expected)
        forged = "sha256=" + hmac.new(b"guess", body, hashlib.sha256).hexdigest()
        assert not hmac.compare_digest(forged, expected)
        event = json.loads(body)
        assert (event["job_id"], event["state"], event["event"]) == (
            job_id,
            "cancelled",
            "job.finished",
        )
        assert event["delivery_id"] == first["X-Framefleet-Delivery"]
    finally:
        farm.close()
    assert len(receiver.posts) == 2


@pytest.mark.parametrize(
    "url",
    ["http://evil.example/hooks", "{base}/hooksx", "{base}/other", "file:///etc/passwd"],
)
def test_a_webhook_outside_the_allow_list_is_refused_at_submit(
    tmp_path: Path, receiver: Receiver, url: str
) -> None:
    farm = start(tmp_path, receiver)
    try:
        refused = submit(farm, url.format(base=receiver.url))
        assert refused.returncode != 0
        assert "webhook" in refused.stderr and "INVALID_JOB" in refused.stderr, refused.stderr
        listed = cli(farm, "status", "--json")
        assert listed.returncode == 0 and listed.stdout.strip() == ""  # nothing was queued
    finally:
        farm.close()


def test_receivers_that_hang_do_not_hold_up_other_jobs_or_their_webhooks(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Deliveries to a receiver that never answers: a job submitted after them still runs (a
    noop agent) and its POST arrives before any of theirs gives up its first try (10 s)."""
    farm = start(tmp_path, receiver)
    try:
        farm.start_agent("agent-1", "--noop", "--slots", "1")

        async def hang(count: int) -> None:
            async with AsyncClient(farm.address) as client:
                for i in range(count):
                    spec = template_job(TEMPLATES / "solid.html", width=64, height=64, frames=2)
                    spec.labels["framefleet.webhook"] = f"{receiver.url}/hang/{i}"
                    spec.priority = -1000  # behind the job below, if the agent is up first
                    await client.cancel((await client.submit(spec)).id)

        asyncio.run(hang(6))
        wait_until(lambda: len(receiver.posts) >= 6, 30, "the hanging deliveries")
        rendered = submit(farm, f"{receiver.url}/hooks/rendered", "--wait", "--json")
        assert rendered.returncode == 0, rendered.stderr + farm.logs()
        wait_until(
            lambda: any(p == "/hooks/rendered" for p, _, _ in receiver.posts), 30, "its POST"
        )
        hung = [p for p, _, _ in receiver.posts if p.startswith("/hang/")]
        assert len(hung) == len(set(hung)) == 6, hung  # none of them has been retried yet
    finally:
        receiver.release.set()
        farm.close()

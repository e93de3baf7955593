"""The spot-notice poller against metadata services with and without IMDSv2 tokens."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from agent.spot_notice import fetch_token, poll_once

PATH = "/latest/meta-data/spot/instance-action"


class Metadata(http.server.BaseHTTPRequestHandler):
    tokens = True  # IMDSv2: reads need the token from PUT /latest/api/token
    issued = 0
    action: str | None = None

    def do_PUT(self) -> None:
        if not self.tokens or self.path != "/latest/api/token":
            self.send_error(405)
            return
        Metadata.issued += 1
        self._reply(200, f"token-{Metadata.issued}".encode())

    def do_GET(self) -> None:
        token = self.headers.get("X-aws-ec2-metadata-token")
        if self.tokens and token != f"token-{Metadata.issued}":
            self.send_error(401)
        elif self.path != PATH or self.action is None:
            self.send_error(404)
        else:
            self._reply(
                200, json.dumps({"action": self.action, "time": "2026-11-23T01:00:00Z"}).encode()
            )

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    Metadata.tokens, Metadata.issued, Metadata.action = True, 0, None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}{PATH}"
    server.shutdown()


def test_imdsv2_token_is_fetched_and_renewed(url: str) -> None:
    token = fetch_token(url)
    assert token == "token-1"
    assert poll_once(url, token) == (None, "token-1")  # no interruption yet
    Metadata.action = "terminate"
    Metadata.issued += 1  # the old token expired: the read is refused, a new one is fetched
    action, renewed = poll_once(url, token)
    assert (action, renewed) == ("terminate", "token-3")


def test_imdsv1_service_is_read_without_a_token(url: str) -> None:
    Metadata.tokens = False
    assert fetch_token(url) is None
    assert poll_once(url, None) == (None, None)
    Metadata.action = "stop"
    assert poll_once(url, None) == ("stop", None)


def test_an_unreachable_service_is_no_notice() -> None:
    assert poll_once("http://127.0.0.1:1/latest/meta-data/spot/instance-action", None) == (
        None,
        None,
    )

"""The spot-notice poller against metadata services with and without IMDSv2 tokens."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from framefleet.agent.runner import ACK_WAIT, AgentConfig
from framefleet.agent.spot_notice import (
    DRAIN_GRACE,
    EC2_URL,
    NOTICE_SECONDS,
    POLL_INTERVAL,
    fetch_token,
    notice_url,
    on_ec2,
    poll_once,
)

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


def test_ec2_is_detected_from_dmi_or_the_xen_uuid(tmp_path: Path) -> None:
    dmi, uuid = tmp_path / "dmi", tmp_path / "uuid"
    dmi.mkdir()
    assert not on_ec2(dmi, uuid)  # neither readable: not EC2
    (dmi / "sys_vendor").write_text("QEMU\n")
    assert not on_ec2(dmi, uuid)
    (dmi / "board_vendor").write_text("Amazon EC2\n")  # a Nitro instance
    assert on_ec2(dmi, uuid)
    (dmi / "board_vendor").unlink()
    uuid.write_text("ec2e1916-9099-7caf-fd21-012345abcdef\n")  # a Xen instance
    assert on_ec2(dmi, uuid)


def test_the_notice_is_polled_by_default_on_ec2_only() -> None:
    assert notice_url("auto", lambda: True) == EC2_URL
    assert notice_url("auto", lambda: False) is None
    assert notice_url("off", lambda: True) is None
    assert notice_url("http://127.0.0.1:1/x", lambda: False) == "http://127.0.0.1:1/x"


def test_the_default_drain_fits_inside_the_notice() -> None:
    hand_back = ACK_WAIT + 5  # acknowledgement wait, and the process's own exit
    assert DRAIN_GRACE + POLL_INTERVAL + hand_back <= NOTICE_SECONDS
    assert DRAIN_GRACE >= 60  # a render of a minute or more still finishes
    assert AgentConfig("c", "a", 1).drain_grace == DRAIN_GRACE

"""Client tokens and certificates as an operator makes them: the commands, what lands on disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from framefleet.client import AsyncClient
from framefleet.coordinator.tokens import Role, TokenFile
from framefleet.core.channel import Tls
from tests.farm_processes import FarmProcesses, framefleet, wait_until

pytestmark = pytest.mark.e2e


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(framefleet(*args), capture_output=True, text=True, timeout=60)


def test_token_add_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    made = run("token", "add", "acme", "--role", "read", "--tokens", str(tokens))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) > 40 and token not in tokens.read_text()
    assert tokens.stat().st_mode & 0o077 == 0  # no one else may read even the hashes
    assert json.loads(tokens.read_text())["tokens"][0]["name"] == "acme"
    file = TokenFile(tokens)
    principal = file.lookup(token)
    assert principal is not None and (principal.name, principal.role) == ("acme", Role.READ)
    assert file.lookup(token[:-1] + "x") is None
    assert run("token", "add", "x", "--role", "root", "--tokens", str(tokens)).returncode == 2


def test_an_edited_token_file_is_reloaded_and_a_broken_one_keeps_the_old(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    first = run("token", "add", "acme", "--tokens", str(tokens)).stdout.strip()
    file = TokenFile(tokens)
    second = run("token", "add", "bolt", "--tokens", str(tokens)).stdout.strip()
    assert file.lookup(second) is not None  # picked up without a restart
    data = json.loads(tokens.read_text())
    data["tokens"] = [t for t in data["tokens"] if t["name"] != "acme"]
    tokens.write_text(json.dumps(data))
    assert file.lookup(first) is None  # revoked by removing its line
    tokens.write_text("{not json")
    assert file.lookup(second) is not None


def test_certs_make_a_ca_a_server_and_agents(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert run("certs", "ca", "--dir", str(certs)).returncode == 0
    assert run("certs", "ca", "--dir", str(certs)).returncode == 2  # never replaces a CA
    assert run("certs", "server", "coordinator", "--host", "farm.example", "--host", "10.0.0.5",
               "--dir", str(certs)).returncode == 0  # fmt: skip
    assert run("certs", "agent", "agent-7", "--dir", str(certs)).returncode == 0
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    agent = x509.load_pem_x509_certificate((certs / "agent-7.pem").read_bytes())
    server = x509.load_pem_x509_certificate((certs / "coordinator.pem").read_bytes())
    agent.verify_directly_issued_by(ca)
    server.verify_directly_issued_by(ca)
    name = agent.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert name == "agent-7"
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "farm.example" in sans.get_values_for_type(x509.DNSName)
    for key in ("ca.key", "agent-7.key", "coordinator.key"):
        assert (certs / key).stat().st_mode & 0o077 == 0, key


@pytest.mark.parametrize("bad", ["", "a b", "../x"])
def test_token_names_are_plain(tmp_path: Path, bad: str) -> None:
    result = run("token", "add", bad, "--tokens", str(tmp_path / "t.json"))
    assert result.returncode == 2 and "token name" in result.stderr, result.stderr


def test_sighup_reloads_what_change_detection_cannot_see(tmp_path: Path) -> None:
    """A file rewritten in place with the same size and modification time (a restore from a
    backup, a clock set back) is only noticed on SIGHUP; the coordinator reloads then."""
    farm = FarmProcesses(tmp_path)
    try:
        coordinator = farm.start_coordinator(f"sqlite:///{tmp_path}/jobs.db", tmp_path / "out")
        trust = farm.trust
        assert trust is not None
        tokens = trust.tokens
        before = os.stat(tokens)
        old = trust.token
        new = old[:-4] + ("aaaa" if not old.endswith("aaaa") else "bbbb")  # same length
        text = tokens.read_text().replace(
            hashlib.sha256(old.encode()).hexdigest(), hashlib.sha256(new.encode()).hexdigest()
        )
        with open(tokens, "r+") as f:  # same inode, same size
            f.write(text)
        os.utime(tokens, ns=(before.st_atime_ns, before.st_mtime_ns))

        async def works(token: str) -> bool:
            async with AsyncClient(farm.address, Tls(trust.ca), token) as client:
                try:
                    await client.list()
                except Exception:
                    return False
                return True

        assert asyncio.run(works(old)) and not asyncio.run(works(new))
        coordinator.signal(signal.SIGHUP)
        wait_until(lambda: asyncio.run(works(new)), 30, "SIGHUP to reload the tokens")
        assert not asyncio.run(works(old))
        assert coordinator.alive()
    finally:
        farm.close()

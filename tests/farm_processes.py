"""Coordinator and agents as separate OS processes on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 30.0
CLIENT_SETTINGS = ("FRAMEFLEET_TLS_CA", "FRAMEFLEET_TOKEN")


@dataclass
class Trust:
    """What a farm on a port needs to be safe: a CA, a coordinator certificate for 127.0.0.1,
    agent certificates (made on demand, named by agent id) and an admin client token."""

    root: Path
    token: str = ""

    def __post_init__(self) -> None:
        from framefleet.commands.certs import make_ca, make_leaf

        if not (self.root / "ca.pem").exists():
            make_ca(self.root)
            make_leaf(self.root, "coordinator", ["127.0.0.1", "localhost"], server=True)
        if not self.token:
            self.token = self.add_token("tests", "admin")

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.json"

    def add_token(self, name: str, role: str) -> str:
        from framefleet.coordinator.tokens import Role, add_token

        return add_token(self.tokens, name, Role(role))

    def agent_cert(self, agent_id: str) -> tuple[Path, Path]:
        from framefleet.commands.certs import make_leaf

        cert, key = self.root / f"{agent_id}.pem", self.root / f"{agent_id}.key"
        if not cert.exists():
            make_leaf(self.root, agent_id, [], server=False)
        return cert, key

    def coordinator_args(self, agent_listen: str) -> list[str]:
        return [
            "--tls-cert",
            str(self.root / "coordinator.pem"),
            "--tls-key",
            str(self.root / "coordinator.key"),
            "--tokens",
            str(self.tokens),
            "--agent-ca",
            str(self.ca),
            "--agent-listen",
            agent_listen,
        ]

    def agent_args(self, agent_id: str) -> list[str]:
        cert, key = self.agent_cert(agent_id)
        return ["--tls-ca", str(self.ca), "--tls-cert", str(cert), "--tls-key", str(key)]

    def client_env(self, token: str | None = None) -> dict[str, str]:
        """How a client reaches this farm: what a user puts in the environment."""
        return dict(zip(CLIENT_SETTINGS, (str(self.ca), token or self.token), strict=True))


def framefleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "framefleet", *args]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[str]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def _read_line(stream: object, timeout: float) -> str:
    """First stdout line of a child, or an error after timeout."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()  # type: ignore[attr-defined]
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError("the process printed nothing in time") from None


@dataclass
class FarmProcesses:
    """Starts processes under ``root`` (logs go to root/logs) and stops them all on close.

    Secure by default, as on a network: TLS, client tokens and agent certificates (see
    ``Trust``). While the farm runs, this process's environment carries the client settings
    (FRAMEFLEET_TLS_CA, FRAMEFLEET_TOKEN), so the SDK and CLI subprocesses reach it as a
    user's would. ``secure=False``: a plaintext loopback coordinator."""

    root: Path
    secure: bool = True
    processes: list[Process] = field(default_factory=list)
    address: str = ""
    # The coordinator's --http address, when it was started with one.
    http: str = ""
    agent_address: str = ""
    trust: Trust | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        if self.secure:
            self.trust = Trust(self.root / "trust")
            for key, value in self.trust.client_env().items():
                self._saved_env.setdefault(key, os.environ.get(key))
                os.environ[key] = value

    def _environment(self) -> dict[str, str]:
        """This process's environment, less another farm's client settings when this one is
        plaintext."""
        if self.trust is not None:
            return dict(os.environ)
        return {k: v for k, v in os.environ.items() if k not in CLIENT_SETTINGS}

    def _spawn(
        self,
        name: str,
        args: list[str],
        stdout: int | None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> Process:
        log = self.root / "logs" / f"{name}.log"
        popen = subprocess.Popen(
            args,
            stdout=stdout,
            stderr=log.open("a"),
            text=True,
            env={**self._environment(), "PYTHONUNBUFFERED": "1", **(env or {})},
            user=user,
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_coordinator(
        self,
        store_url: str,
        out: Path,
        *extra: str,
        listen: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
    ) -> Process:
        # Tests name destinations under their own tmp_path (and S3 tests add their bucket).
        extra = ("--allow-output", tempfile.gettempdir(), *extra)
        if self.trust is not None:
            # A restart keeps the agents' address too, so they reconnect.
            extra = (*self.trust.coordinator_args(self.agent_address or "127.0.0.1:0"), *extra)
        process = self._spawn(
            "coordinator",
            framefleet(
                "coordinator", "--listen", listen, "--store", store_url, "--out", str(out), *extra
            ),
            subprocess.PIPE,
            env,
        )
        self._read_addresses(process, agents_apart=self.trust is not None)
        return process

    def start_service(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        """``framefleet COMMAND`` as a compose file or a unit runs it, configured by ``env``.
        A coordinator's bound addresses are read from what it prints."""
        coordinator = command[0] == "coordinator"
        process = self._spawn(
            name, framefleet(*command), subprocess.PIPE if coordinator else subprocess.DEVNULL, env
        )
        if coordinator:
            self._read_addresses(process, agents_apart=bool(env.get("FRAMEFLEET_AGENT_LISTEN")))
        return process

    def run_service(
        self, command: list[str], env: dict[str, str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A one-shot ``framefleet COMMAND`` (``framefleet migrate``), run to its end."""
        return subprocess.run(
            framefleet(*command),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **env},
        )

    def _read_addresses(self, process: Process, agents_apart: bool) -> None:
        line = _read_line(process.popen.stdout, READY_TIMEOUT)
        if " http on " in line:
            self.http = line.rsplit(" ", 1)[1].strip()
            line = _read_line(process.popen.stdout, READY_TIMEOUT)
        if "listening on" not in line:
            raise RuntimeError(f"coordinator did not start: {line!r}\n{process.log.read_text()}")
        self.address = line.rsplit(" ", 1)[1].strip()
        self.agent_address = self.address
        if agents_apart:
            line = _read_line(process.popen.stdout, READY_TIMEOUT)
            if "agents on" not in line:
                raise RuntimeError(f"no agent address: {line!r}\n{process.log.read_text()}")
            self.agent_address = line.rsplit(" ", 1)[1].strip()

    def start_agent(self, agent_id: str, *extra: str, env: dict[str, str] | None = None) -> Process:
        """An agent process; ``env`` is added to this process's environment."""
        trust = self.trust.agent_args(agent_id) if self.trust is not None else []
        return self._spawn(
            agent_id,
            framefleet(
                "agent",
                "--coordinator",
                self.agent_address,
                "--agent-id",
                agent_id,
                *trust,
                *extra,
            ),
            subprocess.DEVNULL,
            env,
        )

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log.read_text()[-4000:]}" for p in self.processes)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")

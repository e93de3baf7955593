"""Coordinator and agents as separate OS processes on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 30.0


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
class Farm:
    """Starts processes under ``root`` (logs go to root/logs) and stops them all on close."""

    root: Path
    processes: list[Process] = field(default_factory=list)
    address: str = ""
    # The coordinator's --http address, when it was started with one.
    http: str = ""

    def __post_init__(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

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
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
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
        process = self._spawn(
            "coordinator",
            framefleet(
                "coordinator", "--listen", listen, "--store", store_url, "--out", str(out), *extra
            ),
            subprocess.PIPE,
            env,
        )
        line = _read_line(process.popen.stdout, READY_TIMEOUT)
        if " http on " in line:
            self.http = line.rsplit(" ", 1)[1].strip()
            line = _read_line(process.popen.stdout, READY_TIMEOUT)
        if "listening on" not in line:
            raise RuntimeError(f"coordinator did not start: {line!r}\n{process.log.read_text()}")
        self.address = line.rsplit(" ", 1)[1].strip()
        return process

    def start_agent(self, agent_id: str, *extra: str, env: dict[str, str] | None = None) -> Process:
        """An agent process; ``env`` is added to this process's environment."""
        return self._spawn(
            agent_id,
            framefleet("agent", "--coordinator", self.address, "--agent-id", agent_id, *extra),
            subprocess.DEVNULL,
            env,
        )

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log.read_text()[-4000:]}" for p in self.processes)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")

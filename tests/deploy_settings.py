"""Deployment files (compose, Helm, systemd) configure framefleet by environment. One check for
all of them: the command reads every FRAMEFLEET_* variable a file sets, and accepts its value;
and the probe their services answer."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from framefleet.cli import build_parser
from framefleet.commands.environment import from_environment, options, variable
from framefleet.coordinator.config import CoordinatorConfig
from tests.conftest import TEMPLATES
from tests.docs_site import documented
from tests.farm_processes import wait_until

FROM_ELSEWHERE = "set-elsewhere"  # stands in for a value from a Secret or the pod's name


def command(name: str) -> argparse.ArgumentParser:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


def check_settings(where: str, name: str, environ: Mapping[str, object]) -> argparse.Namespace:
    """``framefleet NAME`` as configured by ``environ``; fails on a variable nothing reads (a
    misspelt or removed option would be ignored silently) or a value the option refuses."""
    parser = command(name)
    known = {variable(action) for action in options(parser)}
    docs = documented()
    for key in environ:
        if key.startswith("FRAMEFLEET_"):
            assert key in known or f"`{key}`" in docs, f"{where}: {key} is read by nothing"
    values = {k: v if isinstance(v, str) else FROM_ELSEWHERE for k, v in environ.items()}
    try:
        return from_environment(parser, {k: v for k, v in values.items() if k in known}).parse_args(
            []
        )
    except SystemExit:
        raise AssertionError(
            f"{where}: framefleet {name} refuses its settings (see stderr)"
        ) from None


def ready(address: str) -> bool:
    """Whether the service on this --http address says it is ready (/readyz)."""
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=5) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


def coordinator_config(environ: Mapping[str, str]) -> CoordinatorConfig:
    """The coordinator's listening and trust settings as a deployment file sets them, for the
    coordinator's own exposure rule (coordinator.server.exposure_problems)."""

    def path(name: str) -> Path | None:
        return Path(environ[name]) if name in environ else None

    return CoordinatorConfig(
        listen=environ["FRAMEFLEET_LISTEN"],
        tls_cert=path("FRAMEFLEET_TLS_CERT"),
        tls_key=path("FRAMEFLEET_TLS_KEY"),
        tokens=path("FRAMEFLEET_TOKENS"),
        agent_ca=path("FRAMEFLEET_AGENT_CA"),
        agent_listen=environ.get("FRAMEFLEET_AGENT_LISTEN", ""),
    )


def wait_for_agent_http(log: Path) -> str:
    """The --http address an agent logged, once it answers ready."""
    wait_until(lambda: " http on " in log.read_text(), 90, "the agent's http address")
    http = log.read_text().split(" http on ", 1)[1].split()[0]
    wait_until(lambda: ready(http), 90, "the agent to be ready")
    return http


def submit_teal(address: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`framefleet submit --wait --json` of a 4-frame 64x64 teal job, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "framefleet", "submit", str(TEMPLATES / "solid.html"),
         "--param", "color=teal", "--width", "64", "--height", "64", "--fps", "10",
         "--frames", "4", "--coordinator", address, "--wait", "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )  # fmt: skip

"""Configuration by environment: every coordinator and agent option has a FRAMEFLEET_*
variable, listed in --help and in the docs' configuration reference; the command line wins."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from framefleet.cli import build_parser
from framefleet.commands.environment import from_environment, options, variable
from tests.docs_site import hooks
from tests.farm_processes import _read_line

SERVICES = ("coordinator", "agent")


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    chosen: argparse.ArgumentParser = commands.choices[name]
    return chosen


def sample() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lease-ttl", type=float, default=20.0)
    parser.add_argument("--store", required=True)
    parser.add_argument("--noop", action="store_true")
    return parser


def test_variables_set_defaults_and_flags_win() -> None:
    environ = {"FRAMEFLEET_LEASE_TTL": "7.5", "FRAMEFLEET_STORE": "sqlite:///x.db"}
    parser = from_environment(sample(), environ)
    assert parser.parse_args([]).lease_ttl == 7.5  # converted by the option's type
    assert parser.parse_args([]).store == "sqlite:///x.db"  # no longer required
    assert parser.parse_args(["--lease-ttl", "3"]).lease_ttl == 3.0
    assert parser.parse_args([]).noop is False
    for on in ("1", "true", "YES"):
        assert from_environment(sample(), {**environ, "FRAMEFLEET_NOOP": on}).parse_args([]).noop
    assert not from_environment(sample(), {**environ, "FRAMEFLEET_NOOP": "0"}).parse_args([]).noop


def test_a_repeatable_option_takes_space_separated_values() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--allow-output", action="append", default=[])
    environ = {"FRAMEFLEET_ALLOW_OUTPUT": "s3://a/x  s3://b/y"}
    parser = from_environment(parser, environ)
    assert parser.parse_args([]).allow_output == ["s3://a/x", "s3://b/y"]
    assert parser.parse_args(["--allow-output", "/srv"]).allow_output == [
        "s3://a/x",
        "s3://b/y",
        "/srv",
    ]
    assert parser.parse_args([]).allow_output == ["s3://a/x", "s3://b/y"]  # not mutated


def test_a_bad_value_is_refused_like_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = from_environment(sample(), {"FRAMEFLEET_LEASE_TTL": "soon", "FRAMEFLEET_STORE": "x"})
    with pytest.raises(SystemExit) as exit:
        parser.parse_args([])
    assert exit.value.code == 2
    assert "--lease-ttl: invalid float value: 'soon'" in capsys.readouterr().err


@pytest.mark.parametrize("service", SERVICES)
def test_every_option_is_listed_in_help_and_the_docs(service: str) -> None:
    names = [variable(action) for action in options(subparser(service))]
    assert "FRAMEFLEET_HTTP" in names
    shown = subprocess.run(
        [sys.executable, "-m", "framefleet", service, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    reference = hooks().configuration_reference()
    for name in names:
        assert name in re.sub(r"\s+", "", shown), f"{service} --help does not name {name}"
        assert f"`{name}`" in reference, f"docs/reference/configuration.md does not list {name}"


@pytest.mark.e2e
def test_a_coordinator_configured_only_by_environment(tmp_path: Path) -> None:
    environ = {
        **os.environ,
        "FRAMEFLEET_LISTEN": "127.0.0.1:0",
        "FRAMEFLEET_STORE": f"sqlite:///{tmp_path}/jobs.db",
        "FRAMEFLEET_OUT": str(tmp_path / "out"),
        "FRAMEFLEET_HTTP": "127.0.0.1:0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "framefleet", "coordinator"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert _read_line(process.stdout, 30).startswith(
            "framefleet coordinator http on 127.0.0.1:"
        )
        assert _read_line(process.stdout, 30).startswith(
            "framefleet coordinator listening on 127.0.0.1:"
        )
        assert (tmp_path / "jobs.db").exists()
    finally:
        process.terminate()
        process.wait(30)

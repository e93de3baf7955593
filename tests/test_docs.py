"""The docs site (mkdocs.yml, docs/) builds strictly, offline, in seconds; its generated
reference pages name every command, option, variable, RPC and message the code has, so they
cannot go stale; and the README stays a short front door whose links land on pages that
exist."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

from framefleet.cli import build_parser
from framefleet.commands.environment import options, variable
from framefleet.core.errors import ErrorClass
from framefleet.v1 import framefleet_pb2 as pb
from tests.docs_site import DOCS, ROOT, hooks

README_MAX_LINES = 200
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def html(site: Path, page: str) -> str:
    return (site / f"{page}.html").read_text()


def every_command(
    parser: argparse.ArgumentParser, prefix: str = "framefleet"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each command as typed, walked from the parser here, not by the hook's own walker."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from every_command(sub, f"{prefix} {name}")


def test_the_cli_reference_names_every_command_and_option(site: Path) -> None:
    page = html(site, "reference/cli")
    commands = dict(every_command(build_parser()))
    assert {"framefleet render", "framefleet agent", "framefleet token revoke"} <= set(commands)
    for name, parser in commands.items():
        assert f"<code>{name}</code>" in page, f"the CLI reference has no section for {name}"
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in page, f"the CLI reference does not show {name} {flag}"


def test_the_configuration_reference_names_every_variable(site: Path) -> None:
    page = html(site, "reference/configuration")
    commands = dict(every_command(build_parser()))
    for name in ("coordinator", "agent", "migrate"):
        for action in options(commands[f"framefleet {name}"]):
            assert f"<code>{variable(action)}</code>" in page, variable(action)


def test_the_proto_reference_names_every_service_rpc_message_and_enum(site: Path) -> None:
    page = html(site, "reference/proto")
    file = pb.DESCRIPTOR
    names = [*file.message_types_by_name, *file.enum_types_by_name]
    for service in file.services_by_name.values():
        names += [service.name, *(method.name for method in service.methods)]
    for message in file.message_types_by_name.values():
        names += [field.name for field in message.fields]
    missing = [n for n in names if f"<code>{n}</code>" not in page]
    assert not missing, f"the proto reference misses {missing}"


def test_the_error_classes_page_lists_every_class(site: Path) -> None:
    page = html(site, "reference/errors")
    for error_class in ErrorClass:
        assert f"<code>{error_class}</code>" in page, error_class


def test_an_error_table_missing_a_class_fails_the_build() -> None:
    table = (DOCS / "reference" / "errors.md").read_text()
    hooks().check_error_classes(table)
    without = "\n".join(line for line in table.splitlines() if "`AGENT_LOST`" not in line)
    with pytest.raises(PluginError, match="AGENT_LOST is not in the table"):
        hooks().check_error_classes(without)
    wrong = table.replace(
        "| `LEASE_EXPIRED` | the agent stopped heartbeating | yes |", "| `LEASE_EXPIRED` | x | no |"
    )
    with pytest.raises(PluginError, match="LEASE_EXPIRED: retried says 'no'"):
        hooks().check_error_classes(wrong)


def test_the_generated_pages_are_not_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "site"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert not tracked
    for page in ("reference/cli.md", "reference/configuration.md", "reference/proto.md"):
        assert "<!-- generated: " in (DOCS / page).read_text(), page


def test_the_readme_is_a_short_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = quick_start.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in commands.splitlines()] == [
        "make example",
        "make test",
    ]
    assert "make test" in (ROOT / ".ci" / "run").read_text(), "CI runs the README's test command"


def test_the_readme_links_only_to_docs_pages_that_exist() -> None:
    links = LINK.findall((ROOT / "README.md").read_text())
    local = [link for link in links if "://" not in link and not link.startswith("#")]
    assert local, "the README points into the docs"
    for link in local:
        target = ROOT / link.split("#", 1)[0]
        assert target.is_file(), f"README links to {link}, which does not exist"
        assert target.is_relative_to(DOCS) and target.suffix == ".md", (
            f"README links to {link}: link to a docs page instead"
        )

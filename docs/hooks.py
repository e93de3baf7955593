"""mkdocs hooks (mkdocs.yml `hooks:`): the reference pages are generated from the code at every
build, so they cannot go stale: a page holds `<!-- generated: NAME -->` where the text goes.

- cli: every `framefleet` command's --help, from `framefleet.cli.build_parser()` with the farm's
  commands registered (entry point `framefleet.commands`);
- configuration: the FRAMEFLEET_* variable of every option of the server commands
  (`framefleet.commands.environment`);
- proto: services, messages and enums of proto/framefleet/v1/framefleet.proto with their comments;
- error-classes: not generated (the meanings are prose) but checked: the page's table must list
  every `ErrorClass`, with "yes" under retried exactly for `errors.RETRYABLE`.

Nothing generated is committed; `tests/test_docs.py` builds the site and checks the CLI page."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "framefleet" / "v1" / "framefleet.proto"
MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")
# The server commands whose options read FRAMEFLEET_* variables.
SERVER_COMMANDS = ("coordinator", "agent", "migrate")


@contextmanager
def _clean_environment() -> Iterator[None]:
    """The parser as a fresh shell builds it: no FRAMEFLEET_* default taken from this machine,
    and help wrapped at a fixed width."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("FRAMEFLEET_")]:
        del os.environ[name]
    os.environ["COLUMNS"] = "100"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parser() -> argparse.ArgumentParser:
    from framefleet.cli import build_parser

    with _clean_environment():
        return build_parser()


def commands(
    top: argparse.ArgumentParser | None = None,
) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """Every command as typed (`framefleet token add`), depth first, with its parser and its
    one-line help."""
    found: list[tuple[str, argparse.ArgumentParser, str]] = []

    def walk(prefix: str, node: argparse.ArgumentParser) -> None:
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    found.append((f"{prefix} {name}", sub, helps.get(name, "")))
                    walk(f"{prefix} {name}", sub)

    walk("framefleet", top or parser())
    return found


def _help(node: argparse.ArgumentParser) -> str:
    with _clean_environment():
        return node.format_help().rstrip()


def cli_reference() -> str:
    top = parser()
    lines = ["## `framefleet`", "", "```text", _help(top), "```", ""]
    for name, node, summary in commands(top):
        lines += [f"## `{name}`", ""]
        if summary:
            lines += [summary[0].upper() + summary[1:] + ".", ""]
        lines += ["```text", _help(node), "```", ""]
    return "\n".join(lines)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "off (a switch: on for `1`, `true`, `yes`)"
    if action.default in (None, "", []):
        return ""
    return f"`{action.default}`"


def configuration_reference() -> str:
    from framefleet.commands.environment import options, variable

    subs = {name: node for name, node, _ in commands()}
    lines: list[str] = []
    for name in SERVER_COMMANDS:
        lines += [
            f"### `framefleet {name}`",
            "",
            "| variable | option | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for action in options(subs[f"framefleet {name}"]):
            meaning = re.sub(r"\s*\(?env FRAMEFLEET_\w+\)?$", "", action.help or "")
            meaning = meaning.replace("|", "\\|")
            flag = max(action.option_strings, key=len)
            lines.append(f"| `{variable(action)}` | `{flag}` | {_default(action)} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


# --- the proto ------------------------------------------------------------------------------

BLOCK = re.compile(r"^(message|enum|service) (\w+) \{")
FIELD = re.compile(
    r"^(?:(repeated|optional) )?(map<[^>]+>|[\w.]+) (\w+) = (\d+)(?: \[[^\]]*\])?;\s*(?://\s*(.*))?$"
)
ENUM_VALUE = re.compile(r"^(\w+) = (-?\d+);\s*(?://\s*(.*))?$")
RPC = re.compile(r"^rpc (\w+)\((stream )?([\w.]+)\) returns \((stream )?([\w.]+)\);")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def proto_reference(path: Path = PROTO) -> str:
    """Services, messages and enums with the comments written above them, in file order."""
    out: list[str] = []
    comment: list[str] = []
    rows: list[str] = []
    depth = 0
    kind = oneof = ""
    banner = False

    def flush() -> None:
        if rows:
            out.extend([*rows, ""])
            rows.clear()

    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("//"):
            text = line[2:].strip()
            if text and set(text) == {"-"}:  # a banner: `// ---` lines around a section's title
                if banner and comment:
                    out += [f"## {' '.join(comment)}", ""]
                banner = not banner
                comment = []
            else:
                comment.append(text)
            continue
        if not line:
            comment = []
            continue
        if depth == 0 and (block := BLOCK.match(line)):
            kind, name = block.groups()
            out += [f"### {kind} `{name}`", ""]
            if comment:
                out += [" ".join(comment), ""]
            header = {
                "message": ["| field | type | number | meaning |", "| --- | --- | --- | --- |"],
                "enum": ["| value | number | meaning |", "| --- | --- | --- |"],
                "service": ["| rpc | request | response | meaning |", "| --- | --- | --- | --- |"],
            }[kind]
            rows.extend(header)
            depth = 1 if line.endswith("{") and not line.endswith("{}") else 0
            if depth == 0:
                rows.clear()
            comment = []
            continue
        if depth == 0:
            comment = []
            continue
        if line.startswith("oneof "):
            oneof = line.split()[1]
            depth += 1
            comment = []
            continue
        if line == "}":
            depth -= 1
            oneof = ""
            if depth == 0:
                flush()
            continue
        doc = " ".join(comment)
        comment = []
        if kind == "service" and (rpc := RPC.match(line)):
            name, in_stream, request, out_stream, response = rpc.groups()
            rows.append(
                f"| `{name}` | {'stream ' if in_stream else ''}`{request}` | "
                f"{'stream ' if out_stream else ''}`{response}` | {_cell(doc)} |"
            )
        elif kind == "enum" and (value := ENUM_VALUE.match(line)):
            rows.append(f"| `{value[1]}` | {value[2]} | {_cell(doc or value[3] or '')} |")
        elif kind == "message" and (field := FIELD.match(line)):
            label, type_, name, number, trailing = field.groups()
            shown = f"{label} {type_}" if label else type_
            where = f" (oneof `{oneof}`)" if oneof else ""
            rows.append(
                f"| `{name}` | `{shown}`{where} | {number} | {_cell(doc or trailing or '')} |"
            )
    flush()
    return "\n".join(out)


# --- error classes ------------------------------------------------------------------------


def check_error_classes(markdown: str) -> None:
    """The error page's table names every class, and says "yes" under retried for exactly
    the retryable ones."""
    from framefleet.core.errors import RETRYABLE, ErrorClass

    retried: dict[str, str] = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([A-Z_]+)`", cells[0]):
                retried[name] = cells[2]
    problems = [f"{c} is not in the table" for c in ErrorClass if c not in retried]
    problems += [
        f"{c}: retried says {retried[c]!r}, errors.RETRYABLE says {c in RETRYABLE}"
        for c in ErrorClass
        if c in retried and (retried[c] == "yes") != (c in RETRYABLE)
    ]
    problems += [
        f"{name} is not an ErrorClass" for name in retried if name not in ErrorClass.__members__
    ]
    if problems:
        from mkdocs.exceptions import PluginError

        raise PluginError("docs/reference/errors.md: " + "; ".join(problems))


GENERATORS = {
    "cli": cli_reference,
    "configuration": configuration_reference,
    "proto": proto_reference,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == "reference/errors.md":
        check_error_classes(markdown)
    return MARKER.sub(lambda m: GENERATORS[m[1]](), markdown)

"""Configuration by environment: every option of a server command also reads
``FRAMEFLEET_<OPTION>`` (``--lease-ttl`` -> ``FRAMEFLEET_LEASE_TTL``); the command line wins,
except that a repeatable option's flags add to the variable's space-separated values.
Containers and units set variables; nothing reads the environment per flag."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

PREFIX = "FRAMEFLEET_"
FALSE = {"", "0", "false", "no", "off"}


def variable(action: argparse.Action) -> str:
    return PREFIX + action.dest.upper()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]


def from_environment(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """Names each option's variable in its help and makes a set variable its default.
    A value is converted (and refused) by the option's own type as if it had been typed."""
    environ = os.environ if environ is None else environ
    parser.epilog = (
        f"Every option also reads {PREFIX}<OPTION> from the environment "
        f"(--lease-ttl: {PREFIX}LEASE_TTL); the command line wins."
    )
    for action in options(parser):
        name = variable(action)
        action.help = f"{action.help} (env {name})" if action.help else f"env {name}"
        value = environ.get(name)
        if value is None:
            continue
        if action.nargs == 0:  # a switch: store_true and friends
            if value.strip().lower() not in FALSE:
                action.default = action.const
        elif isinstance(action, argparse._AppendAction):  # repeatable: space-separated values
            convert = action.type if callable(action.type) else str
            action.default = [convert(item) for item in value.split()]
        else:
            # argparse converts a string default with the option's type when the flag is absent.
            action.default = value
        action.required = False
    return parser

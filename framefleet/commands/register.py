"""The server-side subcommands, registered on the SDK's ``framefleet`` command (entry point
group ``framefleet.commands``). Heavy modules are imported when a command runs, not here:
every ``framefleet`` invocation loads this module."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from framefleet.agent import limits
from framefleet.agent import spot_notice as spot
from framefleet.cli import coordinator_option, job_options, variant_options
from framefleet.commands.environment import from_environment
from framefleet.coordinator.config import CoordinatorConfig

# The coordinator's options default to its config's defaults, written once there.
DEFAULTS = CoordinatorConfig()

HTTP_HELP = "serve /healthz, /readyz and /metrics on HOST:PORT (e.g. 0.0.0.0:9464; off if unset)"


async def _render(args: argparse.Namespace) -> int:
    from framefleet.commands.local import cmd_render

    return await cmd_render(args)


async def _preview(args: argparse.Namespace) -> int:
    from framefleet.commands.preview import cmd_preview

    return await cmd_preview(args)


async def _coordinator(args: argparse.Namespace) -> int:
    from framefleet.commands.servers import cmd_coordinator

    return await cmd_coordinator(args)


async def _migrate(args: argparse.Namespace) -> int:
    from framefleet.commands.migrate import cmd_migrate

    return await cmd_migrate(args)


async def _certs(args: argparse.Namespace) -> int:
    from framefleet.commands.certs import cmd_certs

    return cmd_certs(args)


async def _token(args: argparse.Namespace) -> int:
    from framefleet.commands import token_commands

    run = {"add": token_commands.cmd_add, "list": token_commands.cmd_list}
    return run.get(args.token_command, token_commands.cmd_revoke)(args)


async def _agent(args: argparse.Namespace) -> int:
    from framefleet.commands.servers import cmd_agent

    return await cmd_agent(args)


def destination(text: str) -> str:
    """``render --out``: a local directory or a URL a sink is registered for, as a URL. Any
    other URL is refused here, before anything renders (never a directory named ``s3:``)."""
    from framefleet.outputs import schemes

    scheme, sep, rest = text.partition("://")
    if not sep:
        return Path(text).resolve().as_uri()
    if scheme == "file":
        return Path(rest).resolve().as_uri()
    if scheme not in schemes() or not rest.strip("/"):
        known = ", ".join(f"{s}://" for s in sorted(schemes()))
        raise argparse.ArgumentTypeError(
            f"cannot write to {text!r}: give a local directory or a URL ({known})"
        )
    return text.rstrip("/")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    render = commands.add_parser("render", help="render locally: coordinator and agents here")
    job_options(render)
    render.add_argument(
        "--out",
        required=True,
        type=destination,
        help="a local directory, or s3://bucket/prefix (streamed there as it renders)",
    )
    variant_options(render)
    render.add_argument("--agents", type=int, default=1, help="local agent processes")
    render.add_argument("--slots", type=int, default=None, help="pages per agent")
    render.set_defaults(run=_render)

    preview = commands.add_parser("preview", help="play a template or VideoJSON in a browser")
    job_options(preview)
    preview.add_argument("--port", type=int, default=8765, help="on 127.0.0.1 (0: any free)")
    preview.set_defaults(run=_preview)

    coord = commands.add_parser("coordinator", help="run a coordinator")
    coord.add_argument("--listen", default=DEFAULTS.listen)
    coord.add_argument(
        "--store", default=DEFAULTS.store_url, help="sqlite:///path or postgresql://..."
    )
    coord.add_argument(
        "--auto-migrate",
        choices=["auto", "on", "off"],
        default="auto",
        help="apply missing schema migrations at start; auto: only for an SQLite store"
        " (otherwise run `framefleet migrate` first)",
    )
    coord.add_argument(
        "--out", default=DEFAULTS.default_destination, help="default destination for outputs"
    )
    coord.add_argument("--lease-ttl", type=float, default=DEFAULTS.lease_ttl, help="seconds")
    coord.add_argument(
        "--heartbeat-interval", type=float, default=DEFAULTS.heartbeat_interval, help="seconds"
    )
    coord.add_argument(
        "--retry-base", type=float, default=DEFAULTS.retry_base, help="first retry backoff, s"
    )
    coord.add_argument(
        "--max-interruptions",
        type=int,
        default=DEFAULTS.max_interruptions,
        help="drain hand-backs before INTERRUPTED",
    )
    coord.add_argument("--http", default=None, help=HTTP_HELP)
    trust = coord.add_argument_group("trust (see docs/how-to/secure.md)")
    trust.add_argument("--tls-cert", type=Path, help="serve over TLS with this certificate")
    trust.add_argument("--tls-key", type=Path, help="the key of --tls-cert")
    trust.add_argument("--tokens", type=Path, help="client tokens (framefleet token add)")
    trust.add_argument(
        "--allow-output",
        action="append",
        default=[],
        metavar="URL",
        help="a destination prefix clients may name (repeatable; default: only --out)",
    )
    trust.add_argument(
        "--allow-webhook",
        action="append",
        default=[],
        metavar="URL",
        help="a URL prefix `submit --webhook` may name (repeatable; default: no webhooks)",
    )
    trust.add_argument(
        "--webhook-secret",
        type=Path,
        metavar="FILE",
        help="sign webhook POSTs with HMAC-SHA256 keyed by this file's contents",
    )
    trust.add_argument("--agent-ca", type=Path, help="agents need a certificate from this CA")
    coord.add_argument(
        "--pod-deletion-cost",
        action="store_true",
        help="on Kubernetes: annotate agent pods with their busy slots, so scale-in takes "
        "idle agents first (needs `patch pods`: the Helm chart's Role)",
    )
    trust.add_argument("--agent-listen", default="", help="host:port for agents (mutual TLS)")
    trust.add_argument(
        "--max-queued-per-tenant",
        type=int,
        default=DEFAULTS.max_unfinished_per_tenant,
        help="queued or running jobs per tenant (0: no cap)",
    )
    trust.add_argument(
        "--max-slots-per-agent",
        type=int,
        default=DEFAULTS.max_slots_per_agent,
        help="slots and leases per agent stream",
    )
    trust.add_argument(
        "--insecure",
        action="store_true",
        help="listen beyond loopback without TLS, tokens or agent certificates (unsafe)",
    )
    from_environment(coord)  # after the last option: each reads FRAMEFLEET_<OPTION>
    coord.set_defaults(run=_coordinator, service="coordinator")

    migrate = commands.add_parser("migrate", help="apply the store's missing schema migrations")
    migrate.add_argument("--store", required=True, help="sqlite:///path or postgresql://...")
    from_environment(migrate)
    migrate.set_defaults(run=_migrate)

    certs = commands.add_parser("certs", help="make a CA, a coordinator and agent certificates")
    certs.add_argument("what", choices=["ca", "server", "agent"])
    certs.add_argument("name", nargs="?", default="", help="agent id, or the server's file name")
    certs.add_argument("--dir", type=Path, default=Path("certs"), help="holds ca.pem and ca.key")
    certs.add_argument(
        "--host", action="append", default=[], help="server: a DNS name or IP it is reached by"
    )
    certs.set_defaults(run=_certs)

    token = commands.add_parser("token", help="manage client tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    add = token_commands.add_parser("add", help="make a token for NAME (its tenant)")
    add.add_argument("name")
    add.add_argument("--role", choices=["submit", "read", "admin"], default="submit")
    add.add_argument("--tokens", type=Path, required=True, help="the coordinator's tokens file")
    listing = token_commands.add_parser("list", help="names, roles and ids (never the tokens)")
    listing.add_argument("--tokens", type=Path, required=True, help="the coordinator's tokens file")
    listing.add_argument("--json", action="store_true", help="as a JSON array")
    revoke = token_commands.add_parser(
        "revoke", help="remove NAME's tokens: a running coordinator refuses them at once"
    )
    revoke.add_argument("name")
    revoke.add_argument("--id", default="", help="only the token whose id (list) starts so")
    revoke.add_argument("--tokens", type=Path, required=True, help="the coordinator's tokens file")
    token.set_defaults(run=_token)

    agent = coordinator_option(commands.add_parser("agent", help="run a render agent"))
    agent.add_argument("--agent-id", default="", help="default: --tls-cert's name, or host-pid")
    agent.add_argument("--tls-cert", type=Path, help="the agent's certificate (its identity)")
    agent.add_argument("--tls-key", type=Path, help="the key of --tls-cert")
    agent.add_argument(
        "--output-root",
        action="append",
        default=[],
        metavar="URL",
        help="write only under this prefix (repeatable; default: anywhere the coordinator says)",
    )
    agent.add_argument("--slots", type=int, default=None, help="pages at once (default: sized)")
    agent.add_argument(
        "--ready-timeout", type=float, default=limits.RenderLimits.ready_timeout, help="seconds"
    )
    agent.add_argument(
        "--frame-timeout", type=float, default=limits.RenderLimits.frame_timeout, help="seconds"
    )
    agent.add_argument(
        "--drain-grace",
        type=float,
        default=spot.DRAIN_GRACE,
        help=f"seconds running jobs get on SIGTERM or a spot notice before they are handed back"
        f" ({spot.DRAIN_GRACE:g}: inside EC2's {spot.NOTICE_SECONDS} s notice)",
    )
    agent.add_argument(
        "--spot-notice-url",
        default="auto",
        help="drain when this spot instance-action URL announces an interruption; auto: EC2's"
        f" own ({spot.EC2_URL}) when running on EC2; off: never",
    )
    agent.add_argument(
        "--spot-poll-interval", type=float, default=spot.POLL_INTERVAL, help="seconds"
    )
    agent.add_argument(
        "--page-renders", type=int, default=limits.PAGE_RENDERS, help="recycle a page after N"
    )
    agent.add_argument(
        "--page-heap-mb", type=int, default=limits.PAGE_HEAP_MB, help="recycle a page above"
    )
    agent.add_argument(
        "--page-memory-mb",
        type=int,
        default=limits.PAGE_MEMORY_MB,
        help="kill a renderer whose resident memory passes this; its job fails as "
        "TEMPLATE_RESOURCE_LIMIT (0: no limit)",
    )
    agent.add_argument(
        "--no-chromium-sandbox",
        action="store_true",
        help="run Chromium without its sandbox: only where the kernel refuses unprivileged "
        "user namespaces (it is off as root anyway)",
    )
    agent.add_argument(
        "--noop", action="store_true", help="benchmarks only: complete jobs without rendering"
    )
    agent.add_argument("--http", default=None, help=HTTP_HELP)
    from_environment(agent)  # after the last option: each reads FRAMEFLEET_<OPTION>
    agent.set_defaults(run=_agent, service="agent")

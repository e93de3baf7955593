"""Coordinator settings, with the defaults an embedded farm runs on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from framefleet.coordinator.supervisor import RESTART
from framefleet.core.backoff import Backoff

Clock = Callable[[], float]


@dataclass
class CoordinatorConfig:
    listen: str = "127.0.0.1:7070"
    store_url: str = "sqlite:///framefleet.db"
    # Apply missing schema migrations at start (None: only for an SQLite store, which no other
    # process shares; a shared PostgreSQL is migrated by `framefleet migrate`, once).
    auto_migrate: bool | None = None
    # Where jobs without a destination write their output.
    default_destination: str = "out"
    lease_ttl: float = 20.0
    heartbeat_interval: float = 5.0
    reap_interval: float = 1.0
    # Retry backoff: base * 2^(attempt-1), capped, with jitter.
    retry_base: float = 2.0
    retry_cap: float = 300.0
    # Hand-backs by draining agents (spot interruptions, scale-in) a job may take before it
    # fails as INTERRUPTED; they spend no attempt.
    max_interruptions: int = 10
    # Trust (docs/how-to/secure.md). TLS for --listen: certificate and key.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Agents connect to agent_listen with a client certificate signed by agent_ca; the agent
    # id is the certificate's common name.
    agent_ca: Path | None = None
    agent_listen: str = ""
    # Client tokens (coordinator/tokens.py); None: every caller is trusted (loopback only).
    tokens: Path | None = None
    # Destinations clients may name (URL or directory prefixes); empty: only default_destination.
    allowed_outputs: list[str] = field(default_factory=list)
    # Completion webhooks (coordinator/webhooks.py): URL prefixes jobs may name (empty: none),
    # and the file whose contents sign each POST (None: unsigned).
    allowed_webhooks: list[str] = field(default_factory=list)
    webhook_secret: Path | None = None
    # Kubernetes: set each agent pod's deletion cost to its busy slots (deletion_cost.py).
    pod_deletion_cost: bool = False
    # Queued or running jobs one tenant may have (0: no cap); a batch counts all its rows.
    max_unfinished_per_tenant: int = 100_000
    # Slots (and so leases) one agent stream may hold, whatever its Hello says.
    max_slots_per_agent: int = 64
    # Background services (framefleet/coordinator/supervisor.py): the backoff between restarts of a
    # failing one, and after how many failures in a row the coordinator reports not ready.
    restart_backoff: Backoff = RESTART
    unready_after: int = 3
    clock: Clock = field(default=time.time)

    @property
    def migrates(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.store_url.startswith("sqlite:")

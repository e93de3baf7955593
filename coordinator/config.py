"""Coordinator settings, with the defaults an embedded farm runs on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class CoordinatorConfig:
    listen: str = "127.0.0.1:7070"
    store_url: str = "sqlite:///framefleet.db"
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
    clock: Clock = field(default=time.time)

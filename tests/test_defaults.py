"""Each default is written once: the coordinator's in CoordinatorConfig, which its command-line
options and the retry policy read. The deployment files that must repeat one (the Helm chart's
values) are checked against it here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from framefleet.agent import spot_notice
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.retry_policy import RetryPolicy
from tests.deploy_settings import command

VALUES = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "framefleet" / "values.yaml"
CONFIG = CoordinatorConfig()


def test_the_coordinator_command_defaults_to_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LISTEN", "STORE", "OUT", "LEASE_TTL", "HEARTBEAT_INTERVAL", "RETRY_BASE",
                 "MAX_INTERRUPTIONS", "MAX_QUEUED_PER_TENANT", "MAX_SLOTS_PER_AGENT"):  # fmt: skip
        monkeypatch.delenv(f"FRAMEFLEET_{name}", raising=False)
    args = command("coordinator").parse_args([])
    assert (args.listen, args.store, args.out) == (
        CONFIG.listen,
        CONFIG.store_url,
        CONFIG.default_destination,
    )
    assert (args.lease_ttl, args.heartbeat_interval) == (
        CONFIG.lease_ttl,
        CONFIG.heartbeat_interval,
    )
    assert (args.retry_base, args.max_interruptions) == (
        CONFIG.retry_base,
        CONFIG.max_interruptions,
    )
    assert (args.max_queued_per_tenant, args.max_slots_per_agent) == (
        CONFIG.max_unfinished_per_tenant,
        CONFIG.max_slots_per_agent,
    )


def test_the_retry_policy_defaults_to_the_config() -> None:
    policy, configured = RetryPolicy(), RetryPolicy.from_config(CONFIG)
    assert policy.backoff == configured.backoff
    assert policy.max_interruptions == configured.max_interruptions


def test_the_helm_chart_repeats_the_code_defaults() -> None:
    values = yaml.safe_load(VALUES.read_text())
    coordinator, agent = values["coordinator"], values["agent"]
    assert coordinator["leaseTtl"] == CONFIG.lease_ttl
    assert coordinator["heartbeatInterval"] == CONFIG.heartbeat_interval
    assert agent["drainGrace"] == spot_notice.DRAIN_GRACE


def test_the_agent_command_defaults_to_the_agents_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import fields

    from framefleet.agent.limits import RenderLimits
    from framefleet.agent.runner import AgentConfig

    for name in ("READY_TIMEOUT", "FRAME_TIMEOUT", "PAGE_RENDERS", "PAGE_HEAP_MB",
                 "PAGE_MEMORY_MB", "DRAIN_GRACE"):  # fmt: skip
        monkeypatch.delenv(f"FRAMEFLEET_{name}", raising=False)
    args = command("agent").parse_args([])
    own = {f.name: f for f in fields(AgentConfig)}
    limits = RenderLimits()
    assert (args.ready_timeout, args.frame_timeout) == (limits.ready_timeout, limits.frame_timeout)
    assert args.page_renders == own["page_renders"].default
    assert args.page_heap_mb * 1024 * 1024 == own["page_heap_bytes"].default
    assert args.page_memory_mb * 1024 * 1024 == own["page_memory_bytes"].default
    assert args.drain_grace == own["drain_grace"].default

"""deploy/: the Grafana dashboard reads only metrics that framefleet exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import framefleet.agent.metrics
import framefleet.coordinator.metrics  # noqa: F401  (registers the coordinator's metrics)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_samples() -> set[str]:
    """Every series name the registries can export, whether or not it has a sample yet."""
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"framefleet_[a-z_]+", expr)}
    assert used, "the dashboard queries nothing"
    missing = used - exported_samples()
    assert not missing, f"the dashboard reads metrics nobody exports: {sorted(missing)}"
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "Variants rendered",
        "p95 render time",
        "Failure rate",
        "Failures by error class",
    } <= titles

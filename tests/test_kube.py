"""The chart applied to a real Kubernetes API server (etcd and kube-apiserver, with KEDA's,
the Prometheus operator's and cert-manager's CRDs from their own modules): `helm install` with
the default and the spot values, hooks in order, and the stored objects as the cluster keeps
them, validated, defaulted and pruned by their schemas (a field a CRD does not know is refused
or dropped here as in a cluster). No kubelet: pods are never made; the Job controller's one act
(the migrations Job completing) is played through its status.

Select with `-k kube` (`make test-kube`). Skipped until kube-apiserver is built
(scripts/install_kube.sh: 6 to 17 minutes on 2 cores once, cached in ~/.cache/framefleet/kube).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from framefleet.coordinator.deletion_cost import ANNOTATION, DeletionCosts, KubeApi
from tests.kube_server import KubeServer
from tests.test_helm import CHART, HELM, SPOT

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

MIGRATE = "farm-framefleet-migrate"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
    server = KubeServer.start(tmp_path_factory.mktemp("kube"))
    try:
        yield server
    finally:
        server.stop()


def complete_migrations(kube: KubeServer, namespace: str, stop: threading.Event) -> None:
    """What the Job controller does once the migrations pod exits 0: the Job's status says
    Complete (helm waits for that before the rest of the release)."""
    conditions = [{"type": t, "status": "True"} for t in ("SuccessCriteriaMet", "Complete")]
    status = json.dumps(
        {
            "status": {
                "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:00:05Z",
                "succeeded": 1,
                "conditions": conditions,
            }
        }
    )
    while not stop.wait(0.5):
        found = kube.kubectl("get", "job", MIGRATE, "-n", namespace, "-o", "name", check=False)
        if found.returncode == 0 and found.stdout.strip():
            kube.kubectl(
                "patch", "job", MIGRATE, "-n", namespace, "--subresource=status",
                "--type=merge", "-p", status, check=False,
            )  # fmt: skip


def helm(kube: KubeServer, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`helm ARGS` against the API server, completing the migrations Job when it appears."""
    namespace = str(args[args.index("-n") + 1]) if "-n" in args else "default"
    stop = threading.Event()
    completer = threading.Thread(target=complete_migrations, args=(kube, namespace, stop))
    completer.start()
    try:
        return subprocess.run(
            [str(HELM), "--kubeconfig", str(kube.kubeconfig), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stop.set()
        completer.join()


def installed(kube: KubeServer, namespace: str) -> list[dict[str, Any]]:
    """The release's manifests as helm applied them (hooks not included)."""
    manifest = helm(kube, "get", "manifest", "farm", "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(manifest) if d]


def subset(rendered: Any, stored: Any, where: str = "") -> list[str]:
    """Where ``rendered`` is not inside ``stored``: a field the API server dropped or changed."""
    if isinstance(rendered, dict):
        if not isinstance(stored, dict):
            return [f"{where}: {stored!r}"]
        return [
            problem
            for key, value in rendered.items()
            for problem in (
                subset(value, stored[key], f"{where}.{key}")
                if key in stored
                else [f"{where}.{key}"]
            )
        ]
    if isinstance(rendered, list):
        if not isinstance(stored, list) or len(stored) != len(rendered):
            return [f"{where}: {stored!r}"]
        return [
            p
            for i, (r, s) in enumerate(zip(rendered, stored, strict=True))
            for p in subset(r, s, f"{where}[{i}]")
        ]
    return [] if rendered == stored or str(rendered) == str(stored) else [f"{where}: {stored!r}"]


# Objects whose specs the API server keeps as sent (no quantities to canonicalise): every field
# the chart sets must survive validation and pruning.
KEPT_AS_SENT = {"ScaledObject", "ServiceMonitor", "Issuer", "NetworkPolicy", "PodDisruptionBudget"}


def test_default_values_install_with_the_migrations_hook_first(kube: KubeServer) -> None:
    done = helm(
        kube, "install", "farm", CHART, "-n", "trial", "--create-namespace", "--timeout", "120s"
    )
    assert done.returncode == 0, done.stdout + done.stderr + kube.logs()
    # The hook's Secret was made before the Job that reads it; the Job, once complete, went.
    assert kube.get("secret", "farm-framefleet-store", "trial")["data"]["store-url"]
    assert kube.kubectl("get", "job", MIGRATE, "-n", "trial", check=False).returncode != 0
    coordinator = kube.get("deployment", "farm-framefleet-coordinator", "trial")["spec"]
    assert coordinator["replicas"] == 1
    (c,) = coordinator["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert (
        kube.kubectl(
            "get", "pdb", "farm-framefleet-coordinator", "-n", "trial", check=False
        ).returncode
        != 0
    )

    # An upgrade with a new store URL changes the pod templates (a rollout); one with the
    # same values changes nothing.
    def generations() -> dict[str, int]:
        return {
            name: kube.get("deployment", f"farm-framefleet-{name}", "trial")["metadata"][
                "generation"
            ]
            for name in ("coordinator", "agent")
        }

    before = generations()
    same = helm(kube, "upgrade", "farm", CHART, "-n", "trial", "--timeout", "120s")
    assert same.returncode == 0, same.stderr
    assert generations() == before
    moved = helm(
        kube, "upgrade", "farm", CHART, "-n", "trial", "--timeout", "120s",
        "--set", "store.url=postgresql://framefleet@db-2:5432/framefleet",
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert all(after > before[name] for name, after in generations().items())


def test_spot_values_install_and_the_cluster_keeps_every_field(kube: KubeServer) -> None:
    done = helm(
        kube,
        "install",
        "farm",
        CHART,
        "-n",
        "spot",
        "--create-namespace",
        "-f",
        SPOT,
        "--timeout",
        "120s",
    )
    assert done.returncode == 0, done.stdout + done.stderr + kube.logs()
    for document in installed(kube, "spot"):
        kind, name = document["kind"], document["metadata"]["name"]
        stored = kube.get(kind, name, "spot")
        if kind in KEPT_AS_SENT:
            assert subset(document["spec"], stored["spec"], kind) == [], (kind, name)

    coordinator = kube.get("deployment", "farm-framefleet-coordinator", "spot")["spec"]
    assert coordinator["replicas"] == 2
    assert coordinator["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (c,) = coordinator["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    pdb = kube.get("pdb", "farm-framefleet-coordinator", "spot")["spec"]
    assert pdb["minAvailable"] == 1
    scaled = kube.get("scaledobject", "farm-framefleet-agent", "spot")["spec"]
    assert scaled["fallback"]["replicas"] >= 1 and scaled["minReplicaCount"] == 0
    assert scaled["triggers"][0]["metadata"]["ignoreNullValues"] == "false"
    monitor = kube.get("servicemonitor", "farm-framefleet-coordinator", "spot")["spec"]
    (endpoint,) = monitor["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "framefleet-tls", "key": "ca.crt"}
    assert endpoint["tlsConfig"]["serverName"] == "farm-framefleet-coordinator"
    policies = kube.kubectl("get", "networkpolicy", "-n", "spot", "-o", "name").stdout.split()
    assert sorted(policies) == [
        "networkpolicy.networking.k8s.io/farm-framefleet-agent",
        "networkpolicy.networking.k8s.io/farm-framefleet-coordinator",
    ]


def test_the_coordinators_token_sets_deletion_costs_and_may_do_nothing_else(
    kube: KubeServer,
) -> None:
    """Scale-in takes idle agents first: with the spot release's Role, the coordinator's code
    (coordinator/deletion_cost.py) annotates agent pods with their busy slots, through this
    API server, as the account the chart binds; that account may not delete or read pods."""
    if kube.kubectl("get", "deployment", "-n", "spot", "-o", "name").stdout == "":
        pytest.skip("needs the spot release (the test above)")
    account = "system:serviceaccount:spot:farm-framefleet"

    def can(verb: str, resource: str, namespace: str = "spot") -> bool:
        done = kube.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, "--as", account, check=False
        )
        return done.stdout.strip() == "yes"

    assert can("patch", "pods")
    assert (
        not can("delete", "pods") and not can("get", "secrets") and not can("patch", "deployments")
    )
    assert not can("patch", "pods", "trial")
    pod = "farm-framefleet-agent-5d8f7-x2k9q"
    kube.kubectl(
        "run", pod, "-n", "spot", "--image", "framefleet", "--restart", "Never",
        "--labels", "app.kubernetes.io/component=agent",
        # The chart's account, as the agent Deployment names it (no controller makes "default").
        "--overrides", '{"spec": {"serviceAccountName": "farm-framefleet"}}',
    )  # fmt: skip
    token = kube.root / "coordinator.token"
    token.write_text(kube.kubectl("create", "token", "farm-framefleet", "-n", "spot").stdout)
    api = KubeApi(kube.url, token, kube.root / "certs" / "apiserver.crt", "spot")

    def cost() -> str | None:
        annotations = kube.get("pod", pod, "spot")["metadata"].get("annotations", {})
        value: str | None = annotations.get(ANNOTATION)
        return value

    async def scenario() -> None:
        costs = DeletionCosts(api)
        try:
            await costs.update({pod: 2, "agent-on-a-laptop": 1})  # the second is no pod: no harm
            assert cost() == "2"
            await costs.update({pod: 0})
            assert cost() == "0"
        finally:
            await costs.close()

    asyncio.run(scenario())


def test_a_bad_values_file_fails_install_with_the_schemas_message(
    kube: KubeServer, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("agent:\n  slots: 0\ncoordinator:\n  replica: 2\n")
    refused = helm(kube, "install", "bad", CHART, "-n", "bad", "--create-namespace", "-f", values)
    assert refused.returncode != 0
    assert "/agent/slots': minimum: got 0, want 1" in refused.stderr, refused.stderr
    assert "additional properties 'replica' not allowed" in refused.stderr
    assert kube.kubectl("get", "deployment", "-n", "bad", "-o", "name").stdout == ""

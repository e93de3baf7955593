"""deploy/helm/framefleet: `helm lint` passes and `helm template` renders, with the default values
and the spot/production ones; the rendered manifests keep what an operator relies on (probes,
the migrations hook, drain time above the agent's grace, spot placement, non-root, resources
from the slot rules, PDB, autoscaling on queue depth, Secrets, ServiceMonitor)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import agent.metrics  # noqa: F401  (registers the agent's metrics)
import coordinator.metrics  # noqa: F401  (registers the coordinator's metrics)
from agent.capacity import CORES_PER_SLOT, PAGE_MEMORY
from agent.runner import ACK_WAIT
from agent.spot_notice import DRAIN_GRACE
from coordinator.server import exposure_problems
from tests.deploy_settings import (
    check_settings,
    coordinator_config,
    submit_teal,
    wait_for_agent_http,
)
from tests.farm_processes import Farm, Trust
from tests.moto_server import CREDENTIALS, MotoServer, create_bucket, only_object
from tests.postgres_server import PostgresServer
from tests.video import decode, is_colour

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "framefleet"
HELM = ROOT / ".tools" / "bin" / "helm"
SPOT = CHART / "values-spot.yaml"
IMAGE_USER = 10001  # deploy/Dockerfile's USER

Manifests = dict[tuple[str, str], dict[str, Any]]


def helm(*args: str | Path) -> str:
    assert HELM.exists(), "helm is missing: run scripts/install_tools.sh (make setup)"
    done = subprocess.run([str(HELM), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def render(*args: str | Path) -> Manifests:
    text = helm("template", "farm", CHART, *args)
    documents = [d for d in yaml.safe_load_all(text) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


@pytest.fixture(scope="module")
def default() -> Manifests:
    return render()


@pytest.fixture(scope="module")
def spot() -> Manifests:
    return render("-f", SPOT)


def container(manifests: Manifests, name: str) -> dict[str, Any]:
    pod = manifests[("Deployment", f"farm-framefleet-{name}")]["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    result: dict[str, Any] = only
    return result


def pod_spec(manifests: Manifests, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifests[("Deployment", f"farm-framefleet-{name}")]["spec"]["template"][
        "spec"
    ]
    return spec


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


@pytest.mark.parametrize("values", [[], ["-f", SPOT]], ids=["default", "spot"])
def test_helm_lint(values: list[str | Path]) -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", CHART, *values)


@pytest.mark.parametrize("which", ["default", "spot"])
def test_the_coordinator_has_probes_a_service_and_its_migrations_first(
    which: str, request: pytest.FixtureRequest
) -> None:
    manifests: Manifests = request.getfixturevalue(which)
    coordinator = container(manifests, "coordinator")
    assert coordinator["args"] == ["coordinator"]
    assert coordinator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert coordinator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in coordinator["ports"]}
    variables = env(coordinator)
    assert variables["FRAMEFLEET_HTTP"] == f"0.0.0.0:{ports['http']}"
    assert variables["FRAMEFLEET_LISTEN"] == f"0.0.0.0:{ports['grpc']}"
    service = manifests[("Service", "farm-framefleet-coordinator")]["spec"]
    assert {p["name"] for p in service["ports"]} >= {"grpc", "http"}

    job = manifests[("Job", "farm-framefleet-migrate")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"][:2] == ["migrate", "--store"]
    # The store URL comes from a Secret, for the Job and the coordinator alike.
    secret = variables["FRAMEFLEET_STORE"]["secretKeyRef"]
    assert env(migrate)["FRAMEFLEET_STORE"]["secretKeyRef"] == secret
    if which == "default":
        stored = manifests[("Secret", secret["name"])]
        # The migrations hook reads it, so it exists before the hook runs.
        assert int(stored["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
        assert secret["key"] in stored["stringData"]


@pytest.mark.parametrize("which", ["default", "spot"])
def test_agents_drain_inside_their_termination_grace(
    which: str, request: pytest.FixtureRequest
) -> None:
    manifests: Manifests = request.getfixturevalue(which)
    agent = container(manifests, "agent")
    spec = pod_spec(manifests, "agent")
    variables = env(agent)
    grace = float(variables["FRAMEFLEET_DRAIN_GRACE"])
    assert grace == DRAIN_GRACE
    assert spec["terminationGracePeriodSeconds"] > grace + ACK_WAIT
    assert variables["FRAMEFLEET_SPOT_NOTICE_URL"] != "off"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Non-root, as the image's user, and no way to gain privileges.
    security = agent["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == IMAGE_USER
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # Resources from the slot rules the agent itself applies (agent/capacity.py).
    slots = int(variables["FRAMEFLEET_SLOTS"])
    requests = agent["resources"]["requests"]
    assert int(requests["cpu"]) == slots * CORES_PER_SLOT
    assert int(requests["memory"].removesuffix("Mi")) >= slots * PAGE_MEMORY // 2**20
    pdb = manifests[("PodDisruptionBudget", "farm-framefleet-agent")]["spec"]
    assert (
        pdb["selector"]["matchLabels"]
        == (manifests[("Deployment", "farm-framefleet-agent")]["spec"]["selector"]["matchLabels"])
    )


def test_spot_values_place_agents_on_spot_nodes_securely(spot: Manifests) -> None:
    spec = pod_spec(spot, "agent")
    assert spec["nodeSelector"] == {"eks.amazonaws.com/capacityType": "SPOT"}
    assert {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    coordinator = env(container(spot, "coordinator"))
    assert "FRAMEFLEET_INSECURE" not in coordinator
    volumes = {v["name"]: v for v in pod_spec(spot, "coordinator")["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "framefleet-tls"
    assert volumes["tokens"]["secret"]["secretName"] == "framefleet-tokens"
    assert volumes["agent-ca"]["secret"]["secretName"] == "framefleet-agent-ca"
    # Agents reach the mutual-TLS address with a certificate of their own, named after the pod.
    agent = env(container(spot, "agent"))
    agent_port = coordinator["FRAMEFLEET_AGENT_LISTEN"].rsplit(":", 1)[1]
    assert agent["FRAMEFLEET_COORDINATOR"] == f"farm-framefleet-coordinator:{agent_port}"
    assert agent["FRAMEFLEET_TLS_CA"].endswith("ca.crt") and agent["FRAMEFLEET_TLS_CERT"]
    (cert,) = [v for v in pod_spec(spot, "agent")["volumes"] if "csi" in v]
    attributes = cert["csi"]["volumeAttributes"]
    assert attributes["csi.cert-manager.io/common-name"] == "${POD_NAME}"
    assert agent["FRAMEFLEET_AGENT_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    issuer = spot[("Issuer", attributes["csi.cert-manager.io/issuer-name"])]
    assert issuer["spec"]["ca"]["secretName"] == "framefleet-agent-ca"
    assert {("ServiceMonitor", f"farm-framefleet-{c}") for c in ("coordinator", "agent")} <= (
        spot.keys()
    )


@pytest.mark.parametrize("which", ["default", "spot"])
def test_the_coordinator_starts_exposed_only_when_secured_or_insecure_on_purpose(
    which: str, request: pytest.FixtureRequest
) -> None:
    """The coordinator's own rule (exposure_problems) on the rendered settings: a farm that
    would refuse to start fails here instead of in a crash loop."""
    variables = env(container(request.getfixturevalue(which), "coordinator"))
    config = coordinator_config(variables)
    problems = exposure_problems(config)
    if which == "spot":
        assert problems == []
    else:
        assert problems and variables["FRAMEFLEET_INSECURE"] == "1"


def test_agents_scale_on_queue_depth_with_keda_or_cpu_without(spot: Manifests) -> None:
    scaled = spot[("ScaledObject", "farm-framefleet-agent")]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "farm-framefleet-agent"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    exported = {family.name for family in REGISTRY.collect()}
    assert "framefleet_queue_depth" in trigger["metadata"]["query"]
    for name in ("framefleet_queue_depth", "framefleet_agent_slots_busy"):
        assert name in exported
    assert "replicas" not in spot[("Deployment", "farm-framefleet-agent")]["spec"]
    assert not any(kind == "HorizontalPodAutoscaler" for kind, _ in spot)

    fallback = render("--set", "autoscaling.hpa.enabled=true")
    assert ("HorizontalPodAutoscaler", "farm-framefleet-agent") in fallback
    assert not any(kind == "ScaledObject" for kind, _ in fallback)


def test_the_commands_accept_their_settings(default: Manifests, spot: Manifests) -> None:
    for which, manifests in (("default", default), ("spot", spot)):
        for name in ("coordinator", "agent"):
            c = container(manifests, name)
            args = check_settings(f"{which} {name}", c["args"][0], env(c))
            if name == "agent":
                assert args.drain_grace == DRAIN_GRACE and args.slots >= 1
        (migrate,) = manifests[("Job", "farm-framefleet-migrate")]["spec"]["template"]["spec"][
            "containers"
        ]
        check_settings(f"{which} migrate", "migrate", env(migrate))


POD = "farm-framefleet-agent-5d8f7-x2k9q"  # the agent pod's name: its id and certificate name


@pytest.mark.e2e
def test_the_spot_chart_renders_into_s3(tmp_path: Path, postgres: PostgresServer) -> None:
    """The rendered spot manifests run as processes: the migrations Job, the coordinator and an
    agent with the env, Secrets and mounted files their pod specs name (TLS, tokens, the agent CA,
    the agent's own certificate from the CSI driver), then a submit lands a video in S3. Only
    addresses, the database and the S3 endpoint (IRSA's part) are this test's."""
    bucket = "my-renders"
    moto = MotoServer.start(tmp_path / "moto.log")
    asyncio.run(create_bucket(moto.url, bucket))
    trust = Trust(tmp_path / "certs")
    cert, key = trust.agent_cert(POD)
    manifests = render(
        "-f", SPOT, "--set", "agent.slots=1", "--set", f"s3.destination=s3://{bucket}/videos"
    )
    secrets: dict[str, dict[str, str | Path]] = {
        "framefleet-store": {"store-url": asyncio.run(postgres.create_database(migrated=False))},
        "framefleet-tls": {
            "tls.crt": trust.root / "coordinator.pem",
            "tls.key": trust.root / "coordinator.key",
            "ca.crt": trust.ca,
        },
        "framefleet-tokens": {"tokens": trust.tokens},
        "framefleet-agent-ca": {"tls.crt": trust.ca, "tls.key": trust.root / "ca.key"},
    }
    # What IRSA and the region give a pod on EKS.
    aws = {**CREDENTIALS, "FRAMEFLEET_S3_ENDPOINT": moto.url}
    farm = Farm(tmp_path / "farm", secure=False)

    def mounted(spec: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
        """Container path -> this test's file, for every Secret or certificate it mounts."""
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        files: dict[str, str] = {}
        for mount in c.get("volumeMounts", []):
            volume, at = volumes[mount["name"]], mount["mountPath"]
            if "csi" in volume:
                files |= {f"{at}/tls.crt": str(cert), f"{at}/tls.key": str(key)}
            elif "secret" in volume:
                keys = secrets[volume["secret"]["secretName"]]
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in keys]
                files |= {f"{at}/{item['path']}": str(keys[item["key"]]) for item in items}
        return files

    def environment(spec: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
        files = mounted(spec, c)
        result = dict(aws)
        for name, value in env(c).items():
            if name.startswith("OTEL_EXPORTER"):
                continue  # no collector here
            if isinstance(value, dict) and "secretKeyRef" in value:
                value = str(secrets[value["secretKeyRef"]["name"]][value["secretKeyRef"]["key"]])
            elif isinstance(value, dict):
                assert value == {"fieldRef": {"fieldPath": "metadata.name"}}, value
                value = POD
            if value.startswith("/etc/framefleet/"):
                assert value in files, f"{name}={value}: the pod mounts no such file"
                value = files[value]
            value = re.sub(r"^0\.0\.0\.0:\d+$", "127.0.0.1:0", value)
            if value.startswith("farm-framefleet-coordinator:"):
                value = farm.agent_address  # agents' port: the one with agent certificates
            result[name] = value
        return result

    try:
        job = manifests[("Job", "farm-framefleet-migrate")]["spec"]["template"]["spec"]
        (migrate,) = job["containers"]
        migrate_env = environment(job, migrate)
        args = [re.sub(r"\$\((\w+)\)", lambda m: migrate_env[m[1]], a) for a in migrate["args"]]
        done = farm.run_service(args, migrate_env)
        assert done.returncode == 0, done.stderr
        for name in ("coordinator", "agent"):
            spec = pod_spec(manifests, name)
            farm.start_service(
                name,
                container(manifests, name)["args"],
                environment(spec, container(manifests, name)),
            )
        agent_log = farm.processes[-1].log
        wait_for_agent_http(agent_log)

        submitted = submit_teal(farm.address, trust.client_env())
        assert submitted.returncode == 0, submitted.stderr + farm.logs()
        keys, data = asyncio.run(only_object(moto.url, bucket))
        assert len(keys) == 1 and keys[0].startswith("videos/") and data
        video = tmp_path / "video.mp4"
        video.write_bytes(data)
        frames = decode(video)
        assert len(frames) == 4 and is_colour(frames[-1][32, 32], (0, 128, 128))
    finally:
        farm.close()
        moto.stop()

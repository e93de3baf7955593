"""deploy/helm/framefleet: `helm lint` passes and `helm template` renders, with the default values
and the spot/production ones; the rendered manifests do what a cluster needs of them: the
kubelet's probes and Prometheus's scrapes speak what the pod serves (HTTPS with TLS on), KEDA
never reads a missing metric as "no work", a coordinator stays up through drains and rollouts,
a changed Secret rolls the pods, the NetworkPolicies let through exactly the traffic the pods
send, and a bad values file is refused by the schema. The spot manifests also run as processes
(the migrations Job, coordinator and agent with their env and mounted files) into S3.
tests/test_kube.py applies the chart to a real API server."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import framefleet.agent.metrics
import framefleet.coordinator.metrics  # noqa: F401  (registers the coordinator's metrics)
from framefleet.agent.capacity import CORES_PER_SLOT, PAGE_MEMORY
from framefleet.agent.runner import ACK_WAIT
from framefleet.agent.spot_notice import DRAIN_GRACE
from framefleet.commands.certs import make_leaf
from framefleet.coordinator.server import exposure_problems
from tests.deploy_settings import (
    check_settings,
    coordinator_config,
    submit_teal,
    wait_for_agent_http,
)
from tests.farm_processes import FarmProcesses, Trust
from tests.moto_server import CREDENTIALS, MotoServer, create_bucket, only_object
from tests.postgres_server import PostgresServer
from tests.video import decode, is_colour

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "framefleet"
HELM = ROOT / ".tools" / "bin" / "helm"
SPOT = CHART / "values-spot.yaml"
IMAGE_USER = 10001  # deploy/Dockerfile's USER

Manifests = dict[tuple[str, str], dict[str, Any]]


def helm_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert HELM.exists(), "helm is missing: run scripts/install_tools.sh (make setup)"
    return subprocess.run([str(HELM), *map(str, args)], capture_output=True, text=True, timeout=120)


def helm(*args: str | Path) -> str:
    done = helm_run(*args)
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


def http_scheme(variables: dict[str, Any]) -> str:
    """What a coordinator so configured serves on --http: HTTPS with its gRPC certificate when
    it has one (framefleet/commands/servers.py), as the kubelet's probe scheme names it."""
    config = coordinator_config({k: v for k, v in variables.items() if isinstance(v, str)})
    return "HTTPS" if config.tls_cert is not None else "HTTP"


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
    variables = env(coordinator)
    # The kubelet probes the --http port in the scheme the coordinator serves it in, given the
    # TLS settings the same pod gets (HTTPS with a certificate; the e2e tests probe for real).
    scheme = http_scheme(variables)
    assert coordinator["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "http",
        "scheme": scheme,
    }
    assert coordinator["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "http",
        "scheme": scheme,
    }
    assert (which == "spot") == (scheme == "HTTPS")
    ports = {p["name"]: p["containerPort"] for p in coordinator["ports"]}
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
    # Resources from the slot rules the agent itself applies (framefleet/agent/capacity.py).
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
    query = trigger["metadata"]["query"]
    series = set(re.findall(r"framefleet_\w+", query))
    assert series == {"framefleet_queue_depth", "framefleet_agent_slots_busy"}
    assert series <= exported
    # The coordinators' queue is never defaulted: without its series the query is empty, which
    # KEDA (ignoreNullValues false) counts as a failure and answers with the fallback, instead
    # of "no work" and a scale-in of every agent. Two coordinators report one table: max.
    assert not re.search(r"framefleet_queue_depth[^+]*\bor\b", query), query
    assert query.startswith("max(framefleet_queue_depth{")
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    assert trigger["metricType"] == "AverageValue"  # fallback works with AverageValue only
    assert scaled["fallback"]["failureThreshold"] >= 1 and scaled["fallback"]["replicas"] >= 1
    # KEDA applies cooldownPeriod only to the step to zero: with minReplicaCount 1 it would do
    # nothing. The steps between are the HPA's stabilization window.
    assert scaled["minReplicaCount"] == 0 and scaled["cooldownPeriod"] > 0
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert "replicas" not in spot[("Deployment", "farm-framefleet-agent")]["spec"]
    assert not any(kind == "HorizontalPodAutoscaler" for kind, _ in spot)

    fallback = render("--set", "autoscaling.hpa.enabled=true")
    assert ("HorizontalPodAutoscaler", "farm-framefleet-agent") in fallback
    assert not any(kind == "ScaledObject" for kind, _ in fallback)


def test_two_coordinators_keep_one_through_drains_and_rollouts(
    default: Manifests, spot: Manifests
) -> None:
    """What the disruption controller and the Deployment controller allow: with the spot
    values a drain may evict one coordinator but never the last, a rollout starts the new pod
    before stopping an old one; a single coordinator gets no PDB (it would block every
    drain)."""
    deployment = spot[("Deployment", "farm-framefleet-coordinator")]["spec"]
    replicas = deployment["replicas"]
    assert replicas == 2
    pdb = spot[("PodDisruptionBudget", "farm-framefleet-coordinator")]["spec"]
    assert (
        pdb["selector"]["matchLabels"].items()
        <= deployment["template"]["metadata"]["labels"].items()
    )
    evictable = replicas - pdb["minAvailable"]
    assert pdb["minAvailable"] >= 1 and evictable >= 1
    rolling = deployment["strategy"]["rollingUpdate"]
    assert deployment["strategy"]["type"] == "RollingUpdate"
    assert replicas - rolling["maxUnavailable"] >= 1 and rolling["maxSurge"] >= 1
    # Spread over nodes: one node's loss leaves one.
    terms = pod_spec(spot, "coordinator")["affinity"]["podAntiAffinity"]
    (term,) = terms["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert default[("Deployment", "farm-framefleet-coordinator")]["spec"]["replicas"] == 1
    assert ("PodDisruptionBudget", "farm-framefleet-coordinator") not in default


def pod_template(manifests: Manifests, name: str) -> dict[str, Any]:
    template: dict[str, Any] = manifests[("Deployment", f"farm-framefleet-{name}")]["spec"][
        "template"
    ]
    return template


@pytest.mark.parametrize("which", ["default", "spot"])
def test_only_the_coordinator_holds_the_token_that_sets_deletion_costs(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Scale-in takes idle agents first: the coordinator runs --pod-deletion-cost with a
    service account token whose Role may patch pods and nothing else; the agents, which render
    untrusted templates, mount no token at all."""
    manifests: Manifests = request.getfixturevalue(which)
    coordinator = pod_spec(manifests, "coordinator")
    args = check_settings("coordinator", "coordinator", env(container(manifests, "coordinator")))
    assert args.pod_deletion_cost and coordinator["automountServiceAccountToken"] is True
    account = coordinator["serviceAccountName"]
    assert manifests[("ServiceAccount", account)]["automountServiceAccountToken"] is False
    agent = pod_spec(manifests, "agent")
    assert agent.get("automountServiceAccountToken") is not True
    assert agent["serviceAccountName"] == account  # so the account's "no token" holds for it
    role = manifests[("Role", "farm-framefleet-coordinator")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
    binding = manifests[("RoleBinding", "farm-framefleet-coordinator")]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == account
    off = render("--set", "coordinator.podDeletionCost=false")
    assert not any(kind in ("Role", "RoleBinding") for kind, _ in off)
    assert "FRAMEFLEET_POD_DELETION_COST" not in env(container(off, "coordinator"))


def test_a_changed_secret_rolls_the_pods_and_nothing_else_does() -> None:
    """The Deployment controller rolls pods when their template changes: a new store URL or
    token file (read at start, or from env) must change it; scaling agents must not."""
    base = render("--set", "store.url=postgresql://a@db/farm")
    moved = render("--set", "store.url=postgresql://b@db/farm")
    tokens = render("--set", "store.url=postgresql://a@db/farm", "--set", "tokens.file=t")
    scaled = render("--set", "store.url=postgresql://a@db/farm", "--set", "agent.replicas=7")
    for name in ("coordinator", "agent"):
        assert pod_template(base, name) != pod_template(moved, name), name
        assert pod_template(base, name) != pod_template(tokens, name), name
        assert pod_template(base, name) == pod_template(scaled, name), name


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def admits(
    manifests: Manifests,
    target: dict[str, Any],
    port: str,
    source: dict[str, str],
    namespace: dict[str, str],
) -> bool:
    """Whether the NetworkPolicies let a pod labelled ``source`` in a namespace labelled
    ``namespace`` reach ``target``'s (a pod template) named ``port``: as the API documents,
    a pod no policy selects takes everything; else any rule of any selecting policy may allow.
    Same namespace as the release unless ``namespace`` says otherwise."""
    policies = [
        d["spec"]
        for (kind, _), d in manifests.items()
        if kind == "NetworkPolicy"
        and _selects(d["spec"]["podSelector"], target["metadata"]["labels"])
    ]
    if not policies:
        return True
    same = namespace.get("kubernetes.io/metadata.name") == "default"
    for policy in policies:
        for rule in policy.get("ingress", []):
            if not any(p["port"] == port for p in rule["ports"]):
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                ns_ok = (
                    _selects(peer["namespaceSelector"], namespace)
                    if "namespaceSelector" in peer
                    else same
                )
                pod_ok = _selects(peer["podSelector"], source) if "podSelector" in peer else True
                if ns_ok and pod_ok:
                    return True
    return False


def test_network_policies_let_through_what_the_pods_send(spot: Manifests) -> None:
    coordinator = pod_template(spot, "coordinator")
    agent = pod_template(spot, "agent")
    release = {"kubernetes.io/metadata.name": "default"}
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    elsewhere = {"kubernetes.io/metadata.name": "shop"}
    stranger = {"app": "shop"}
    # The port agents dial (FRAMEFLEET_COORDINATOR) through the Service to a named pod port.
    dialled = int(env(container(spot, "agent"))["FRAMEFLEET_COORDINATOR"].rsplit(":", 1)[1])
    service = spot[("Service", "farm-framefleet-coordinator")]["spec"]
    (agents_port,) = [p["targetPort"] for p in service["ports"] if p["port"] == dialled]
    assert admits(spot, coordinator, agents_port, agent["metadata"]["labels"], release)
    assert not admits(spot, coordinator, agents_port, stranger, release)
    # Clients: anyone (clients list empty); Prometheus: from the monitoring namespace only.
    assert admits(spot, coordinator, "grpc", stranger, elsewhere)
    assert admits(spot, agent, "http", {}, monitoring)
    assert not admits(spot, agent, "http", stranger, elsewhere)
    # The default values make no policy: everything reaches everything.
    assert not any(kind == "NetworkPolicy" for kind, _ in render())


def test_ingress_and_routes_reach_the_ports_that_speak_their_protocol(spot: Manifests) -> None:
    assert not any(kind in ("Ingress", "GRPCRoute", "HTTPRoute") for kind, _ in spot)
    routed = render(
        "-f", SPOT,
        "--set", "ingress.enabled=true", "--set", "ingress.grpcHost=farm.example",
        "--set", "ingress.consoleHost=console.example",
        "--set", "gateway.enabled=true", "--set", "gateway.parentRefs[0].name=public",
        "--set", "gateway.grpcHost=farm.example",
    )  # fmt: skip
    service = routed[("Service", "farm-framefleet-coordinator")]["spec"]
    ports = {p["name"]: p["port"] for p in service["ports"]}
    grpc_ingress = routed[("Ingress", "farm-framefleet-coordinator-grpc")]
    # TLS on: the pod's gRPC and http ports both speak TLS, so the proxy must too.
    annotation = "nginx.ingress.kubernetes.io/backend-protocol"
    assert grpc_ingress["metadata"]["annotations"][annotation] == "GRPCS"
    backend = grpc_ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "farm-framefleet-coordinator" and backend["port"]["name"] == "grpc"
    console = routed[("Ingress", "farm-framefleet-coordinator-console")]
    assert console["metadata"]["annotations"][annotation] == "HTTPS"
    (rule,) = routed[("GRPCRoute", "farm-framefleet-coordinator")]["spec"]["rules"]
    assert rule["backendRefs"][0]["port"] == ports["grpc"]
    plain = render("--set", "ingress.enabled=true", "--set", "ingress.grpcHost=farm.example")
    grpc_plain = plain[("Ingress", "farm-framefleet-coordinator-grpc")]
    assert grpc_plain["metadata"]["annotations"][annotation] == "GRPC"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "agent.slots=0"], "/agent/slots': minimum: got 0, want 1"),
        (["--set", "coordinator.replica=2"], "additional properties 'replica' not allowed"),
        (["--set", "agent.spotNotice=sometimes"], "/agent/spotNotice"),
        (["--set", "autoscaling.keda.prometheusAddress=prometheus:9090"], "prometheusAddress"),
        (["--set", "metrics.serviceMonitor.interval=often"], "/metrics/serviceMonitor/interval"),
    ],
)
def test_a_bad_values_file_is_refused_with_the_schemas_message(
    values: list[str], message: str
) -> None:
    refused = helm_run("template", "farm", CHART, *values)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr


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


def kubelet_probe(address: str, probe: dict[str, Any]) -> int:
    """An httpGet probe as the kubelet makes it: its scheme (HTTP unless it says HTTPS), no
    certificate check over HTTPS. The status, or 0 when no HTTP answer came."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return _get(address, probe["path"], context if probe.get("scheme") == "HTTPS" else None, "")[0]


def _get(
    address: str, path: str, context: ssl.SSLContext | None, server_name: str
) -> tuple[int, str]:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            sock = context.wrap_socket(raw, server_hostname=server_name or host) if context else raw
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:  # refused, or a handshake that failed (ssl.SSLError is an OSError)
        return 0, ""
    if not data.startswith(b"HTTP/"):
        return 0, ""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def prometheus_scrape(address: str, endpoint: dict[str, Any], files: dict[str, Path]) -> str:
    """A ServiceMonitor endpoint's scrape as Prometheus makes it: its scheme, and over HTTPS
    the CA from the Secret it names and its serverName checked. The body, or fails."""
    context = None
    server_name = ""
    if endpoint.get("scheme", "http") == "https":
        tls = endpoint["tlsConfig"]
        context = ssl.create_default_context(cafile=files[tls["ca"]["secret"]["name"]])
        server_name = tls["serverName"]
    status, body = _get(address, endpoint["path"], context, server_name)
    assert status == 200, f"scrape {endpoint} of {address}: {status}"
    return body


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
    # As docs/tutorials/deploying-a-fleet.md makes it: the Service's name too, which the
    # ServiceMonitor checks.
    served, served_key = make_leaf(
        trust.root, "coordinator-svc", ["127.0.0.1", "farm-framefleet-coordinator"], server=True
    )
    manifests = render(
        "-f", SPOT, "--set", "agent.slots=1", "--set", f"s3.destination=s3://{bucket}/videos"
    )
    secrets: dict[str, dict[str, str | Path]] = {
        "framefleet-store": {"store-url": asyncio.run(postgres.create_database(migrated=False))},
        "framefleet-tls": {"tls.crt": served, "tls.key": served_key, "ca.crt": trust.ca},
        "framefleet-tokens": {"tokens": trust.tokens},
        "framefleet-agent-ca": {"tls.crt": trust.ca, "tls.key": trust.root / "ca.key"},
    }
    # What IRSA and the region give a pod on EKS.
    aws = {**CREDENTIALS, "FRAMEFLEET_S3_ENDPOINT": moto.url}
    farm = FarmProcesses(tmp_path / "farm", secure=False)

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
            if name.startswith("OTEL_EXPORTER") or name == "FRAMEFLEET_POD_DELETION_COST":
                continue  # no collector, no API server here (tests/test_kube.py has one)
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
        agent_http = wait_for_agent_http(agent_log)

        # The kubelet's probes and Prometheus's scrapes, as the manifests direct them.
        for name, address in (("coordinator", farm.http), ("agent", agent_http)):
            for probe in ("readinessProbe", "livenessProbe"):
                status = kubelet_probe(address, container(manifests, name)[probe]["httpGet"])
                assert 200 <= status < 400, f"{name} {probe}: {status}"
        ca_files = {
            name: Path(keys["ca.crt"]) for name, keys in secrets.items() if "ca.crt" in keys
        }
        for name, metric in (
            ("coordinator", "framefleet_queue_depth"),
            ("agent", "framefleet_agent_slots_busy"),
        ):
            monitor = manifests[("ServiceMonitor", f"farm-framefleet-{name}")]["spec"]
            (endpoint,) = monitor["endpoints"]
            address = farm.http if name == "coordinator" else agent_http
            assert metric in prometheus_scrape(address, endpoint, ca_files), name

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

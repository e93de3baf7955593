"""A real Kubernetes API server for the tests: etcd (Debian's) and kube-apiserver (built from its
Go module by scripts/install_kube.sh, cached outside the repository), on free loopback ports,
with a static admin token. No kubelet, scheduler or controllers: objects are stored, validated,
defaulted and pruned by their schemas exactly as a cluster's API server does, and nothing runs
them. A controller's part (a Job completing) is played by the test through the status
subresource."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.farm_processes import wait_until
from tests.moto_server import free_port

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FRAMEFLEET_KUBE_CACHE", Path.home() / ".cache/framefleet/kube"))
TOKEN = "framefleet-test-admin"


def install() -> Path:
    """The cache, completed by scripts/install_kube.sh (which returns at once when it is).
    Without kube-apiserver built, the kube tests are skipped unless FRAMEFLEET_KUBE=build:
    building it takes 6 to 17 minutes, too long for every clean checkout (`make test-kube`)."""
    if not (CACHE / "bin" / "kube-apiserver").exists() and os.environ.get("FRAMEFLEET_KUBE") != (
        "build"
    ):
        pytest.skip("kube-apiserver not built: `make test-kube` (or FRAMEFLEET_KUBE=build)")
    done = subprocess.run(
        [str(ROOT / "scripts" / "install_kube.sh")], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return CACHE


@dataclass
class KubeServer:
    root: Path
    url: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @classmethod
    def start(cls, root: Path) -> KubeServer:
        cache = install()
        server = cls(root)
        try:
            server._start(cache)
        except BaseException:
            server.stop()
            raise
        return server

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.processes.append(subprocess.Popen(args, stdout=log, stderr=log))

    def _start(self, cache: Path) -> None:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                shutil.which("etcd") or "etcd",
                "--data-dir", str(self.root / "etcd"),
                "--listen-client-urls", etcd, "--advertise-client-urls", etcd,
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            ],
        )  # fmt: skip
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signing = self.root / "sa.key"
        signing.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (self.root / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                str(cache / "bin" / "kube-apiserver"),
                "--etcd-servers", etcd,
                "--bind-address", "127.0.0.1",
                "--secure-port", str(api_port),
                "--cert-dir", str(self.root / "certs"),
                "--token-auth-file", str(self.root / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", str(signing),
                "--service-account-signing-key-file", str(signing),
                "--service-cluster-ip-range", "10.96.0.0/16",
                "--advertise-address", "127.0.0.1",
            ],
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{api_port}"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "t",
                            "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "t", "context": {"cluster": "t", "user": "admin"}}],
                    "current-context": "t",
                }
            )
        )
        wait_until(self._ready, 120, f"kube-apiserver ready\n{self.logs()}")
        self.kubectl("apply", "-f", str(cache / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        # The namespaces' controller is not running: "default" exists (the API server makes it).

    def _ready(self) -> bool:
        if any(p.poll() is not None for p in self.processes):
            raise RuntimeError(f"etcd or kube-apiserver exited\n{self.logs()}")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        request = urllib.request.Request(
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        )
        return result

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

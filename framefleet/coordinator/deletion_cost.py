"""Scale-in takes idle agents first on Kubernetes (``--pod-deletion-cost``): the coordinator sets
each connected agent's pod annotation ``controller.kubernetes.io/pod-deletion-cost`` to the
slots it keeps busy, and a ReplicaSet that scales in removes the pods of lowest cost first.

The coordinator does it, not the agents: it knows every agent's leases already, and the
Kubernetes credentials (a service account token allowed to patch pods, chart's Role) stay in
the coordinator's pod, out of the pods that render untrusted templates. The agent id is the pod
name (the chart sets it so). A change is sent within one interval; a cost only ever lags.
With two coordinators each annotates the agents connected to it.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framefleet.coordinator.farm import Farm

log = logging.getLogger("framefleet.coordinator")

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
INTERVAL_SECONDS = 5.0
ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class KubeApi:
    """Where the pod's API server is and how to authenticate to it; the token file is re-read
    on each call (projected service account tokens are rotated)."""

    url: str
    token_file: Path
    ca_file: Path
    namespace: str

    @classmethod
    def in_cluster(cls) -> KubeApi:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not (ACCOUNT / "token").exists():
            raise ValueError(
                "--pod-deletion-cost needs to run in a Kubernetes pod with a service account "
                "token (KUBERNETES_SERVICE_HOST and " + str(ACCOUNT / "token") + ")"
            )
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return cls(
            f"https://{host}:{port}",
            ACCOUNT / "token",
            ACCOUNT / "ca.crt",
            (ACCOUNT / "namespace").read_text().strip(),
        )

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def busy_slots(farm: Farm) -> dict[str, int]:
    """Connected agents and the leases each holds."""
    return {s.agent_id: len(farm.held(s)) for s in farm.agents()}


class DeletionCosts:
    """Sends each agent's busy slots as its pod's deletion cost when it changed."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._sent: dict[str, int] = {}
        self._session: Any = None

    async def update(self, busy: dict[str, int]) -> None:
        """``busy``: agent id (pod name) -> slots busy, for the agents connected now."""
        for agent_id in list(self._sent):
            if agent_id not in busy:
                del self._sent[agent_id]  # gone; if it comes back its cost is sent again
        for agent_id, slots in busy.items():
            if self._sent.get(agent_id) != slots and await self._annotate(agent_id, slots):
                self._sent[agent_id] = slots

    async def _annotate(self, pod: str, cost: int) -> bool:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.api.context())
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=10)
            )
        patch = {"metadata": {"annotations": {ANNOTATION: str(cost)}}}
        url = f"{self.api.url}/api/v1/namespaces/{self.api.namespace}/pods/{pod}"
        headers = {
            "Authorization": f"Bearer {self.api.token_file.read_text().strip()}",
            "Content-Type": "application/merge-patch+json",
        }
        async with self._session.patch(url, data=json.dumps(patch), headers=headers) as response:
            status: int = response.status
            if status == 200:
                return True
            # 404: an agent outside this namespace or not a pod (its id is not a pod name);
            # 403: the Role is missing. Either way scale-in just picks as it would without.
            log.warning(
                "cannot set the pod deletion cost",
                extra={"pod": pod, "status": status, "reason": await response.text()},
            )
            return status == 404  # not a pod: do not ask again until it changes

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

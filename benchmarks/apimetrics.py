"""What the hub costs the host API server, from the API server's own /metrics.

``apiserver_request_total`` counts every client alike: the vClusters' syncers, the
local kubelet and the controllers talk to the same API server, so its before/after difference
is not the hub's cost. The hub therefore runs under its own client identity (a certificate
minted for ``HUB_USER``), and API Priority and Fairness classifies its requests: one
FlowSchema per verb matching that user, all on the ``exempt`` priority level (so the
measurement neither queues nor throttles the hub). The API server then counts the hub's
requests per verb in ``apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}``.

The helm the hub runs has an identity of its own (``HELM_USER``, through a wrapper given to
``helm_binary``), counted the same way: "hub" is everything the hub process caused, helm
included; "helm" is helm's part; "spawner" the rest, the spawner's own requests.
"""

from __future__ import annotations

import re
import ssl
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from localcluster import ClusterState

HUB_USER = "bench:jupyterhub"
HELM_USER = "bench:jupyterhub-helm"
SCHEMA_PREFIXES = {"bench-hub-": HUB_USER, "bench-helm-": HELM_USER}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def hub_identity(cluster: ClusterState, kube: client.ApiClient) -> tuple[ClusterState, Path]:
    """A copy of ``cluster`` whose kubeconfig is a cluster-admin identity of the hub's own, and
    the kubeconfig of its helm's identity, with the per-verb FlowSchemas of both in place.
    Cluster-admin because the spawner runs helm, which installs RBAC objects into the user's
    namespace."""
    rbac = client.RbacAuthorizationV1Api(kube)
    flow = client.FlowcontrolApiserverV1Api(kube)
    identities = {}
    for n, (prefix, user) in enumerate(SCHEMA_PREFIXES.items()):
        identities[user] = cluster.mint_identity(user)
        await _create_or_keep(rbac.create_cluster_role_binding, {
            "metadata": {"name": f"{prefix}admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
        for i, verb in enumerate(VERBS):
            await _create_or_keep(flow.create_flow_schema, {
                "metadata": {"name": prefix + verb},
                "spec": {
                    # before every built-in schema except "exempt" (1) and "probes" (2)
                    "matchingPrecedence": 10 + n * len(VERBS) + i,
                    "priorityLevelConfiguration": {"name": "exempt"},
                    "rules": [{
                        "subjects": [{"kind": "User", "user": {"name": user}}],
                        "resourceRules": [{"verbs": [verb], "apiGroups": ["*"], "resources": ["*"],
                                           "namespaces": ["*"], "clusterScope": True}],
                        "nonResourceRules": [{"verbs": [verb], "nonResourceURLs": ["*"]}],
                    }],
                },
            })
    hub = identities[HUB_USER]
    return (ClusterState(cluster.state_dir, cluster.server, hub.kubeconfig, cluster.binaries,
                         cluster.pid, cluster.service_cidr, cluster.pod_cidr),
            Path(identities[HELM_USER].kubeconfig))


async def _create_or_keep(create, body) -> None:
    try:
        await create(body)
    except ApiException as e:
        if e.status != 409:
            raise


@dataclass
class Snapshot:
    """Counters read at one instant."""

    hub: dict[str, float] = field(default_factory=dict)                  # verb -> requests by the spawner
    helm: dict[str, float] = field(default_factory=dict)                 # verb -> requests by its helm
    all_requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (verb, resource) -> all clients
    long_running: dict[str, float] = field(default_factory=dict)         # verb -> open long-running requests

    def minus(self, before: Snapshot) -> dict:
        """Counters since ``before``; gauges (open long-running requests) as now."""
        spawner = {v: self.hub.get(v, 0) - before.hub.get(v, 0) for v in VERBS}
        helm = {v: self.helm.get(v, 0) - before.helm.get(v, 0) for v in VERBS}
        hub = {v: spawner[v] + helm[v] for v in VERBS}
        by_verb: dict[str, float] = defaultdict(float)
        for (verb, _), n in self.all_requests.items():
            by_verb[verb] += n - before.all_requests.get((verb, _), 0)
        return {"hub": hub, "hub_writes": sum(hub[v] for v in WRITE_VERBS), "helm": helm, "spawner": spawner,
                "all_clients": {k: v for k, v in sorted(by_verb.items()) if v},
                "open_watches_all_clients": self.long_running.get("WATCH", 0)}


class ApiServerMetrics:
    """Reads /metrics with the admin client certificate."""

    def __init__(self, cluster: ClusterState):
        pki = cluster.state_dir / "pki"
        self.url = f"{cluster.server}/metrics"
        self.ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ssl.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    async def snapshot(self) -> Snapshot:
        async with aiohttp.ClientSession() as http:
            async with http.get(self.url, ssl=self.ssl, timeout=aiohttp.ClientTimeout(total=30)) as r:
                r.raise_for_status()
                return parse(await r.text())


def parse(text: str) -> Snapshot:
    snap = Snapshot()
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(("apiserver_request_total", "apiserver_longrunning_requests",
                                                         "apiserver_flowcontrol_dispatched_requests_total")):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m["labels"] or ""))
        value = float(m["value"])
        name = m["name"]
        if name == "apiserver_flowcontrol_dispatched_requests_total":
            schema = labels.get("flow_schema", "")
            for prefix, user in SCHEMA_PREFIXES.items():
                if schema.startswith(prefix):
                    counts = snap.hub if user == HUB_USER else snap.helm
                    verb = schema[len(prefix):]
                    counts[verb] = counts.get(verb, 0) + value
        elif name == "apiserver_request_total":
            key = (labels.get("verb", ""), labels.get("resource", ""))
            snap.all_requests[key] = snap.all_requests.get(key, 0) + value
        elif name == "apiserver_longrunning_requests":
            verb = labels.get("verb", "")
            snap.long_running[verb] = snap.long_running.get(verb, 0) + value
    return snap

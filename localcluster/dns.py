"""The local cluster's DNS: the real CoreDNS as ``kube-dns``, as kubeadm clusters run it.

CoreDNS is built from its Go module (``tools/build-vcluster.sh coredns``: the version vCluster
0.36.1 deploys inside its virtual clusters, so one build serves both). It runs as a Deployment
in kube-system behind the Service ``kube-dns`` at the tenth address of the service range, the
address the local kubelet writes into ClusterFirst pods' /etc/resolv.conf. Names outside the
cluster domain go to this machine's own nameservers, as kubeadm's Corefile sends them to the
node's. It serves on 1053, as vCluster's does, behind the Service's 53: inside its network
namespace port 53 belongs to the relays out to the nameservers it forwards to (``podnetns``).
A vCluster's CoreDNS with ``fallbackHostCluster`` forwards here (docs/real-vcluster.md).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from localcluster.binaries import run_build_script

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "build-vcluster.sh"
NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}
IMAGE = "registry.k8s.io/coredns/coredns:v1.14.2"
COREFILE = """\
.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}
"""


def build() -> Path:
    """The directory holding ``coredns``, built on first use (a no-op when built)."""
    return run_build_script(BUILD_SCRIPT, "coredns")


def cluster_dns_ip(service_cidr: str) -> str:
    """kube-dns's address: the tenth of the service range (``.1`` is the API's Service)."""
    return str(ipaddress.ip_network(service_cidr)[10])


def objects(service_cidr: str) -> list[tuple[str, dict]]:
    """(kind, manifest) of what makes kube-dns, in creation order."""
    meta = {"name": "coredns", "namespace": NAMESPACE}
    return [
        ("ServiceAccount", {"metadata": meta}),
        ("ClusterRole", {"metadata": {"name": "system:coredns"}, "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ]}),
        ("ClusterRoleBinding", {
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}]}),
        ("ConfigMap", {"metadata": meta, "data": {"Corefile": COREFILE}}),
        ("Deployment", {"metadata": {**meta, "labels": LABELS}, "spec": {
            "replicas": 1, "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS}, "spec": {
                "serviceAccountName": "coredns",
                "dnsPolicy": "Default",   # its upstream is the node's, never itself
                "containers": [{
                    "name": "coredns", "image": IMAGE, "args": ["-conf", "/etc/coredns/Corefile"],
                    "ports": [{"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                              {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                }],
                "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
            }}}}),
        ("Service", {"metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": LABELS}, "spec": {
            "clusterIP": cluster_dns_ip(service_cidr), "selector": LABELS,
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 1053},
                      {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 1053}]}}),
    ]


async def deploy(api: client.ApiClient, service_cidr: str) -> None:
    """Creates kube-dns (what exists already is left as it is)."""
    core, rbac, apps = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api), client.AppsV1Api(api)
    create = {
        "ServiceAccount": lambda body: core.create_namespaced_service_account(NAMESPACE, body),
        "ClusterRole": rbac.create_cluster_role,
        "ClusterRoleBinding": rbac.create_cluster_role_binding,
        "ConfigMap": lambda body: core.create_namespaced_config_map(NAMESPACE, body),
        "Deployment": lambda body: apps.create_namespaced_deployment(NAMESPACE, body),
        "Service": lambda body: core.create_namespaced_service(NAMESPACE, body),
    }
    for kind, body in objects(service_cidr):
        try:
            await create[kind](body)
        except ApiException as e:
            if e.status != 409:
                raise

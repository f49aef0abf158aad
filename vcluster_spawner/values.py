"""The vcluster.yaml values the spawner installs (pure functions).

Precedence, lowest first: the operator's ``vcluster_values``, a profile's overrides of it,
then what the spawner itself relies on (computed here), so a profile cannot break the
spawner's contract with the vCluster (export settings, distro, SANs).
"""

from __future__ import annotations

import copy
import hashlib
import json

from .credentials import from_host_mappings
from .vcluster import VALUES_HASH, exported_secret


def deep_merge(base: dict, override: dict) -> dict:
    """Dicts merge recursively, anything else in ``override`` replaces; ``None`` deletes a key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def external_kubeconfig_secret(name: str) -> str:
    """Host Secret (in the user's namespace) holding the kubeconfig for the external API host."""
    return f"{exported_secret(name)}-external"


# the control plane shares the user's host namespace with the tenant's pods (vCluster OSS has no
# separate control-plane namespace), so it must pass the namespace's Pod Security level too:
# upstream's default runs it as root (chart/values.yaml controlPlane.statefulSet.security);
# any non-root uid works for the k8s distro with the SQLite backing store on its data volume
CONTROL_PLANE_UID = 12345
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def control_plane_security() -> dict:
    """``controlPlane.statefulSet.security``: Pod Security "restricted" for the control plane."""
    return {"podSecurityContext": {"runAsNonRoot": True, "runAsUser": CONTROL_PLANE_UID,
                                   "runAsGroup": CONTROL_PLANE_UID, "fsGroup": CONTROL_PLANE_UID,
                                   "seccompProfile": {"type": "RuntimeDefault"}},
            "containerSecurityContext": {**RESTRICTED_CONTAINER, "runAsUser": CONTROL_PLANE_UID,
                                         "runAsGroup": CONTROL_PLANE_UID}}


def computed_values(name: str, namespace: str, virtual_namespace: str = "default", *,
                    external_host: str = "", external_context: str = "", sync_service_accounts: bool = False,
                    pod_security_level: str = "restricted", cluster_domain: str = "cluster.local") -> dict:
    service_names = [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{cluster_domain}"]
    export = {"context": name, "server": f"https://{service_names[0]}:443"}
    if external_host:
        # reached through a TLS-passthrough route: the vCluster itself must present this name
        export["additionalSecrets"] = [{"name": external_kubeconfig_secret(name), "server": f"https://{external_host}",
                                        "context": external_context or name}]
    values = {
        "controlPlane": {
            # upstream's serving cert covers N and N.NS but not the .svc forms (vcluster.md §2)
            "proxy": {"extraSANs": service_names + ([external_host] if external_host else [])},
            "statefulSet": {"security": control_plane_security()},
            # the init container that copies the Kubernetes binaries (upstream
            # chart/templates/_init-containers.tpl takes its context from here, not statefulSet)
            "distro": {"k8s": {"enabled": True, "securityContext": RESTRICTED_CONTAINER}},
        },
        # the syncer's host rights stay in its namespaced Role: every fromHost mapping is of
        # its own namespace, which upstream then watches with the namespaced cache
        # (pkg/config/parse.go GetLocalCacheOptionsFromConfigMappings); "auto" would grant it
        # list/watch on every Secret of the host (chart/templates/_rbac.tpl)
        "rbac": {"clusterRole": {"enabled": False}},
        # refused inside, when the tenant creates the pod (upstream pkg/controllers/podsecurity),
        # and re-checked by the pod syncer; the host namespace's own labels are the backstop
        "policies": {"podSecurityStandard": pod_security_level},
        "exportKubeConfig": export,
        # so the notebook reaches the hub by its host Service name through vCluster's CoreDNS
        "networking": {"advanced": {"fallbackHostCluster": True}},
        # one explicit mapping per credential Secret, never the whole namespace (credentials.py)
        "sync": {"fromHost": {"secrets": {"enabled": True,
                                          "mappings": {"byName": from_host_mappings(virtual_namespace)}}},
                 # pods' service-account tokens in a host Secret each, never in host pod
                 # annotations (which anyone who may read pods in the namespace can read)
                 "toHost": {"pods": {"useSecretsForSATokens": True}}},
        "telemetry": {"enabled": False},
    }
    if sync_service_accounts:
        values["sync"]["toHost"]["serviceAccounts"] = {"enabled": True}
    return values


def vcluster_values(operator: dict, computed: dict) -> dict:
    return deep_merge(operator, computed)


def values_hash(values: dict, chart: str) -> str:
    """Changes whenever helm would install something different."""
    canonical = json.dumps({"chart": chart, "values": values}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_hash(values: dict, chart: str) -> dict:
    """``values`` carrying their own hash to the StatefulSet (``vcluster.VALUES_HASH``, through
    the chart value controlPlane.statefulSet.annotations, upstream chart/templates/statefulset.yaml
    v0.36.1), so every caller compares against the cluster, not its own memory of the last install."""
    return deep_merge(values, {"controlPlane": {"statefulSet": {"annotations": {
        VALUES_HASH: values_hash(values, chart)}}}})

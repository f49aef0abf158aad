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
    return f"vc-{name}-external"


def computed_values(name: str, namespace: str, virtual_namespace: str = "default", *,
                    external_host: str = "", external_context: str = "", sync_service_accounts: bool = False,
                    cluster_domain: str = "cluster.local") -> dict:
    service_names = [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{cluster_domain}"]
    export = {"context": name, "server": f"https://{service_names[0]}:443"}
    if external_host:
        # reached through a TLS-passthrough route: the vCluster itself must present this name
        export["additionalSecrets"] = [{"name": external_kubeconfig_secret(name), "server": f"https://{external_host}",
                                        "context": external_context or name}]
    values = {
        "controlPlane": {
            "distro": {"k8s": {"enabled": True}},
            # upstream's serving cert covers N and N.NS but not the .svc forms (vcluster.md §2)
            "proxy": {"extraSANs": service_names + ([external_host] if external_host else [])},
        },
        "exportKubeConfig": export,
        # so the notebook reaches the hub by its host Service name through vCluster's CoreDNS
        "networking": {"advanced": {"fallbackHostCluster": True}},
        # one explicit mapping per credential Secret, never the whole namespace (credentials.py)
        "sync": {"fromHost": {"secrets": {"enabled": True,
                                          "mappings": {"byName": from_host_mappings(virtual_namespace)}}}},
        "telemetry": {"enabled": False},
    }
    if sync_service_accounts:
        values["sync"]["toHost"] = {"serviceAccounts": {"enabled": True}}
    return values


def vcluster_values(operator: dict, computed: dict) -> dict:
    return deep_merge(operator, computed)


def values_hash(values: dict, chart: str) -> str:
    """Changes whenever helm would install something different; stored in spawner state."""
    canonical = json.dumps({"chart": chart, "values": values}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]

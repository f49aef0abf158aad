"""The parts of a rendered vcluster.yaml (secret ``vc-config-N``) the emulation acts on."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml


def _get(doc: dict, path: str, default=None):
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return default
        doc = doc[key]
    return doc


@dataclass(frozen=True)
class SecretMapping:
    """One ``sync.fromHost.secrets.mappings.byName`` entry, normalised (upstream
    ``pkg/syncer/translator/from_config_translator.go``): ``host_name`` "*" = whole namespace."""

    host_namespace: str
    host_name: str
    virtual_namespace: str
    virtual_name: str   # "*" = same name as on the host
    from_own_namespace: bool = False   # written as "/name" or "" (the vCluster's namespace)

    def priority(self) -> int:
        """Upstream matching order: exact ns/name, then ns/*, then /name, then "" (own NS)."""
        return 2 * self.from_own_namespace + (self.host_name == "*")


def parse_secret_mappings(by_name: dict[str, str], host_namespace: str) -> list[SecretMapping]:
    mappings = []
    for source, target in by_name.items():
        own = source == "" or source.startswith("/")
        if source == "":
            ns, name = host_namespace, "*"
        else:
            ns, _, name = source.partition("/")
            ns = ns or host_namespace
        vns, _, vname = target.partition("/")
        mappings.append(SecretMapping(ns, name, vns, vname or "*", own))
    return sorted(mappings, key=SecretMapping.priority)


@dataclass(frozen=True)
class VClusterConfig:
    name: str
    namespace: str
    raw: dict = field(repr=False)

    @classmethod
    def parse(cls, text: str, name: str, namespace: str) -> VClusterConfig:
        return cls(name, namespace, yaml.safe_load(text) or {})

    @property
    def set_owner(self) -> bool:
        return bool(_get(self.raw, "experimental.syncSettings.setOwner", True))

    @property
    def cluster_domain(self) -> str:
        return _get(self.raw, "networking.advanced.clusterDomain", "cluster.local")

    @property
    def extra_sans(self) -> list[str]:
        return list(_get(self.raw, "controlPlane.proxy.extraSANs", []) or [])

    @property
    def export_kubeconfig(self) -> dict:
        return _get(self.raw, "exportKubeConfig", {}) or {}

    @property
    def workload_service_account(self) -> str:
        return _get(self.raw, "controlPlane.advanced.workloadServiceAccount.name", "") or f"vc-workload-{self.name}"

    @property
    def init_manifests(self) -> str:
        return _get(self.raw, "experimental.deploy.vcluster.manifests", "") or ""

    @property
    def pod_security_standard(self) -> str:
        return _get(self.raw, "policies.podSecurityStandard", "") or ""

    @property
    def secrets_for_tokens(self) -> bool:
        return bool(_get(self.raw, "sync.toHost.pods.useSecretsForSATokens", False))

    def to_host_enabled(self, kind: str) -> bool:
        return bool(_get(self.raw, f"sync.toHost.{kind}.enabled", False))

    @property
    def secret_mappings(self) -> list[SecretMapping]:
        if not _get(self.raw, "sync.fromHost.secrets.enabled", False):
            return []
        return parse_secret_mappings(_get(self.raw, "sync.fromHost.secrets.mappings.byName", {}) or {}, self.namespace)

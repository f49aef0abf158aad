"""Virtual → host object translation, as the vCluster 0.36.1 syncer does it (pure functions).

References (loft-sh/vcluster v0.36.1): ``pkg/util/translate/translate.go`` (annotations),
``pkg/util/translate/labels.go`` (labels), ``pkg/controllers/resources/pods/translate/translator.go``
(pods), ``pkg/controllers/resources/persistentvolumeclaims/translate.go`` (PVCs); summarised in
shared/reference/vcluster-sync.md §1–3.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets as random_secrets

from vcluster_spawner.translate import MANAGED_BY, VIRTUAL_NAMESPACE_LABEL, host_name

OBJECT_NAME = "vcluster.loft.sh/object-name"
OBJECT_NAMESPACE = "vcluster.loft.sh/object-namespace"
OBJECT_UID = "vcluster.loft.sh/object-uid"
OBJECT_KIND = "vcluster.loft.sh/object-kind"
OBJECT_HOST_NAME = "vcluster.loft.sh/object-host-name"
OBJECT_HOST_NAMESPACE = "vcluster.loft.sh/object-host-namespace"
MANAGED_ANNOTATIONS = "vcluster.loft.sh/managed-annotations"
MANAGED_LABELS = "vcluster.loft.sh/managed-labels"
SKIP_BACKSYNC = "vcluster.loft.sh/skip-backsync"
TOKEN_PREFIX = "vcluster.loft.sh/token-"
RESERVED_LABELS = ("release", VIRTUAL_NAMESPACE_LABEL, MANAGED_BY, "vcluster.loft.sh/controlled-by")
PVC_EXCLUDED_ANNOTATIONS = (
    "pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
)
KINDS = {k: f"/v1, Kind={k}" for k in ("Pod", "PersistentVolumeClaim", "Secret", "ConfigMap", "Service",
                                       "ServiceAccount")}
HOST_KINDS = {"secret": "Secret", "configmap": "ConfigMap", "serviceaccount": "ServiceAccount"}


def safe_concat_name(*parts: str) -> str:
    """upstream ``translate.SafeConcatName``: joined by "-", over 63 characters cut to 52 plus a
    hash of the whole."""
    full = "-".join(parts)
    if len(full) > 63:
        return (full[:52] + "-" + hashlib.sha256(full.encode()).hexdigest()[:10]).replace(".-", "-")
    return full


def _prefixed_label_key(prefix: str, key: str, vcluster: str) -> str:
    """upstream ``convertLabelKeyWithPrefix`` (pkg/util/translate/single_namespace.go)."""
    return safe_concat_name(prefix, vcluster, "x", hashlib.sha256(key.encode()).hexdigest()[:10])


def host_label_key(key: str, vcluster: str) -> str:
    if key in RESERVED_LABELS:
        return _prefixed_label_key("vcluster.loft.sh/label", key, vcluster)
    return key


def namespace_labels(labels: dict[str, str], vcluster: str) -> dict[str, str]:
    """The virtual namespace's labels as a host pod carries them (upstream pods translator:
    ``HostLabelNamespace``), so host-side selectors can tell the tenant's namespaces apart."""
    return {_prefixed_label_key("vcluster.loft.sh/ns-label", k, vcluster): v for k, v in labels.items()}


def host_metadata(obj: dict, kind: str, vcluster: str, host_namespace: str, owner: dict | None) -> dict:
    """Name, labels, annotations and ownerReferences every synced host object gets."""
    meta = obj["metadata"]
    name = host_name(meta["name"], meta["namespace"], vcluster)
    labels = {host_label_key(k, vcluster): v for k, v in (meta.get("labels") or {}).items()}
    labels[MANAGED_BY] = vcluster
    labels[VIRTUAL_NAMESPACE_LABEL] = meta["namespace"]
    annotations = dict(meta.get("annotations") or {})
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    managed = sorted(annotations)
    annotations.update({
        OBJECT_NAME: meta["name"], OBJECT_NAMESPACE: meta["namespace"], OBJECT_UID: meta["uid"],
        OBJECT_KIND: KINDS[kind], OBJECT_HOST_NAME: name, OBJECT_HOST_NAMESPACE: host_namespace,
    })
    if managed:
        annotations[MANAGED_ANNOTATIONS] = "\n".join(managed)
    out = {"name": name, "namespace": host_namespace, "labels": labels, "annotations": annotations}
    if owner:
        # upstream GetOwnerReference: the vCluster Service, controller=false for bare objects
        out["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": owner["name"],
                                   "uid": owner["uid"], "controller": False}]
    return out


def should_delete_orphan(host_obj: dict, kind: str) -> bool:
    """upstream ``translate.ShouldDeleteHostObject``: a managed host object with no virtual
    counterpart is deleted when it is terminating or fully annotated (made by vCluster ≥ 0.21)."""
    meta = host_obj["metadata"]
    if meta.get("deletionTimestamp"):
        return True
    a = meta.get("annotations") or {}
    return (a.get(OBJECT_KIND) == KINDS[kind] and bool(a.get(OBJECT_NAME))
            and a.get(OBJECT_HOST_NAME) == meta["name"] and bool(a.get(OBJECT_NAMESPACE))
            and a.get(OBJECT_HOST_NAMESPACE) == meta["namespace"])


def is_managed(host_obj: dict, vcluster: str, kind: str) -> bool:
    """upstream ``singleNamespace.IsManaged`` (without the mapping store)."""
    meta = host_obj["metadata"]
    a = meta.get("annotations") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY) != vcluster or not a.get(OBJECT_NAME):
        return False
    if host_name(a[OBJECT_NAME], a.get(OBJECT_NAMESPACE, ""), vcluster) != meta["name"]:
        return False
    return a.get(OBJECT_KIND) in (None, KINDS[kind])


def virtual_key(host_obj: dict) -> tuple[str, str]:
    a = host_obj["metadata"].get("annotations") or {}
    return a.get(OBJECT_NAMESPACE, ""), a.get(OBJECT_NAME, "")


def translate_pvc(vpvc: dict, vcluster: str, host_namespace: str, owner: dict | None) -> dict:
    """Fake-PV mode (PV sync off): spec copied verbatim, storageClassName and volumeName
    included (vcluster-sync.md §2.1)."""
    meta = host_metadata(vpvc, "PersistentVolumeClaim", vcluster, host_namespace, owner)
    for key in PVC_EXCLUDED_ANNOTATIONS:
        meta["annotations"].pop(key, None)
    spec = copy.deepcopy(vpvc["spec"])
    source = spec.get("dataSource") or {}
    if source.get("kind") == "PersistentVolumeClaim":
        source["name"] = host_name(source["name"], vpvc["metadata"]["namespace"], vcluster)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def translate_config_object(vobj: dict, kind: str, vcluster: str, host_namespace: str, owner: dict | None) -> dict:
    out = {"apiVersion": "v1", "kind": kind,
           "metadata": host_metadata(vobj, kind, vcluster, host_namespace, owner)}
    for key in ("data", "binaryData", "type", "stringData"):
        if key in vobj:
            out[key] = vobj[key]
    if kind == "ServiceAccount":
        # upstream serviceaccounts/syncer.go: no token automount, secrets and pull secrets stripped
        out["automountServiceAccountToken"] = False
    return out


def translate_service(vsvc: dict, vcluster: str, host_namespace: str, owner: dict | None) -> dict:
    spec = copy.deepcopy(vsvc["spec"])
    if spec.get("selector"):
        spec["selector"] = {**{host_label_key(k, vcluster): v for k, v in spec["selector"].items()},
                            MANAGED_BY: vcluster, VIRTUAL_NAMESPACE_LABEL: vsvc["metadata"]["namespace"]}
    spec.pop("clusterIPs", None)
    for port in spec.get("ports") or []:
        port.pop("nodePort", None)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": host_metadata(vsvc, "Service", vcluster, host_namespace, owner), "spec": spec}


def _service_name_env(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(services: list[dict], kubernetes_ip: str) -> dict[str, str]:
    """The variables a host pod gets for ``services`` (virtual Services with a cluster IP) and
    for the virtual API, by name (upstream pods/translate/translator.go
    ServicesToEnvironmentVariables and envvars.go, Kubernetes' service links)."""
    env: dict[str, str] = {}
    for service in services:
        spec = service["spec"]
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or not spec.get("ports"):
            continue
        prefix = _service_name_env(service["metadata"]["name"])
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(spec["ports"][0]["port"])
        for i, port in enumerate(spec["ports"]):
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_service_name_env(port['name'])}"] = str(port["port"])
            protocol = port.get("protocol") or "TCP"
            link = f"{protocol.lower()}://{ip}:{port['port']}"
            if i == 0:
                env[f"{prefix}_PORT"] = link
            port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            env |= {port_prefix: link, f"{port_prefix}_PROTO": protocol.lower(), f"{port_prefix}_PORT": str(port["port"]),
                    f"{port_prefix}_ADDR": ip}
    return env | {
        "KUBERNETES_PORT": f"tcp://{kubernetes_ip}:443", "KUBERNETES_PORT_443_TCP": f"tcp://{kubernetes_ip}:443",
        "KUBERNETES_PORT_443_TCP_ADDR": kubernetes_ip, "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_SERVICE_HOST": kubernetes_ip,
        "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443"}


def translate_pod(
    vpod: dict, *, vcluster: str, host_namespace: str, owner: dict | None, workload_sa: str,
    kubernetes_ip: str, dns_ip: str, cluster_domain: str, token: str | None, token_secret: str | None = None,
    vnamespace_labels: dict[str, str] | None = None, services: list[dict] | None = None,
) -> dict:
    """Host pod for a virtual pod (vcluster-sync.md §3.2). ``token_secret``: the host Secret
    holding the token under each volume's name (``sync.toHost.pods.useSecretsForSATokens``,
    upstream pods/translate/translator.go), else the token goes in an annotation.
    ``vnamespace_labels``: the labels of the pod's virtual namespace; ``services``: the
    virtual Services of its namespace (their variables when the pod enables service links)."""
    vmeta, vns = vpod["metadata"], vpod["metadata"]["namespace"]
    meta = host_metadata(vpod, "Pod", vcluster, host_namespace, owner)
    meta["labels"].update(namespace_labels(vnamespace_labels or {}, vcluster))
    owners = vmeta.get("ownerReferences") or []
    meta["annotations"].update({
        "vcluster.loft.sh/name": vmeta["name"], "vcluster.loft.sh/namespace": vns,
        "vcluster.loft.sh/uid": vmeta["uid"],
        "vcluster.loft.sh/labels": "\n".join(f'{k}="{v}"' for k, v in sorted((vmeta.get("labels") or {}).items())),
        "vcluster.loft.sh/service-account-name": vpod["spec"].get("serviceAccountName", "default"),
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true" if any(o.get("controller") for o in owners) else "false",
    })
    if owners:
        meta["annotations"]["vcluster.loft.sh/owner-references"] = json.dumps(owners)
    spec = copy.deepcopy(vpod["spec"])
    spec.pop("nodeName", None)  # the host scheduler places the pod
    spec["serviceAccountName"] = workload_sa
    spec.pop("serviceAccount", None)
    spec["automountServiceAccountToken"] = False
    spec["enableServiceLinks"] = False
    spec.pop("priorityClassName", None)
    spec.pop("priority", None)
    spec["hostname"] = vmeta["name"][:63].replace(".", "-").rstrip("-")
    spec.pop("subdomain", None)
    token_annotation = None
    if token is not None and not token_secret:
        token_annotation = TOKEN_PREFIX + random_secrets.token_hex(4)
        meta["annotations"][token_annotation] = token
    spec["volumes"] = [_translate_volume(v, vns, vcluster, token_annotation, token_secret)
                       for v in spec.get("volumes") or []]
    added_env = service_env((services or []) if vpod["spec"].get("enableServiceLinks") else [], kubernetes_ip)
    for container in (spec.get("initContainers") or []) + spec["containers"]:
        env = container.get("env") or []
        own = {e["name"] for e in env}
        # the pod's own variables win; the added ones come first, sorted, so that the pod's may refer to them
        container["env"] = [{"name": k, "value": v} for k, v in sorted(added_env.items()) if k not in own] + [
            _translate_env(e, vns, vcluster) for e in env]
        for source in container.get("envFrom") or []:
            for key in ("secretRef", "configMapRef"):
                if key in source:
                    source[key]["name"] = host_name(source[key]["name"], vns, vcluster)
    host_aliases = spec.setdefault("hostAliases", [])
    host_aliases.append({"ip": kubernetes_ip, "hostnames": [
        f"kubernetes.default.svc.{cluster_domain}", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]})
    policy = spec.get("dnsPolicy", "ClusterFirst")
    if (policy == "ClusterFirst" and not spec.get("hostNetwork")) or policy == "ClusterFirstWithHostNet":
        own = spec.get("dnsConfig") or {}
        spec["dnsPolicy"] = "None"
        spec["dnsConfig"] = {
            "nameservers": [dns_ip] + list(own.get("nameservers") or []),
            "searches": [f"{vns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
                        + list(own.get("searches") or []),
            "options": [{"name": "ndots", "value": "5"}] + list(own.get("options") or []),
        }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _translate_env(var: dict, vns: str, vcluster: str) -> dict:
    var = copy.deepcopy(var)
    source = var.get("valueFrom") or {}
    for key in ("secretKeyRef", "configMapKeyRef"):
        if key in source:
            source[key]["name"] = host_name(source[key]["name"], vns, vcluster)
    field = (source.get("fieldRef") or {}).get("fieldPath")
    if field in _DOWNWARD_FIELDS:
        source["fieldRef"]["fieldPath"] = _DOWNWARD_FIELDS[field]
    return var


# Virtual identity fields a container may read: the host object has them as annotations.
_DOWNWARD_FIELDS = {
    "metadata.name": "metadata.annotations['vcluster.loft.sh/name']",
    "metadata.namespace": "metadata.annotations['vcluster.loft.sh/namespace']",
    "metadata.uid": "metadata.annotations['vcluster.loft.sh/uid']",
    "spec.serviceAccountName": "metadata.annotations['vcluster.loft.sh/service-account-name']",
}


def token_volume_names(vpod: dict) -> list[str]:
    """Volumes of the pod with a projected service-account token."""
    return [v["name"] for v in vpod["spec"].get("volumes") or []
            if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources") or [])]


def _translate_volume(volume: dict, vns: str, vcluster: str, token_annotation: str | None,
                      token_secret: str | None = None) -> dict:
    volume = copy.deepcopy(volume)
    if "persistentVolumeClaim" in volume:
        volume["persistentVolumeClaim"]["claimName"] = host_name(volume["persistentVolumeClaim"]["claimName"], vns, vcluster)
    elif "secret" in volume:
        volume["secret"]["secretName"] = host_name(volume["secret"]["secretName"], vns, vcluster)
    elif "configMap" in volume:
        volume["configMap"]["name"] = host_name(volume["configMap"]["name"], vns, vcluster)
    elif "downwardAPI" in volume:
        for item in volume["downwardAPI"].get("items") or []:
            _translate_field_item(item)
    elif "projected" in volume:
        sources = []
        for source in volume["projected"]["sources"]:
            if "serviceAccountToken" in source and token_secret:
                sources.append({"secret": {"name": token_secret, "items": [{
                    "key": volume["name"], "path": source["serviceAccountToken"]["path"], "mode": 0o644}]}})
            elif "serviceAccountToken" in source:
                if token_annotation is None:
                    continue
                sources.append({"downwardAPI": {"items": [{
                    "path": source["serviceAccountToken"]["path"],
                    "fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{token_annotation}']"},
                    "mode": 0o644}]}})
            elif "secret" in source:
                source["secret"]["name"] = host_name(source["secret"]["name"], vns, vcluster)
                sources.append(source)
            elif "configMap" in source:
                source["configMap"]["name"] = host_name(source["configMap"]["name"], vns, vcluster)
                sources.append(source)
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    _translate_field_item(item)
                sources.append(source)
            else:
                sources.append(source)
        volume["projected"]["sources"] = sources
    # nfs, hostPath, emptyDir, csi, image: passed through untouched (vcluster-sync.md §3.2)
    return volume


def _translate_field_item(item: dict) -> None:
    field = (item.get("fieldRef") or {}).get("fieldPath")
    if field in _DOWNWARD_FIELDS:
        item["fieldRef"]["fieldPath"] = _DOWNWARD_FIELDS[field]


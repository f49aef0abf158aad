"""Credentials a notebook gets: a kubeconfig for the user's own vCluster and S3 credentials.

They are written as host Secrets in the user's namespace and reach the vCluster only through
``sync.fromHost.secrets`` with one explicit mapping per Secret (upstream
``pkg/syncer/from_host_syncer.go``, shared/reference/vcluster-sync.md §4). Never a whole-namespace
mapping: the host namespace also holds ``vc-N`` (the admin kubeconfig, which a tenant may have
anyway, but also its client key for the hub) and ``N-certs`` (the vCluster's CA and
service-account signing keys).

The sync copies labels, annotations and data one way and reverts edits of the virtual copy, so
a revision annotation written with the data tells when the virtual copy is current. Values
never appear in logs, events, spawner state or error messages: only Secret and key names do.
"""

from __future__ import annotations

import base64
import re
import uuid

import yaml
from kubernetes_asyncio import client

from .ownership import MANAGED_BY, MANAGED_BY_VALUE
from .translate import host_name
from .vcluster import current_context, ignoring, poll_until, read_or_none

KUBECONFIG_SECRET = "jupyter-kubeconfig"     # host, in the user's namespace
S3_SECRET = "jupyter-s3"
VIRTUAL_KUBECONFIG_SECRET = "kubeconfig"     # in the virtual namespace of the notebook
VIRTUAL_S3_SECRET = "s3-credentials"
REVISION = "hub.jupyter.org/credentials-revision"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def from_host_mappings(virtual_namespace: str) -> dict[str, str]:
    """``sync.fromHost.secrets.mappings.byName``: "/name" is the vCluster's own host namespace."""
    return {f"/{KUBECONFIG_SECRET}": f"{virtual_namespace}/{VIRTUAL_KUBECONFIG_SECRET}",
            f"/{S3_SECRET}": f"{virtual_namespace}/{VIRTUAL_S3_SECRET}"}


def user_kubeconfig(exported: bytes, server: str, context: str, namespace: str) -> bytes:
    """The kubeconfig vCluster exported (Secret ``vc-N``, key ``config``), pointed at ``server``,
    with one context named ``context`` whose default namespace is ``namespace``."""
    cluster, user = current_context(yaml.safe_load(exported))
    cluster = {"name": context, "cluster": {**cluster["cluster"], "server": server}}
    user = {"name": context, "user": user["user"]}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [cluster], "users": [user],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
    }).encode()


def checked_s3_values(values: dict) -> dict[str, str]:
    """S3 settings become environment variables: keys must be variable names, values strings.
    Errors name the offending keys only."""
    if not isinstance(values, dict):
        raise ValueError(f"S3 credentials must be a dict of environment variables, not {type(values).__name__}")
    bad_keys = sorted(str(k) for k in values if not isinstance(k, str) or not _ENV_NAME.fullmatch(k))
    if bad_keys:
        raise ValueError(f"S3 credential keys must be environment variable names; refused: {', '.join(bad_keys)}")
    not_text = sorted(k for k, v in values.items() if not isinstance(v, str))
    if not_text:
        raise ValueError(f"S3 credential values must be strings; not a string: {', '.join(not_text)}")
    return dict(values)


def encode(data: dict[str, str | bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}


def host_secret(name: str, namespace: str, data: dict[str, str]) -> dict:
    """``data`` already base64-encoded; a fresh revision marks this write."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {MANAGED_BY: MANAGED_BY_VALUE},
                         "annotations": {REVISION: uuid.uuid4().hex}},
            "data": data}


def notebook_wiring(mount_path: str, with_s3: bool) -> dict[str, list[dict]]:
    """Volumes, mounts and environment that put the synced Secrets into the notebook
    container: files under ``mount_path`` and ``KUBECONFIG``; S3 keys also as variables."""
    volumes = [{"name": "vcluster-kubeconfig", "secret": {"secretName": VIRTUAL_KUBECONFIG_SECRET,
                                                          "items": [{"key": "config", "path": "config"}]}}]
    mounts = [{"name": "vcluster-kubeconfig", "mountPath": f"{mount_path}/kubeconfig", "readOnly": True}]
    env = [{"name": "KUBECONFIG", "value": f"{mount_path}/kubeconfig/config"}]
    env_from = []
    if with_s3:
        volumes.append({"name": "s3-credentials", "secret": {"secretName": VIRTUAL_S3_SECRET}})
        mounts.append({"name": "s3-credentials", "mountPath": f"{mount_path}/s3", "readOnly": True})
        env_from.append({"secretRef": {"name": VIRTUAL_S3_SECRET}})
    return {"volumes": volumes, "mounts": mounts, "env": env, "env_from": env_from}


# ---- I/O: host Secrets, their virtual copies, the notebook's ServiceAccount --------------------

class NotebookAccess:
    """Writes the credential Secrets on the host and waits for their virtual copies; gives the
    notebook's ServiceAccount its role inside the vCluster. ``namespace``: the vCluster's host
    namespace; ``vcluster``: its name."""

    def __init__(self, core: client.CoreV1Api, namespace: str, vcluster: str):
        self.core = core
        self.namespace = namespace
        self.vcluster = vcluster

    async def put(self, name: str, data: dict[str, str] | None) -> str | None:
        """Create, update (only when the data changed) or, for ``None``, delete host Secret
        ``name``; returns the revision the virtual copy must reach (None: deleted)."""
        existing = await read_or_none(self.core.read_namespaced_secret, name, self.namespace)
        if data is None:
            if existing is not None:
                await ignoring(self.core.delete_namespaced_secret(name, self.namespace), 404)
            return None
        if existing is not None and (existing.data or {}) == data:
            return (existing.metadata.annotations or {}).get(REVISION)
        body = host_secret(name, self.namespace, data)
        if existing is None:
            await self.core.create_namespaced_secret(self.namespace, body)
        else:
            body["metadata"]["resourceVersion"] = existing.metadata.resource_version
            await self.core.replace_namespaced_secret(name, self.namespace, body)
        return body["metadata"]["annotations"][REVISION]

    async def wait_synced(self, virtual: client.CoreV1Api, name: str, namespace: str, revision: str,
                          timeout: float) -> None:
        """Until the virtual copy ``namespace/name`` carries ``revision``, and so does the host
        copy the syncer keeps of it for the pods that use it, when one exists: that copy outlives
        the pods (a sleep, a stop), the syncer updates it some time after the virtual one, and a
        pod started from a stale copy keeps the previous credentials in its environment (seen
        with the real vCluster 0.36.1: a start after a credentials change got the old S3 key)."""
        host_copy = host_name(name, namespace, self.vcluster)

        def carries(secret) -> bool:
            return (secret.metadata.annotations or {}).get(REVISION) == revision

        async def current():
            copy = await read_or_none(virtual.read_namespaced_secret, name, namespace)
            if copy is None or not carries(copy):
                return False
            host = await read_or_none(self.core.read_namespaced_secret, host_copy, self.namespace)
            return host is None or carries(host)
        await poll_until(current, timeout, f"the virtual cluster did not receive Secret {namespace}/{name}")


async def ensure_service_account(virtual: client.ApiClient, namespace: str, name: str, cluster_role: str) -> None:
    """ServiceAccount ``name`` in the vCluster, bound to ``cluster_role`` there ("" = no binding)."""
    core, rbac = client.CoreV1Api(virtual), client.RbacAuthorizationV1Api(virtual)
    await ignoring(core.create_namespaced_service_account(namespace, {"metadata": {"name": name}}), 409)
    if cluster_role:
        await ignoring(rbac.create_cluster_role_binding({
            "metadata": {"name": f"vcluster-spawner:{namespace}:{name}",
                         "labels": {MANAGED_BY: MANAGED_BY_VALUE}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}), 409)

"""Operations on one user's vCluster, through the host API and helm.

Provision (``helm upgrade --install``), wake and sleep exactly as upstream ``vcluster resume``
and ``vcluster pause`` do, delete as ``vcluster delete`` does, readiness, and a client for the
virtual API built from Secret ``vc-N``. References: loft-sh/vcluster v0.36.1
``pkg/lifecycle/lifecycle.go``, ``pkg/cli/pause_helm.go``, ``pkg/cli/delete_helm.go``,
``pkg/cli/connect_helm.go`` (shared/reference/vcluster.md §2, §4.1, §6).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import enum
import json
import logging
import shutil
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

from .helm import ChartRef, Helm
from .ownership import Owner, describe_recorded, namespace_manifest, namespace_repair
from .translate import MANAGED_BY

PAUSED = "loft.sh/paused"
PAUSED_REPLICAS = "loft.sh/paused-replicas"
PAUSED_DATE = "loft.sh/paused-date"
MANAGED_BY_SPAWNER = "hub.jupyter.org/managed-by"
# written by the spawner on the StatefulSet before each start: it changes the resourceVersion,
# so a sleep or delete decided on an older read (the lifecycle service's) loses its conditional write
STARTING_AT = "hub.jupyter.org/starting-at"

log = logging.getLogger("vcluster_spawner.vcluster")


class VClusterError(RuntimeError):
    """A problem the user can be told about in one sentence (``str()``)."""


class Superseded(VClusterError):
    """A conditional sleep or delete found the StatefulSet changed since it was read (a start
    claimed the vCluster, most likely): nothing was done."""


class NotOwned(VClusterError):
    """The user's host namespace exists but does not record this user as its owner."""


class State(str, enum.Enum):
    ABSENT = "absent"
    STARTING = "starting"
    RUNNING = "running"
    ASLEEP = "asleep"


@dataclass(frozen=True)
class Ref:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Status:
    state: State
    since: str | None = None       # paused-date when asleep
    version: str | None = None     # the StatefulSet's resourceVersion when read, for conditional writes


def _now() -> str:
    # upstream: time.Now().Format("2006-01-02T15:04:05.000Z")
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def read_or_none(call: Callable[..., Awaitable], *args):
    """``call(*args)``, or None when the object does not exist (404)."""
    try:
        return await call(*args)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def api_message(error: ApiException) -> str:
    """The API server's own message in an error (its Status object), else the reason."""
    try:
        return json.loads(error.body).get("message") or str(error.reason)
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


async def ignoring(call: Awaitable, *statuses: int) -> None:
    """Await ``call``; an API error with one of ``statuses`` counts as done (404 for a delete,
    409 for a create: the object is already as wanted)."""
    try:
        await call
    except ApiException as e:
        if e.status not in statuses:
            raise


class VClusterOps:
    """Host-side operations; ``core``/``apps`` are host API clients shared by all users."""

    _dynamic_clients: dict[int, DynamicClient] = {}

    def __init__(self, core: client.CoreV1Api, apps: client.AppsV1Api, helm: Helm):
        self.core = core
        self.apps = apps
        self.helm = helm

    async def status(self, ref: Ref) -> Status:
        sts = await read_or_none(self.apps.read_namespaced_stateful_set, ref.name, ref.namespace)
        if sts is None:
            return Status(State.ABSENT)
        annotations, version = sts.metadata.annotations or {}, sts.metadata.resource_version
        if annotations.get(PAUSED) == "true" or not sts.spec.replicas:
            return Status(State.ASLEEP, annotations.get(PAUSED_DATE), version)
        ready = (sts.status.ready_replicas or 0) >= 1
        return Status(State.RUNNING if ready else State.STARTING, version=version)

    async def claim(self, ref: Ref) -> None:
        """Mark the vCluster as being started (annotation ``STARTING_AT``), before its state is
        read for a start. No StatefulSet yet: nothing to mark."""
        await ignoring(self.apps.patch_namespaced_stateful_set(
            ref.name, ref.namespace, {"metadata": {"annotations": {STARTING_AT: _now()}}}), 404)

    async def ensure_namespace(self, ref: Ref, owner: Owner, labels: dict[str, str], *, create: bool = True,
                               hub_binding: dict | None = None) -> None:
        """The user's host namespace, created for ``owner`` (``create``) or found recording
        ``owner``; the spawner's labels (Pod Security among them) re-asserted. A namespace that
        records someone else, or no one, is refused with ``NotOwned`` and left untouched.
        ``hub_binding``: the RoleBinding that gives the hub its rights in the namespace
        (``hub_role_binding``), created with the namespace and re-created when missing."""
        namespace = await read_or_none(self.core.read_namespace, ref.namespace)
        if namespace is None and create:
            try:
                await self.core.create_namespace(namespace_manifest(ref.namespace, owner, labels))
            except ApiException as e:
                if e.status != 409:
                    raise
            else:
                log.info("namespace %s created for %s", ref.namespace, owner.describe())
            namespace = await self.core.read_namespace(ref.namespace)
        if namespace is None:
            raise VClusterError(f"no virtual cluster was provisioned for you ({ref}); please contact the administrators")
        metadata = self.core.api_client.sanitize_for_serialization(namespace.metadata)
        if metadata.get("deletionTimestamp"):   # whoever it was for: it is going
            raise VClusterError(f"the host namespace {ref.namespace} of your virtual cluster is still being deleted; "
                                "try again in a minute")
        if not owner.owns(metadata.get("annotations")):
            log.warning("namespace %s is not used for %s: %s", ref.namespace, owner.describe(),
                        describe_recorded(metadata.get("annotations")))
            raise NotOwned(f"the host namespace {ref.namespace} meant for your virtual cluster already exists and "
                           "does not belong to you, so it was left alone; please contact the administrators")
        repair = namespace_repair(metadata, owner, labels)
        if repair:
            await self.core.patch_namespace(ref.namespace, repair)
        if hub_binding:
            await self._ensure_hub_binding(ref, hub_binding)

    async def owns_namespace(self, ref: Ref, owner: Owner) -> bool | None:
        """Does the namespace record ``owner``? None when it does not exist."""
        namespace = await read_or_none(self.core.read_namespace, ref.namespace)
        if namespace is None:
            return None
        return owner.owns(namespace.metadata.annotations)

    async def _ensure_hub_binding(self, ref: Ref, binding: dict) -> None:
        """Asked of the authorizer (a SelfSubjectAccessReview, which anyone may make): before the
        binding exists the hub cannot even read RoleBindings there."""
        authorization = client.AuthorizationV1Api(self.core.api_client)

        async def granted():
            review = await authorization.create_self_subject_access_review({"spec": {"resourceAttributes": {
                "namespace": ref.namespace, "verb": "create", "resource": "secrets"}}})
            return review.status.allowed
        if await granted():
            return
        rbac = client.RbacAuthorizationV1Api(self.core.api_client)
        name = binding["metadata"]["name"]
        await ignoring(rbac.create_namespaced_role_binding(ref.namespace, binding), 409)
        # the authorizer learns of the binding from its watch: wait until it grants what helm needs
        await poll_until(granted, 30, f"the hub's RoleBinding {name} in {ref.namespace} did not take effect (the "
                                      "hub is still forbidden to create secrets there; check hub_namespace_role)",
                         interval=0.05)

    async def apply_namespace_objects(self, ref: Ref, objects: list[dict]) -> None:
        """Server-side apply of each object (NetworkPolicies, TLS-passthrough routes, ...) in
        the user's namespace; any kind the API server knows, custom resources included."""
        if not objects:
            return
        dynamic = await self._dynamic()
        for obj in objects:
            resource = await dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            body = {**obj, "metadata": {**obj["metadata"], "namespace": ref.namespace}}
            response = await dynamic.server_side_apply(resource, body=body, namespace=ref.namespace,
                                                       field_manager="vcluster-spawner", force_conflicts=True)
            # kubernetes_asyncio's dynamic client does not raise on an error status: it returns
            # the Status. A policy that could not be applied must stop the start, not go unnoticed.
            data = response.to_dict() if hasattr(response, "to_dict") else {}
            if data.get("kind") == "Status" and data.get("status") == "Failure":
                raise VClusterError(f"{obj['kind']} {obj['metadata']['name']} could not be applied in namespace "
                                    f"{ref.namespace} ({data.get('code')}): {data.get('message', '')[:300]}")

    async def _dynamic(self) -> DynamicClient:
        # discovery is costly: one dynamic client per host API client, for the process
        key = id(self.core.api_client)
        if key not in self._dynamic_clients:
            self._dynamic_clients[key] = await DynamicClient(self.core.api_client)
        return self._dynamic_clients[key]

    async def install(self, ref: Ref, chart: ChartRef, values: dict, report=lambda message: None) -> None:
        """``helm upgrade --install``, after recovering a release an interrupted helm left
        pending (a start cancelled by its timeout, a stop, a hub restart)."""
        pending = await self.helm.pending(ref.name, ref.namespace)
        if pending:
            report(f"Recovering your virtual cluster from an interrupted {pending.removeprefix('pending-')}")
            log.warning("vCluster %s: release was %s; recovering", ref, pending)
            await self.helm.recover(ref.name, ref.namespace, pending)
        await self.helm.upgrade_install(ref.name, ref.namespace, chart, values)

    async def wake(self, ref: Ref) -> None:
        """``vcluster resume``: replicas from ``loft.sh/paused-replicas`` (default 1), the three
        pause annotations removed."""
        sts = await self.apps.read_namespaced_stateful_set(ref.name, ref.namespace)
        annotations = sts.metadata.annotations or {}
        if annotations.get(PAUSED) != "true" and not sts.spec.replicas:
            log.warning("vCluster %s was scaled down without being paused; scaling it up", ref)
        replicas = int(annotations.get(PAUSED_REPLICAS) or 1)
        await self.apps.patch_namespaced_stateful_set(ref.name, ref.namespace, {
            "metadata": {"annotations": {PAUSED: None, PAUSED_REPLICAS: None, PAUSED_DATE: None}},
            "spec": {"replicas": replicas}})

    async def _pause(self, ref: Ref, unchanged_since: str | None) -> bool:
        """Pause annotations and replicas 0; False if there is no StatefulSet. With
        ``unchanged_since`` (a resourceVersion) the write is conditional: ``Superseded`` if the
        StatefulSet changed since (the API server refuses a patch naming an older version)."""
        sts = await read_or_none(self.apps.read_namespaced_stateful_set, ref.name, ref.namespace)
        if sts is None:
            return False
        annotations = sts.metadata.annotations or {}
        replicas = sts.spec.replicas or int(annotations.get(PAUSED_REPLICAS) or 1)
        # asleep already: it has been since its paused-date (what the delete-after policy counts)
        date = annotations.get(PAUSED_DATE) if annotations.get(PAUSED) == "true" else None
        metadata = {"annotations": {PAUSED: "true", PAUSED_REPLICAS: str(replicas), PAUSED_DATE: date or _now()}}
        if unchanged_since:
            metadata["resourceVersion"] = unchanged_since
        try:
            await self.apps.patch_namespaced_stateful_set(ref.name, ref.namespace, {
                "metadata": metadata, "spec": {"replicas": 0}})
        except ApiException as e:
            if e.status == 409 and unchanged_since:
                raise Superseded(f"vCluster {ref} changed since it was looked at; left as it is") from None
            raise
        return True

    async def sleep(self, ref: Ref, timeout: float = 180, *, unchanged_since: str | None = None) -> None:
        """``vcluster pause``: pause annotations and replicas 0, wait for the control plane to
        stop, then delete every host pod it synced (scaling alone leaves them running).
        ``unchanged_since``: act only on the StatefulSet as it was at that resourceVersion."""
        if not await self._pause(ref, unchanged_since):
            return

        async def scaled_down():
            current = await self.apps.read_namespaced_stateful_set(ref.name, ref.namespace)
            return not current.status.replicas
        await poll_until(scaled_down, timeout, f"vCluster {ref} did not scale down")
        current = await self.apps.read_namespaced_stateful_set(ref.name, ref.namespace)
        if (current.metadata.annotations or {}).get(PAUSED) != "true":
            # woken while it scaled down: the pods now belong to the new start
            log.info("vCluster %s was woken while going to sleep; its pods are left alone", ref)
            return
        await self.core.delete_collection_namespaced_pod(ref.namespace, label_selector=f"{MANAGED_BY}={ref.name}")

    async def delete(self, ref: Ref, *, unchanged_since: str | None = None) -> None:
        """``vcluster delete``: uninstall the release, then delete the control plane's data PVC
        so nothing of the old virtual cluster revives on the next create. ``unchanged_since``:
        first pause it with a conditional write (see ``sleep``), so a start that claimed it since
        that resourceVersion keeps it."""
        if unchanged_since:
            await self._pause(ref, unchanged_since)
        await self.helm.uninstall(ref.name, ref.namespace)
        for pvc in (f"data-{ref.name}-0", f"data-{ref.name}-etcd-0"):
            await ignoring(self.core.delete_namespaced_persistent_volume_claim(pvc, ref.namespace), 404)

    async def wait_ready(self, ref: Ref, virtual: VirtualClient, timeout: float, report) -> None:
        """Readiness as `vcluster connect` judges it: control plane Ready and not paused,
        ``/readyz`` through the vCluster API, ServiceAccount ``default/default`` present."""
        async def control_plane_ready():
            if (await self.status(ref)).state == State.RUNNING:
                return True
            # an unschedulable control plane would otherwise be a silent wait until the
            # timeout; raised errors are retried and the last one ends up in the timeout message
            pod = await read_or_none(self.core.read_namespaced_pod, f"{ref.name}-0", ref.namespace)
            for condition in (pod.status.conditions or []) if pod and pod.status else []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    raise VClusterError(f"its pod cannot be scheduled: {condition.message}")
            return False
        await poll_until(control_plane_ready, timeout, f"the control plane of vCluster {ref} did not become ready")
        report("control-plane")
        await poll_until(virtual.readyz, timeout, f"the API of vCluster {ref} did not become ready")
        report("api")

        async def default_service_account():
            api = await virtual.api()
            return await read_or_none(client.CoreV1Api(api).read_namespaced_service_account, "default", "default")
        await poll_until(default_service_account, timeout, f"vCluster {ref} has no default ServiceAccount yet")
        report("service-account")


async def concurrently(*awaitables) -> list:
    """Await all side by side; the first failure cancels the others and is raised as it is
    (not wrapped), so the user sees its message."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def poll_until(predicate, timeout: float, message: str, interval: float = 0.25) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error = None
    while True:
        try:
            if await predicate():
                return
        except (VClusterError, ApiException, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            last_error = e
            log.debug("%s: not yet (%s)", message, e)
        if loop.time() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise VClusterError(f"{message} within {timeout:.0f} s{detail}")
        await asyncio.sleep(interval)
        # capped low: the benchmarks showed a 2 s cap made readiness noticed ~1 s late
        interval = min(interval * 1.5, 0.5)


async def api_url(core: client.CoreV1Api, ref: Ref, template: str) -> str:
    """``template`` with {name}, {namespace} and, when used, {cluster_ip} of Service ``N``."""
    fields = {"name": ref.name, "namespace": ref.namespace}
    if "{cluster_ip}" in template:
        svc = await core.read_namespaced_service(ref.name, ref.namespace)
        fields["cluster_ip"] = svc.spec.cluster_ip
    return template.format(**fields)


class VirtualClient:
    """The vCluster API as cluster-admin, from Secret ``vc-N``.

    The kubeconfig's server is replaced by ``api_url`` (the host-side address of Service ``N``);
    certificates go to a private temporary directory, removed by :meth:`close`. The client
    never touches kubernetes_asyncio's global default configuration.
    """

    def __init__(self, ref: Ref, core: client.CoreV1Api, api_url_template: str):
        self.ref = ref
        self.core = core
        self.api_url_template = api_url_template
        self._api: client.ApiClient | None = None
        self._dir: Path | None = None
        self.server = ""

    async def api(self) -> client.ApiClient:
        if self._api is not None:
            return self._api
        secret = await read_or_none(self.core.read_namespaced_secret, f"vc-{self.ref.name}", self.ref.namespace)
        if secret is None or "config" not in (secret.data or {}):
            raise VClusterError(f"vCluster {self.ref} has not exported its kubeconfig (Secret vc-{self.ref.name}) yet")
        kubeconfig = yaml.safe_load(base64.b64decode(secret.data["config"]))
        context = next(c for c in kubeconfig["contexts"] if c["name"] == kubeconfig["current-context"])["context"]
        cluster = next(c for c in kubeconfig["clusters"] if c["name"] == context["cluster"])["cluster"]
        user = next(u for u in kubeconfig["users"] if u["name"] == context["user"])["user"]
        self._dir = Path(tempfile.mkdtemp(prefix="vcluster-"))  # mode 0700
        files = {}
        for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
            if key in cluster or key in user:
                path = self._dir / key
                path.write_bytes(base64.b64decode(cluster.get(key) or user.get(key)))
                path.chmod(0o600)
                files[key] = str(path)
        configuration = client.Configuration()
        self.server = configuration.host = await api_url(self.core, self.ref, self.api_url_template)
        configuration.ssl_ca_cert = files.get("certificate-authority-data")
        configuration.cert_file = files.get("client-certificate-data")
        configuration.key_file = files.get("client-key-data")
        if user.get("token"):
            configuration.api_key = {"BearerToken": f"Bearer {user['token']}"}
        configuration.verify_ssl = not cluster.get("insecure-skip-tls-verify", False)
        self._api = client.ApiClient(configuration)
        return self._api

    async def readyz(self) -> bool:
        api = await self.api()
        c = api.configuration
        ctx = ssl.create_default_context(cafile=c.ssl_ca_cert)
        if c.cert_file:
            ctx.load_cert_chain(c.cert_file, c.key_file)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.server}/readyz", ssl=ctx, timeout=aiohttp.ClientTimeout(total=5)) as r:
                return r.status == 200

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

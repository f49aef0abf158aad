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
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

from . import ownership
from .helm import ChartRef, Helm
from .ownership import (
    USERNAME_LABEL,
    Owner,
    describe_recorded,
    namespace_manifest,
    namespace_repair,
)
from .translate import MANAGED_BY
from .watches import ControlPlanePods, ControlPlanes, FailedCreates, WatchLost, host_watch

PAUSED = "loft.sh/paused"
PAUSED_REPLICAS = "loft.sh/paused-replicas"
PAUSED_DATE = "loft.sh/paused-date"
# written on the StatefulSet by each start (and wake) before it reads the state: a sleep or
# delete decided on a read before it finds this changed and does nothing (Superseded)
STARTING_AT = "hub.jupyter.org/starting-at"
# the hash of the values the StatefulSet was installed with (values.with_hash)
VALUES_HASH = "hub.jupyter.org/values-hash"
# written with the conditional pause that begins a delete: the uids of the control plane's data
# volumes it will delete (only those: a cluster re-created meanwhile has new ones)
DELETING = "hub.jupyter.org/deleting"
# written by a wake ahead of a start (the spawn page was opened), removed by the start's claim:
# the status page shows a vCluster awake for a start that has not come (yet)
WOKEN_AHEAD = "hub.jupyter.org/woken-ahead-at"

log = logging.getLogger("vcluster_spawner.vcluster")


class VClusterError(RuntimeError):
    """A problem the user can be told about in one sentence (``str()``)."""


class Superseded(VClusterError):
    """A sleep or delete found the vCluster claimed (by a start or a wake) since the state it
    was decided on: nothing was done."""


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
    version: str | None = None     # the StatefulSet's resourceVersion when read
    claimed: str | None = None     # its claim (STARTING_AT) when read: a sleep or delete needs it unchanged
    values_hash: str | None = None  # of the values it was installed with (VALUES_HASH)
    deleting: bool = False          # a delete was decided and marked (DELETING) and may be under way
    woken_ahead: str | None = None  # when a wake ahead of a start woke it, until a start claims it


MAX_WAKE_REPLICAS = 3   # vCluster's own high-availability size; more is never a pause's record


def wake_replicas(recorded: str | None) -> int:
    """The replicas a wake restores from ``loft.sh/paused-replicas``: 1 to ``MAX_WAKE_REPLICAS``,
    1 for anything else. The annotation lives on an object of the user's namespace; the chart's
    admission policy keeps the vCluster from writing it, and this bound holds without it."""
    try:
        replicas = int(recorded or 1)
    except ValueError:
        return 1
    return min(max(replicas, 1), MAX_WAKE_REPLICAS)


def status_of(sts: dict | None) -> Status:
    """The state of a vCluster from its StatefulSet as JSON (a watch event, or an API object
    serialized), None meaning absent."""
    if sts is None:
        return Status(State.ABSENT)
    metadata, spec, status = sts["metadata"], sts.get("spec") or {}, sts.get("status") or {}
    annotations, version = metadata.get("annotations") or {}, metadata.get("resourceVersion")
    common = {"version": version, "claimed": annotations.get(STARTING_AT), "values_hash": annotations.get(VALUES_HASH),
              "deleting": DELETING in annotations, "woken_ahead": annotations.get(WOKEN_AHEAD)}
    if annotations.get(PAUSED) == "true" or not spec.get("replicas"):
        return Status(State.ASLEEP, annotations.get(PAUSED_DATE), **common)
    ready = (status.get("readyReplicas") or 0) >= 1
    return Status(State.RUNNING if ready else State.STARTING, **common)


def exported_secret(name: str) -> str:
    """The host Secret where vCluster ``name`` exports its kubeconfig (upstream's ``vc-N``)."""
    return f"vc-{name}"


def current_context(kubeconfig: dict) -> tuple[dict, dict]:
    """(cluster, user) entries, names included, of a kubeconfig's current context."""
    context = next(c for c in kubeconfig["contexts"] if c["name"] == kubeconfig["current-context"])["context"]
    return (next(c for c in kubeconfig["clusters"] if c["name"] == context["cluster"]),
            next(u for u in kubeconfig["users"] if u["name"] == context["user"]))


def values_hash_of(values: dict) -> str | None:
    """The hash ``values.with_hash`` put in ``values``."""
    return ((values.get("controlPlane") or {}).get("statefulSet") or {}).get("annotations", {}).get(VALUES_HASH)


def statefulset_key(ref: Ref) -> str:
    return f"{ref.namespace}/{ref.name}"


def control_plane_pod_key(ref: Ref) -> str:
    """The control plane pod's key in the shared pod watch: the StatefulSet's only replica."""
    return f"{ref.namespace}/{ref.name}-0"


def control_plane_failure(pod: dict | None) -> str | None:
    """Why the control plane pod cannot run, if it shows it cannot: unschedulable, an image
    that cannot be pulled, a container that cannot be created or keeps crashing."""
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable"
                and not waits_for_claims(condition.get("message") or "")):
            return f"its pod cannot be scheduled: {condition.get('message', '')}"
    if status.get("phase") == "Failed":
        return f"its pod failed: {status.get('message') or status.get('reason') or ''}".strip()
    return container_failure(status.get("initContainerStatuses"), status.get("containerStatuses"))


def control_plane_waiting(pod: dict | None) -> str:
    """What a control plane pod that is not failing still waits for, as the scheduler or the
    kubelet says it ("" when it says nothing): the detail of a readiness timeout."""
    status = (pod or {}).get("status") or {}
    unscheduled = next((c for c in status.get("conditions") or []
                        if c.get("type") == "PodScheduled" and c.get("status") == "False"), None)
    if unscheduled:
        return f"its pod is not scheduled: {unscheduled.get('message') or unscheduled.get('reason') or ''}".rstrip(": ")
    waiting = next(((s.get("state") or {}).get("waiting") for s in
                    (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
                    if (s.get("state") or {}).get("waiting")), None)
    if waiting:
        return f"its container waits: {waiting.get('reason', '')} {waiting.get('message', '')}".rstrip()
    return ""


def waits_for_claims(message: str) -> bool:
    """The scheduler's reason names a claim not yet made, bound or gone: ``persistentvolumeclaim
    "data-N-0" not found`` while its informer has not seen the claim the StatefulSet controller
    just created (a re-created vCluster hit it), unbound immediate claims, a claim being deleted
    (upstream kubernetes v1.36.3 pkg/scheduler/framework/plugins/volumebinding/volume_binding.go).
    The scheduler retries when the claim changes, so this is a wait, not a failure."""
    return "persistentvolumeclaim" in message.lower()


# waiting reasons that do not go away by waiting (a crash loop is told by its restarts)
HOPELESS_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                    "CreateContainerError")


def container_failure(*statuses: list | None, restarts: int = 2) -> str | None:
    """The first container status (of the given lists) that shows it will not run."""
    for container in (c for group in statuses for c in group or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason") in HOPELESS_WAITING:
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
        if container.get("restartCount", 0) >= restarts and last:
            detail = (last.get("message") or "").strip().splitlines()[-1:] or [""]
            return (f"{container.get('name')} exited with code {last.get('exitCode')} "
                    f"{container['restartCount']} times; {detail[0]}").strip().rstrip(";")
    return None


def timestamp() -> str:
    """Now, as the annotations here are written (upstream: time.Now().Format("2006-01-02T15:04:05.000Z"))."""
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

    async def _watch(self, kind):
        """The process's shared host watch of ``kind`` (watches.py), on this host client."""
        return await host_watch(kind, self.core.api_client)

    def _json(self, obj) -> dict:
        return self.core.api_client.sanitize_for_serialization(obj)

    async def status(self, ref: Ref) -> Status:
        sts = await read_or_none(self.apps.read_namespaced_stateful_set, ref.name, ref.namespace)
        return status_of(self._json(sts) if sts is not None else None)

    async def observed(self, ref: Ref) -> tuple[Status, str | None]:
        """The state and the control plane pod's creation time (None: no pod) as the shared
        watches see them: no request per call, for a caller that looks at every vCluster
        again and again (the lifecycle service). Acting on it is safe: a sleep or delete
        checks the claim against the API server (``_pause``)."""
        statefulsets = await self._watch(ControlPlanes)
        pods = await self._watch(ControlPlanePods)
        pod = pods.resources.get(control_plane_pod_key(ref))
        return status_of(statefulsets.resources.get(statefulset_key(ref))), pod and pod["metadata"]["creationTimestamp"]

    async def claim(self, ref: Ref) -> Status:
        """Mark the vCluster as being started (annotation ``STARTING_AT``; a wake ahead's mark
        ``WOKEN_AHEAD`` removed: this is the start) and return its state as marked: a sleep or
        delete decided before (on an older resourceVersion) now fails its conditional write. No
        StatefulSet yet: nothing to mark (absent)."""
        try:
            sts = await self.apps.patch_namespaced_stateful_set(
                ref.name, ref.namespace, {"metadata": {"annotations": {STARTING_AT: timestamp(), WOKEN_AHEAD: None}}})
        except ApiException as e:
            if e.status == 404:
                return Status(State.ABSENT)
            raise
        return status_of(self._json(sts))

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
                namespace = await self.core.create_namespace(namespace_manifest(ref.namespace, owner, labels, ref.name))
            except ApiException as e:
                if e.status != 409:
                    raise
                namespace = await self.core.read_namespace(ref.namespace)   # created meanwhile: by whom?
            else:
                log.info("namespace %s created for %s", ref.namespace, owner.describe())
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
        repair = namespace_repair(metadata, owner, labels, ref.name)
        if repair:
            await self.core.patch_namespace(ref.namespace, repair)
        if hub_binding:
            await self.ensure_hub_binding(ref, hub_binding)

    async def namespaces_of(self, username_label: str) -> list[dict]:
        """Metadata of the namespaces labelled for a user (the label narrows; the ownership gate
        decides by the owner annotation), less those being deleted."""
        return await self._namespaces(f"{USERNAME_LABEL}={username_label}")

    async def managed_namespaces(self) -> list[dict]:
        """Metadata of every namespace the spawner manages, less those being deleted."""
        return await self._namespaces(f"{ownership.MANAGED_BY}={ownership.MANAGED_BY_VALUE}")

    async def _namespaces(self, selector: str) -> list[dict]:
        listed = await self.core.list_namespace(label_selector=selector)
        return [self._json(ns.metadata) for ns in listed.items if not ns.metadata.deletion_timestamp]

    async def owns_namespace(self, ref: Ref, owner: Owner) -> bool | None:
        """Does the namespace record ``owner``? None when it does not exist."""
        namespace = await read_or_none(self.core.read_namespace, ref.namespace)
        if namespace is None:
            return None
        return owner.owns(namespace.metadata.annotations)

    async def ensure_hub_binding(self, ref: Ref, binding: dict) -> None:
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

    async def install(self, ref: Ref, chart: ChartRef, values: dict, report=lambda message: None) -> Status:
        """``helm upgrade --install`` (``values`` carry their hash, ``with_hash``), after
        recovering a release an interrupted helm left pending (a start cancelled by its timeout,
        a stop, a hub restart). Returns the state of the installed StatefulSet."""
        pending = await self.helm.pending(ref.name, ref.namespace)
        if pending:
            report(f"Recovering your virtual cluster from an interrupted {pending.removeprefix('pending-')}")
            log.warning("vCluster %s: release was %s; recovering", ref, pending)
            await self.helm.recover(ref.name, ref.namespace, pending)
        await self.helm.upgrade_install(ref.name, ref.namespace, chart, values)
        installed = values_hash_of(values)
        watch = await self._watch(ControlPlanes)
        # helm returns once the objects exist; the watch may be a moment behind
        sts = await _within(watch.until(
            lambda r: (s := r.get(statefulset_key(ref))) and s["metadata"].get("annotations", {}).get(VALUES_HASH)
            == installed and s, statefulset_key(ref)), 60, f"vCluster {ref} was installed but its StatefulSet "
                                                             "did not appear")
        return status_of(sts)

    async def wake(self, ref: Ref, *, ahead: bool = False) -> Status:
        """``vcluster resume``: replicas from ``loft.sh/paused-replicas`` (default 1), the three
        pause annotations removed. ``ahead``: a wake ahead of a start (``WOKEN_AHEAD``, which
        the start's claim removes). Returns the state as written: its claim is the wake's."""
        sts = await self.apps.read_namespaced_stateful_set(ref.name, ref.namespace)
        annotations = sts.metadata.annotations or {}
        if annotations.get(PAUSED) != "true" and not sts.spec.replicas:
            log.warning("vCluster %s was scaled down without being paused; scaling it up", ref)
        replicas = wake_replicas(annotations.get(PAUSED_REPLICAS))
        # a wake is a claim too: a sleep or delete decided before it does nothing
        now = timestamp()
        written = await self.apps.patch_namespaced_stateful_set(ref.name, ref.namespace, {
            "metadata": {"annotations": {PAUSED: None, PAUSED_REPLICAS: None, PAUSED_DATE: None, STARTING_AT: now,
                                         WOKEN_AHEAD: now if ahead else None}},
            "spec": {"replicas": replicas}})
        return status_of(self._json(written))

    async def _pause(self, ref: Ref, decided_on: Status | None, *, deleting: dict | None = None) -> dict | None:
        """Pause annotations and replicas 0 (and, for a delete, the ``DELETING`` mark) in one
        write; None if there is no StatefulSet. With ``decided_on`` the write is conditional on
        the claim being the one the decision saw: ``Superseded`` if a start or wake claimed the
        vCluster since. The write names the resourceVersion the claim was checked on, so a
        claim between the check and the write makes it fail (409) and the check is repeated;
        other writes (the StatefulSet controller's status updates) only cause that repeat.
        Returns the StatefulSet as written."""
        for _ in range(10):
            sts = await read_or_none(self.apps.read_namespaced_stateful_set, ref.name, ref.namespace)
            if sts is None:
                return None
            annotations = sts.metadata.annotations or {}
            if decided_on is not None and annotations.get(STARTING_AT) != decided_on.claimed:
                raise Superseded(f"vCluster {ref} was claimed by a start since it was looked at; left as it is")
            replicas = sts.spec.replicas or int(annotations.get(PAUSED_REPLICAS) or 1)
            # asleep already: it has been since its paused-date (what the delete-after policy counts)
            date = annotations.get(PAUSED_DATE) if annotations.get(PAUSED) == "true" else None
            wanted = {PAUSED: "true", PAUSED_REPLICAS: str(replicas), PAUSED_DATE: date or timestamp()}
            if deleting is not None:
                wanted[DELETING] = json.dumps(deleting, sort_keys=True)
            try:
                written = await self.apps.patch_namespaced_stateful_set(ref.name, ref.namespace, {
                    "metadata": {"annotations": wanted, "resourceVersion": sts.metadata.resource_version},
                    "spec": {"replicas": 0}})
            except ApiException as e:
                if e.status == 409:
                    continue   # written meanwhile: look at the claim again
                if e.status == 404:
                    return None
                raise
            return self._json(written)
        raise VClusterError(f"vCluster {ref} kept changing; it was not paused")

    async def sleep(self, ref: Ref, timeout: float = 180, *, decided_on: Status | None = None) -> None:
        """``vcluster pause``: pause annotations and replicas 0, wait for the control plane to
        stop, then delete every host pod it synced (scaling alone leaves them running).
        ``decided_on``: act only if nothing claimed the vCluster since that state (``_pause``)."""
        paused = await self._pause(ref, decided_on)
        if paused is None:
            return
        key = statefulset_key(ref)
        watch = await self._watch(ControlPlanes)
        sts = await _within(watch.until(lambda r: _scaled_down(r.get(key)), key), timeout,
                            f"vCluster {ref} did not scale down")
        if sts is not True and (sts["metadata"].get("annotations") or {}).get(PAUSED) != "true":
            # woken while it scaled down: the pods now belong to the new start
            log.info("vCluster %s was woken while going to sleep; its pods are left alone", ref)
            return
        # the synced pods of this paused control plane, by uid: a wake creates new ones only
        # after its control plane runs again, and those are never deleted here
        pods = await self.core.list_namespaced_pod(ref.namespace, label_selector=f"{MANAGED_BY}={ref.name}")
        for pod in pods.items:
            await ignoring(self.core.delete_namespaced_pod(
                pod.metadata.name, ref.namespace, body={"preconditions": {"uid": pod.metadata.uid}}), 404, 409)

    async def delete(self, ref: Ref, *, decided_on: Status | None = None) -> None:
        """``vcluster delete``: uninstall the release, then delete the control plane's data
        volumes so nothing of the old virtual cluster revives on the next create.

        First, in one write: paused, and marked ``DELETING`` with the uids of the data volumes
        (deleted by uid only: a cluster re-created meanwhile keeps its own). A start that finds
        the mark finishes the delete before it creates anew (``finish_delete``).
        ``decided_on``: that write is conditional (``_pause``), so a start that claimed the
        vCluster since keeps it and nothing is deleted."""
        volumes = {}
        for name in (f"data-{ref.name}-0", f"data-{ref.name}-etcd-0"):
            pvc = await read_or_none(self.core.read_namespaced_persistent_volume_claim, name, ref.namespace)
            if pvc is not None:
                volumes[name] = pvc.metadata.uid
        await self._pause(ref, decided_on, deleting=volumes)
        await self.helm.uninstall(ref.name, ref.namespace)
        for name, uid in volumes.items():
            await ignoring(self.core.delete_namespaced_persistent_volume_claim(
                name, ref.namespace, body={"preconditions": {"uid": uid}}), 404, 409)

    async def finish_delete(self, ref: Ref, timeout: float) -> None:
        """A start found the vCluster marked ``DELETING``: whoever began the delete has up to
        ``timeout`` seconds to finish it (two helm uninstalls of one release must not overlap);
        then it is finished here (helm's own timeout has ended the other one's helm by then)."""
        key = statefulset_key(ref)
        watch = await self._watch(ControlPlanes)
        try:
            await asyncio.wait_for(watch.until(lambda r: key not in r, key), timeout)
        except asyncio.TimeoutError:
            log.warning("vCluster %s: a delete begun elsewhere did not finish in %.0f s; finishing it", ref, timeout)
        await self.delete(ref)

    async def wait_ready(self, ref: Ref, virtual: VirtualClient, timeout: float, report) -> None:
        """Readiness as `vcluster connect` judges it: control plane Ready and not paused,
        ``/readyz`` through the vCluster API, ServiceAccount ``default/default`` present. The
        control plane is followed through the shared watches; a pod that shows it cannot run, or
        the host refusing to create it, ends the wait at once with the reason."""
        pods = await self._watch(ControlPlanePods)
        await _within(first_of(self._control_plane_ready(ref), self._control_plane_failure(ref)), timeout,
                      f"the control plane of vCluster {ref} did not become ready",
                      detail=lambda: control_plane_waiting(pods.resources.get(control_plane_pod_key(ref))))
        report("control-plane")
        await virtual.wait_exported(timeout)
        await poll_until(virtual.readyz, timeout, f"the API of vCluster {ref} did not become ready")
        report("api")

        async def default_service_account():
            api = await virtual.api()
            return await read_or_none(client.CoreV1Api(api).read_namespaced_service_account, "default", "default")
        await poll_until(default_service_account, timeout, f"vCluster {ref} has no default ServiceAccount yet")
        report("service-account")

    async def _control_plane_ready(self, ref: Ref) -> None:
        key = statefulset_key(ref)
        watch = await self._watch(ControlPlanes)
        await watch.until(lambda r: status_of(r.get(key)).state == State.RUNNING, key)

    async def _control_plane_failure(self, ref: Ref) -> None:
        """Raises once the control plane shows it cannot start; never returns otherwise."""
        pods, refusals = await self._watch(ControlPlanePods), await self._watch(FailedCreates)
        pod_key, since = control_plane_pod_key(ref), timestamp()[:19]

        def refused(events: dict) -> str | None:
            # an event of this wait: FailedCreate events of earlier attempts are kept an hour
            return next((f"the host cannot run it: {e.get('message') or 'its pod was refused'}" for e in events.values()
                         if e["involvedObject"].get("namespace") == ref.namespace
                         and e["involvedObject"].get("name") == ref.name
                         and (e.get("lastTimestamp") or e.get("eventTime") or "")[:19] >= since), None)

        def failing(pods: dict) -> str | None:
            reason = control_plane_failure(pods.get(pod_key))
            return reason and (reason if reason.startswith("its pod") else f"the host cannot run it: {reason}")
        raise VClusterError(await first_of(pods.until(failing, pod_key), refusals.until(refused)))


def _scaled_down(sts: dict | None):
    """Truthy once no control plane pod is left: the StatefulSet (or True when it is gone)."""
    if sts is None:
        return True
    return sts if not (sts.get("status") or {}).get("replicas") else None


async def _within(awaitable, timeout: float, message: str, detail=lambda: ""):
    """``awaitable`` bounded by ``timeout``: a ``VClusterError`` saying ``message`` after it, as
    after a lost watch; on a timeout followed by what ``detail()`` says is still awaited."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        waiting = detail()
        raise VClusterError(f"{message} within {timeout:.0f} s" + (f" ({waiting})" if waiting else "")) from None
    except WatchLost as e:
        raise VClusterError(f"{message}: {e}") from None


async def first_of(*awaitables):
    """The result of whichever finishes first (its exception, if it raised); the others are
    cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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


def api_url(ref: Ref, template: str, cluster_ip: str) -> str:
    """``template`` with {name}, {namespace} and {cluster_ip} (of Service ``N``)."""
    return template.format(name=ref.name, namespace=ref.namespace, cluster_ip=cluster_ip)


async def exported_kubeconfig(core: client.CoreV1Api, ref: Ref, timeout: float | None = None) -> bytes:
    """The kubeconfig vCluster exports in Secret ``vc-N`` once its API serves. ``timeout``:
    wait that long for it, watching that one Secret by name (a poll would read it again and
    again while several control planes start at once; a watch shared by all users would let
    the hub read every Secret of the cluster); ``None``: it must exist now."""
    name = exported_secret(ref.name)
    found = await _secret_with(core, ref.namespace, name, "config", timeout)
    if found is None:
        waited = f" within {timeout:.0f} s" if timeout is not None else " yet"
        raise VClusterError(f"vCluster {ref} has not exported its kubeconfig (Secret {name}){waited}")
    return base64.b64decode(found)


async def _secret_with(core: client.CoreV1Api, namespace: str, name: str, key: str,
                       timeout: float | None) -> str | None:
    """Data item ``key`` of Secret ``namespace/name`` (base64), once it exists; None when the
    Secret has none now (``timeout`` None) or not within ``timeout`` seconds."""
    selector = f"metadata.name={name}"

    def item(secret) -> str | None:
        return (secret.data or {}).get(key)
    try:
        async with asyncio.timeout(timeout):
            while True:   # listed anew after each watch the API server ends, or expires (410)
                listed = await core.list_namespaced_secret(namespace, field_selector=selector)
                found = next(filter(None, map(item, listed.items)), None)
                if found is not None or timeout is None:
                    return found
                try:
                    async with watch.Watch().stream(core.list_namespaced_secret, namespace, field_selector=selector,
                                                    resource_version=listed.metadata.resource_version,
                                                    timeout_seconds=60) as stream:
                        async for event in stream:
                            if event["type"] in ("ADDED", "MODIFIED") and item(event["object"]) is not None:
                                return item(event["object"])
                except ApiException as e:
                    if e.status != 410:
                        raise
    except TimeoutError:
        return None


class VirtualClient:
    """The vCluster API as cluster-admin, from Secret ``vc-N``.

    The kubeconfig's server is replaced by :func:`api_url` (the host-side address of Service ``N``);
    certificates go to a private temporary directory, removed by :meth:`close`. The client
    never touches kubernetes_asyncio's global default configuration. The host objects it is
    made from (Secret ``vc-N``, Service ``N``) are read once per client.
    """

    def __init__(self, ref: Ref, core: client.CoreV1Api, api_url_template: str):
        self.ref = ref
        self.core = core
        self.api_url_template = api_url_template
        self._api: client.ApiClient | None = None
        self._http: aiohttp.ClientSession | None = None
        self._dir: Path | None = None
        self._cluster_ip: str | None = None
        self.server = ""
        self.exported = b""   # the kubeconfig vCluster exported (Secret vc-N), as read once

    async def wait_exported(self, timeout: float) -> None:
        """Until vCluster has exported its kubeconfig (at most ``timeout`` seconds)."""
        if not self.exported:
            self.exported = await exported_kubeconfig(self.core, self.ref, timeout)

    async def url(self, template: str) -> str:
        """``template`` (see :func:`api_url`) for this vCluster, Service ``N`` read at most once."""
        if "{cluster_ip}" in template and self._cluster_ip is None:
            self._cluster_ip = (await self.core.read_namespaced_service(self.ref.name, self.ref.namespace)).spec.cluster_ip
        return api_url(self.ref, template, self._cluster_ip or "")

    async def api(self) -> client.ApiClient:
        if self._api is not None:
            return self._api
        if not self.exported:
            self.exported = await exported_kubeconfig(self.core, self.ref)
        kubeconfig = yaml.safe_load(self.exported)
        cluster_entry, user_entry = current_context(kubeconfig)
        cluster, user = cluster_entry["cluster"], user_entry["user"]
        self._dir = Path(tempfile.mkdtemp(prefix="vcluster-"))  # mode 0700
        files = {}
        for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
            if key in cluster or key in user:
                path = self._dir / key
                path.write_bytes(base64.b64decode(cluster.get(key) or user.get(key)))
                path.chmod(0o600)
                files[key] = str(path)
        configuration = client.Configuration()
        self.server = configuration.host = await self.url(self.api_url_template)
        configuration.ssl_ca_cert = files.get("certificate-authority-data")
        configuration.cert_file = files.get("client-certificate-data")
        configuration.key_file = files.get("client-key-data")
        if user.get("token"):
            configuration.api_key = {"BearerToken": f"Bearer {user['token']}"}
        configuration.verify_ssl = not cluster.get("insecure-skip-tls-verify", False)
        self._api = client.ApiClient(configuration)
        return self._api

    async def readyz(self) -> bool:
        if self._http is None:
            c = (await self.api()).configuration
            ctx = ssl.create_default_context(cafile=c.ssl_ca_cert)
            if c.cert_file:
                ctx.load_cert_chain(c.cert_file, c.key_file)
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx),
                                               timeout=aiohttp.ClientTimeout(total=5))
        async with self._http.get(f"{self.server}/readyz") as r:
            return r.status == 200

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

"""The emulated vCluster syncer (upstream v0.36.1 ``pkg/syncer``, ``pkg/controllers/resources``).

Reconciles pods, PVCs, services, and the secrets/configMaps pods use from the virtual cluster
to the host namespace, and ``sync.fromHost.secrets`` the other way, with upstream's decision
table (shared/reference/vcluster-sync.md §1.1): every reconcile reads both sides; "seen"
remembers host objects that existed during this syncer's lifetime (upstream's in-memory
``HostOld`` cache, empty after every restart), which is what makes a restart behave
differently from a live deletion.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable

import yaml
from kubernetes_asyncio import client, utils
from kubernetes_asyncio.client.rest import ApiException

from localcluster.kube import watch_forever
from localcluster.podspec import referenced_objects
from vcluster_spawner.translate import MANAGED_BY, host_name
from vcluster_spawner.vcluster import api_message, read_or_none

from . import translate as tr
from .config import VClusterConfig

log = logging.getLogger("vcluster_emulation.syncer")

TEN_YEARS = 10 * 365 * 24 * 3600
COREDNS_IMAGE = "coredns/coredns:1.14.2"


class StartError(Exception):
    """The control plane refuses to start (upstream exits and the pod crash-loops)."""


class Refused(Exception):
    """The host API server refused a synced object (admission: Pod Security, a policy); the
    reason is on the virtual object as a Warning event ``SyncError``, as upstream records it."""


POD_SECURITY_MODES = ("enforce", "warn")


async def _ignore_missing(call: Awaitable) -> None:
    try:
        await call
    except ApiException as e:
        if e.status not in (404, 409):
            raise


class Syncer:
    def __init__(self, host: client.ApiClient, virtual: client.ApiClient, config: VClusterConfig,
                 *, owner: dict | None, kubernetes_ip: str):
        self.host_api, self.virtual_api = host, virtual
        self.host = client.CoreV1Api(host)
        self.virtual = client.CoreV1Api(virtual)
        self.config = config
        self.name, self.ns = config.name, config.namespace
        self.owner = owner if config.set_owner else None
        self.kubernetes_ip = kubernetes_ip
        self.dns_ip = ""
        self.seen: set[tuple[str, str, str]] = set()        # (kind, vns, vname) seen on the host
        self.from_host_targets: dict[tuple[str, str], tuple[str, str]] = {}  # virtual -> host secret
        # one fromHost change of a target at a time: a re-creation of the virtual copy racing the
        # host Secret's deletion must not leave the copy behind
        self._from_host_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # secrets/configMaps referenced by synced pods: only these go to the host (toHost.*.all off)
        self.used: set[tuple[str, str, str]] = set()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.queued: set[tuple[str, str, str]] = set()
        self.tasks: list[asyncio.Task] = []
        self.reported: set[tuple[str, str, str, str]] = set()   # SyncError events already recorded

    # ---- start-up (upstream pkg/setup/controllers.go StartControllers) ----------------

    async def start(self) -> None:
        await self._check_from_host_namespaces()
        if self.config.pod_security_standard:
            # upstream pkg/controllers/podsecurity: every virtual namespace gets the standard
            self.tasks.append(asyncio.create_task(watch_forever(
                self.virtual.list_namespace, lambda t, o: self._label_pod_security(o), what="virtual namespaces")))
        await self._apply_init_manifests()
        await self._ensure_coredns()
        ser = self.virtual_api.sanitize_for_serialization
        kinds = [
            ("pod", self.virtual.list_pod_for_all_namespaces, self.host.list_namespaced_pod),
            ("pvc", self.virtual.list_persistent_volume_claim_for_all_namespaces,
             self.host.list_namespaced_persistent_volume_claim),
            ("service", self.virtual.list_service_for_all_namespaces, self.host.list_namespaced_service),
            ("secret", self.virtual.list_secret_for_all_namespaces, self.host.list_namespaced_secret),
            ("configmap", self.virtual.list_config_map_for_all_namespaces, self.host.list_namespaced_config_map),
        ]
        if self.config.to_host_enabled("serviceAccounts"):
            kinds.append(("serviceaccount", self.virtual.list_service_account_for_all_namespaces,
                          self.host.list_namespaced_service_account))
        for kind, list_virtual, list_host in kinds:
            self.tasks.append(asyncio.create_task(watch_forever(
                list_virtual, lambda t, o, k=kind: self._enqueue_virtual(k, ser(o)), what=f"virtual {kind}s")))
            self.tasks.append(asyncio.create_task(watch_forever(
                list_host, lambda t, o, k=kind: self._enqueue_host(k, ser(o)), what=f"host {kind}s",
                namespace=self.ns, label_selector=f"{MANAGED_BY}={self.name}")))
        # only the mapped host namespaces are watched (upstream pkg/config/parse.go
        # GetLocalCacheOptionsFromConfigMappings: a cache per mapped namespace, never cluster-wide),
        # so mappings of the own namespace only need the namespaced Role
        for namespace in sorted({m.host_namespace for m in self.config.secret_mappings}):
            self.tasks.append(asyncio.create_task(watch_forever(
                self.host.list_namespaced_secret, lambda t, o: self._on_host_secret_from_host(t, ser(o)),
                what=f"host secrets in {namespace} (fromHost)", namespace=namespace)))
        self.tasks.append(asyncio.create_task(self._worker()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _check_from_host_namespaces(self) -> None:
        for mapping in self.config.secret_mappings:
            if mapping.host_namespace == self.ns:
                continue   # its own namespace exists, and reading it would need a ClusterRole
            if await read_or_none(self.host.read_namespace, mapping.host_namespace) is None:
                raise StartError(
                    f"sync.fromHost.secrets maps host namespace {mapping.host_namespace!r}, which does not "
                    f"exist; host namespaces must exist when the vCluster starts")

    async def _apply_init_manifests(self) -> None:
        """``experimental.deploy.vcluster.manifests``, synchronously, skipped when unchanged
        (last applied text kept in virtual ConfigMap kube-system/vcluster-deploy)."""
        text = self.config.init_manifests
        if not text.strip():
            return
        last = await read_or_none(self.virtual.read_namespaced_config_map, "vcluster-deploy", "kube-system")
        if last is not None and (last.data or {}).get("manifests") == text:
            return
        for doc in yaml.safe_load_all(text):
            if doc:
                try:
                    await utils.create_from_dict(self.virtual_api, doc, namespace="default")
                except utils.FailToCreateError as e:
                    if not all(getattr(x, "status", None) == 409 for x in e.api_exceptions):
                        raise
        body = {"metadata": {"name": "vcluster-deploy", "namespace": "kube-system"}, "data": {"manifests": text}}
        if last is None:
            await self.virtual.create_namespaced_config_map("kube-system", body)
        else:
            await self.virtual.replace_namespaced_config_map("vcluster-deploy", "kube-system", body)

    async def _ensure_coredns(self) -> None:
        """CoreDNS inside the vCluster (upstream pkg/coredns): Service kube-dns, Deployment
        coredns. Host pods are only created once the DNS Service IP is known."""
        labels = {"k8s-app": "vcluster-kube-dns"}
        svc = await read_or_none(self.virtual.read_namespaced_service, "kube-dns", "kube-system")
        if svc is None:
            svc = await self.virtual.create_namespaced_service("kube-system", {
                "metadata": {"name": "kube-dns", "labels": labels},
                "spec": {"selector": labels, "ports": [
                    {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"}]}})
        self.dns_ip = svc.spec.cluster_ip
        if await read_or_none(self.virtual.read_namespaced_config_map, "coredns", "kube-system") is None:
            # its Corefile, mounted by the pods as upstream's are, so synced to the host with them
            await self.virtual.create_namespaced_config_map("kube-system", {
                "metadata": {"name": "coredns", "labels": labels},
                "data": {"Corefile": f".:1053 {{\n  kubernetes {self.config.cluster_domain}\n"
                                     "  forward . /etc/resolv.conf\n}\n"}})
        apps = client.AppsV1Api(self.virtual_api)
        if await read_or_none(apps.read_namespaced_deployment, "coredns", "kube-system") is None:
            await apps.create_namespaced_deployment("kube-system", {
                "metadata": {"name": "coredns", "labels": labels},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels},
                    # passes Pod Security "restricted" (the host namespace enforces it)
                    "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 1001,
                                                 "seccompProfile": {"type": "RuntimeDefault"}},
                             "containers": [{"name": "coredns", "image": COREDNS_IMAGE,
                                             "securityContext": {"allowPrivilegeEscalation": False,
                                                                 "capabilities": {"drop": ["ALL"]},
                                                                 "readOnlyRootFilesystem": True},
                                             "ports": [{"containerPort": 1053, "protocol": "TCP"}],
                                             "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns",
                                                               "readOnly": True}]}],
                             "volumes": [{"name": "config-volume", "configMap": {
                                 "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}]}}}})

    async def _label_pod_security(self, namespace) -> None:
        """upstream pkg/controllers/podsecurity/podsecurity.go: when the enforce level is not
        the configured one, enforce and warn at that level, both at version "latest"."""
        level = self.config.pod_security_standard
        labels = namespace.metadata.labels or {}
        if labels.get("pod-security.kubernetes.io/enforce") != level and not namespace.metadata.deletion_timestamp:
            wanted = {f"pod-security.kubernetes.io/{mode}{suffix}": value for mode in POD_SECURITY_MODES
                      for suffix, value in (("", level), ("-version", "latest"))}
            await _ignore_missing(self.virtual.patch_namespace(namespace.metadata.name, {"metadata": {"labels": wanted}}))

    async def _create_on_host(self, create: Awaitable, vobj, kind: str):
        """``create`` (a host create call); an admission refusal becomes a Warning event on the
        virtual object (upstream: ``SyncError``) and ``Refused``, retried later like upstream's
        requeue, since the tenant may change the object."""
        try:
            return await create
        except ApiException as e:
            if e.status not in (400, 403, 422):
                raise
            message = api_message(e)
            key = (kind, vobj.metadata.namespace, vobj.metadata.name, message)
            if key not in self.reported:
                self.reported.add(key)
                await self._warn(vobj, kind, message)
            raise Refused(message) from None

    async def _warn(self, vobj, kind: str, message: str) -> None:
        meta = vobj.metadata
        await _ignore_missing(self.virtual.create_namespaced_event(meta.namespace, {
            "metadata": {"generateName": f"{meta.name}.", "namespace": meta.namespace},
            "involvedObject": {"kind": kind, "apiVersion": "v1", "name": meta.name, "namespace": meta.namespace,
                               "uid": meta.uid},
            "type": "Warning", "reason": "SyncError", "message": f"Error syncing to physical cluster: {message}",
            "source": {"component": "vcluster-syncer"}, "count": 1,
            "firstTimestamp": _event_time(), "lastTimestamp": _event_time()}))

    # ---- queue --------------------------------------------------------------------------

    async def _enqueue_virtual(self, kind: str, obj: dict) -> None:
        meta = obj["metadata"]
        self._enqueue((kind, meta["namespace"], meta["name"]))

    async def _enqueue_host(self, kind: str, obj: dict) -> None:
        vns, vname = tr.virtual_key(obj)
        if vname:
            # "seen" (upstream's old-object cache) is filled by reconciles that read the host
            # object, never by its events: a DELETED event must not make a later virtual object
            # of the same name look like one whose host copy vanished
            self._enqueue((kind, vns, vname))

    def _enqueue(self, key: tuple[str, str, str]) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    async def _worker(self) -> None:
        handlers = {"pod": self.reconcile_pod, "pvc": self.reconcile_pvc, "service": self.reconcile_service,
                    "secret": self.reconcile_config, "configmap": self.reconcile_config,
                    "serviceaccount": self.reconcile_config}
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            try:
                await handlers[key[0]](*key)
            except Refused as e:
                log.info("%s/%s: %s refused by the host: %s", self.ns, self.name, key, e)
                asyncio.get_running_loop().call_later(10, self._enqueue, key)
            except ApiException as e:
                if e.status == 409:  # conflict: upstream requeues after 1 s
                    asyncio.get_running_loop().call_later(1, self._enqueue, key)
                else:
                    log.warning("%s/%s: reconcile %s failed: %s %s", self.ns, self.name, key, e.status,
                                api_message(e))
                    asyncio.get_running_loop().call_later(2, self._enqueue, key)
            except Exception:
                log.exception("%s/%s: reconcile %s failed", self.ns, self.name, key)
                asyncio.get_running_loop().call_later(2, self._enqueue, key)

    def _host_leftover(self, key: tuple[str, str, str], host_obj, kind: str) -> bool:
        """Should a managed host object without virtual counterpart be deleted? Yes if it
        existed while this syncer ran (the virtual object was deleted: upstream's VirtualOld)
        or, after a restart, if it is fully annotated (``ShouldDeleteHostObject``); never with
        ``vcluster.loft.sh/skip-backsync: "true"`` (upstream ``Reconcile``)."""
        obj = self.host_api.sanitize_for_serialization(host_obj)
        if (obj["metadata"].get("annotations") or {}).get(tr.SKIP_BACKSYNC) == "true":
            return False
        if key in self.seen or tr.should_delete_orphan(obj, kind):
            self.seen.discard(key)
            return True
        return False

    def _owned(self, host_obj, kind: str) -> bool:
        return tr.is_managed(self.host_api.sanitize_for_serialization(host_obj), self.name, kind)

    # ---- pods ---------------------------------------------------------------------------

    async def reconcile_pod(self, kind: str, vns: str, vname: str) -> None:
        key = (kind, vns, vname)
        hname = host_name(vname, vns, self.name)
        vpod = await read_or_none(self.virtual.read_namespaced_pod, vname, vns)
        hpod = await read_or_none(self.host.read_namespaced_pod, hname, self.ns)
        if hpod is not None and not self._owned(hpod, "Pod"):
            if vpod is not None:
                log.info("%s/%s: host pod %s exists and is not managed; virtual pod %s/%s is not synced",
                         self.ns, self.name, hname, vns, vname)
            return
        if vpod is not None and hpod is not None:
            if (hpod.metadata.annotations or {}).get(tr.OBJECT_UID) != vpod.metadata.uid:
                # a new virtual pod under an old name: the old host pod goes and, as upstream's
                # DeleteHostObject drops it from the object cache, its absence later is not
                # taken for a host-side deletion of the new pod (which would then be deleted)
                self.seen.discard(key)
                await _ignore_missing(self.host.delete_namespaced_pod(hname, self.ns))
                return
            self.seen.add(key)
            await self._sync_pod(vpod, hpod)
        elif vpod is not None:
            started = vpod.status and vpod.status.start_time
            if key in self.seen or started or vpod.metadata.deletion_timestamp:
                # the host pod is gone: the virtual pod goes too, at once (no virtual kubelet)
                self.seen.discard(key)
                await _ignore_missing(self.virtual.delete_namespaced_pod(vname, vns, grace_period_seconds=0))
            else:
                await self._create_host_pod(vpod)
        elif hpod is not None and self._host_leftover(key, hpod, "Pod"):
            await _ignore_missing(self.host.delete_namespaced_pod(hname, self.ns))

    async def _create_host_pod(self, vpod) -> None:
        v = self.virtual_api.sanitize_for_serialization(vpod)
        vns = v["metadata"]["namespace"]
        token = None
        for volume in v["spec"].get("volumes") or []:
            for source in (volume.get("projected") or {}).get("sources") or []:
                if "serviceAccountToken" in source:
                    token = await self._virtual_token(v, source["serviceAccountToken"])
        secrets, config_maps = referenced_objects(v)
        for kind, names in (("secret", secrets), ("configmap", config_maps)):
            for name in names:
                self.used.add((kind, vns, name))
                await self.sync_config_to_host(kind, vns, name)
        if self.config.to_host_enabled("serviceAccounts"):
            sa = v["spec"].get("serviceAccountName") or "default"
            await self.sync_config_to_host("serviceaccount", vns, sa)
            workload_sa = host_name(sa, vns, self.name)
        else:
            workload_sa = self.config.workload_service_account
        token_secret = None
        if token is not None and self.config.secrets_for_tokens:
            token_secret = host_name(f"{v['metadata']['name']}-sa-token", vns, self.name)
            await self._put_token_secret(token_secret, {name: token for name in tr.token_volume_names(v)})
        vnamespace = await read_or_none(self.virtual.read_namespace, vns)
        services = (await self.virtual.list_namespaced_service(vns)).items if v["spec"].get("enableServiceLinks") else []
        body = tr.translate_pod(
            v, vcluster=self.name, host_namespace=self.ns, owner=self.owner,
            workload_sa=workload_sa, kubernetes_ip=self.kubernetes_ip,
            dns_ip=self.dns_ip, cluster_domain=self.config.cluster_domain, token=token, token_secret=token_secret,
            vnamespace_labels=(vnamespace.metadata.labels or {}) if vnamespace is not None else {},
            services=[self.virtual_api.sanitize_for_serialization(s) for s in services])
        try:
            created = await self._create_on_host(self.host.create_namespaced_pod(self.ns, body), vpod, "Pod")
        except Refused:
            if token_secret:   # no pod to own it
                await _ignore_missing(self.host.delete_namespaced_secret(token_secret, self.ns))
            raise
        self.seen.add(("pod", vns, v["metadata"]["name"]))
        if token_secret:   # upstream SetPodAsOwner: the token goes with the host pod
            await self.host.patch_namespaced_secret(token_secret, self.ns, {"metadata": {"ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": created.metadata.name, "uid": created.metadata.uid}]}})

    async def _put_token_secret(self, name: str, tokens: dict[str, str]) -> None:
        """A host Secret per pod with its token under each volume's name, re-created on every
        translation (upstream pods/token/sa_token_secret.go); not labelled as synced."""
        await _ignore_missing(self.host.delete_namespaced_secret(name, self.ns))
        metadata = {"name": name, "namespace": self.ns, "annotations": {tr.SKIP_BACKSYNC: "true"}}
        if self.owner:
            metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": self.owner["name"],
                                            "uid": self.owner["uid"]}]
        await self.host.create_namespaced_secret(self.ns, {"metadata": metadata, "type": "Opaque",
                                                           "stringData": tokens})

    async def _virtual_token(self, vpod: dict, source: dict) -> str:
        audiences = [source["audience"]] if source.get("audience") else [
            f"https://kubernetes.default.svc.{self.config.cluster_domain}"]
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=audiences, expiration_seconds=TEN_YEARS,
            bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=vpod["metadata"]["name"], uid=vpod["metadata"]["uid"])))
        sa = vpod["spec"].get("serviceAccountName") or "default"
        result = await self.virtual.create_namespaced_service_account_token(sa, vpod["metadata"]["namespace"], request)
        return result.status.token

    async def _sync_pod(self, vpod, hpod) -> None:
        vname, vns = vpod.metadata.name, vpod.metadata.namespace
        if vpod.metadata.deletion_timestamp and not hpod.metadata.deletion_timestamp:
            await _ignore_missing(self.host.delete_namespaced_pod(
                hpod.metadata.name, self.ns, body=client.V1DeleteOptions(
                    grace_period_seconds=vpod.metadata.deletion_grace_period_seconds,
                    preconditions=client.V1Preconditions(uid=hpod.metadata.uid))))
        if hpod.metadata.deletion_timestamp and not vpod.metadata.deletion_timestamp:
            grace = vpod.spec.termination_grace_period_seconds
            await _ignore_missing(self.virtual.delete_namespaced_pod(
                vname, vns, grace_period_seconds=30 if grace is None else grace))
        node = hpod.spec.node_name
        if node and not vpod.spec.node_name:
            await self._ensure_virtual_node(node)
            await _ignore_missing(self.virtual.create_namespaced_pod_binding(vname, vns, {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": vname},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}, _preload_content=False))
        elif node and vpod.spec.node_name != node:
            await _ignore_missing(self.virtual.delete_namespaced_pod(vname, vns))
            return
        status = self.host_api.sanitize_for_serialization(hpod.status) or {}
        status.pop("qosClass", None)
        current = self.virtual_api.sanitize_for_serialization(vpod.status) or {}
        current.pop("qosClass", None)
        if status != current:
            await _ignore_missing(self.virtual.patch_namespaced_pod_status(vname, vns, {"status": status}))

    async def _ensure_virtual_node(self, node: str) -> None:
        """Fake node (upstream ``nodes/fake_syncer.go``): exists while pods use it."""
        if await read_or_none(self.virtual.read_node, node) is not None:
            return
        await _ignore_missing(self.virtual.create_node({"metadata": {
            "name": node, "labels": {"vcluster.loft.sh/fake-node": "true", "kubernetes.io/hostname": node}}}))
        await self.virtual.patch_node_status(node, {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status (fake node)"}],
            "addresses": [{"type": "Hostname", "address": node}],
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"}}})

    # ---- PVCs (fake-PV mode) --------------------------------------------------------------

    async def reconcile_pvc(self, kind: str, vns: str, vname: str) -> None:
        key = (kind, vns, vname)
        hname = host_name(vname, vns, self.name)
        vpvc = await read_or_none(self.virtual.read_namespaced_persistent_volume_claim, vname, vns)
        hpvc = await read_or_none(self.host.read_namespaced_persistent_volume_claim, hname, self.ns)
        if hpvc is not None and not self._owned(hpvc, "PersistentVolumeClaim"):
            return
        if vpvc is not None and hpvc is not None:
            self.seen.add(key)
            await self._sync_pvc(vpvc, hpvc)   # adopted even with another object-uid
        elif vpvc is not None:
            if key in self.seen:
                self.seen.discard(key)
                await _ignore_missing(self.virtual.delete_namespaced_persistent_volume_claim(
                    vname, vns, grace_period_seconds=0))
            elif not vpvc.metadata.deletion_timestamp:
                # also after a restart: a new host PVC, with the old volumeName (§2.6)
                v = self.virtual_api.sanitize_for_serialization(vpvc)
                await self._create_on_host(self.host.create_namespaced_persistent_volume_claim(
                    self.ns, tr.translate_pvc(v, self.name, self.ns, self.owner)), vpvc, "PersistentVolumeClaim")
                self.seen.add(key)
        else:
            await self._delete_fake_pvs(vns, vname)
            if hpvc is not None and self._host_leftover(key, hpvc, "PersistentVolumeClaim"):
                await _ignore_missing(self.host.delete_namespaced_persistent_volume_claim(hname, self.ns))

    async def _sync_pvc(self, vpvc, hpvc) -> None:
        vname, vns = vpvc.metadata.name, vpvc.metadata.namespace
        if vpvc.metadata.deletion_timestamp and not hpvc.metadata.deletion_timestamp:
            await _ignore_missing(self.host.delete_namespaced_persistent_volume_claim(
                hpvc.metadata.name, self.ns, body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(uid=hpvc.metadata.uid))))
            return
        if hpvc.metadata.deletion_timestamp and not vpvc.metadata.deletion_timestamp:
            await _ignore_missing(self.virtual.delete_namespaced_persistent_volume_claim(
                vname, vns, grace_period_seconds=30))
            return
        annotations = hpvc.metadata.annotations or {}
        if annotations.get(tr.OBJECT_UID) != vpvc.metadata.uid:
            await self.host.patch_namespaced_persistent_volume_claim(hpvc.metadata.name, self.ns, {
                "metadata": {"annotations": {tr.OBJECT_UID: vpvc.metadata.uid}}})
        volume = hpvc.spec.volume_name
        if volume and vpvc.spec.volume_name and vpvc.spec.volume_name != volume:
            # upstream recreatePersistentVolumeClaim (event VolumeNameDiffers)
            v = self.virtual_api.sanitize_for_serialization(vpvc)
            await self.virtual.delete_namespaced_persistent_volume_claim(vname, vns)
            v["spec"]["volumeName"] = volume
            for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
                v["metadata"].pop(k, None)
            v.pop("status", None)
            await _ignore_missing(self.virtual.create_namespaced_persistent_volume_claim(vns, v))
            return
        if volume and not vpvc.spec.volume_name:
            await self.virtual.patch_namespaced_persistent_volume_claim(vname, vns, {"spec": {"volumeName": volume}})
        if volume:
            await self._ensure_fake_pv(volume, vpvc, hpvc)
        status = self.host_api.sanitize_for_serialization(hpvc.status) or {}
        if status != (self.virtual_api.sanitize_for_serialization(vpvc.status) or {}):
            await self.virtual.patch_namespaced_persistent_volume_claim_status(vname, vns, {"status": status})

    async def _ensure_fake_pv(self, name: str, vpvc, hpvc) -> None:
        if await read_or_none(self.virtual.read_persistent_volume, name) is not None:
            return
        await _ignore_missing(self.virtual.create_persistent_volume({
            "metadata": {"name": name, "labels": {"vcluster.loft.sh/fake-pv": "true"},
                         "annotations": {"kubernetes.io/createdby": "fake-pv-provisioner",
                                         "pv.kubernetes.io/provisioned-by": "fake-pv-provisioner",
                                         "pv.kubernetes.io/bound-by-controller": "true"}},
            "spec": {
                "capacity": (hpvc.status.capacity if hpvc.status and hpvc.status.capacity
                             else vpvc.spec.resources.requests),
                "accessModes": vpvc.spec.access_modes, "volumeMode": vpvc.spec.volume_mode or "Filesystem",
                "flexVolume": {"driver": "fake"},
                "persistentVolumeReclaimPolicy": "Delete",   # hard-coded upstream (#2098, #2939)
                "storageClassName": vpvc.spec.storage_class_name or "",
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": vpvc.metadata.namespace,
                             "name": vpvc.metadata.name, "uid": vpvc.metadata.uid,
                             "resourceVersion": vpvc.metadata.resource_version}}}))

    async def _delete_fake_pvs(self, vns: str, vname: str) -> None:
        pvs = await self.virtual.list_persistent_volume(label_selector="vcluster.loft.sh/fake-pv=true")
        for pv in pvs.items:
            ref = pv.spec.claim_ref
            if ref and ref.namespace == vns and ref.name == vname:
                if pv.metadata.finalizers:
                    await _ignore_missing(self.virtual.patch_persistent_volume(pv.metadata.name, {
                        "metadata": {"finalizers": None}}))
                await _ignore_missing(self.virtual.delete_persistent_volume(pv.metadata.name))

    # ---- services -------------------------------------------------------------------------

    async def reconcile_service(self, kind: str, vns: str, vname: str) -> None:
        if (vns, vname) == ("default", "kubernetes"):
            return  # upstream SyncKubernetesService handles it separately
        key = (kind, vns, vname)
        hname = host_name(vname, vns, self.name)
        vsvc = await read_or_none(self.virtual.read_namespaced_service, vname, vns)
        hsvc = await read_or_none(self.host.read_namespaced_service, hname, self.ns)
        if hsvc is not None and not self._owned(hsvc, "Service"):
            return
        if vsvc is not None and hsvc is not None:
            self.seen.add(key)
        elif vsvc is not None:
            if key in self.seen:
                self.seen.discard(key)
                await _ignore_missing(self.virtual.delete_namespaced_service(vname, vns))
                return
            body = tr.translate_service(self.virtual_api.sanitize_for_serialization(vsvc), self.name, self.ns, self.owner)
            try:
                # same cluster IP on both sides (vcluster.md §3.8)
                await self.host.create_namespaced_service(self.ns, body)
            except ApiException as e:
                if e.status != 422 or body["spec"].get("clusterIP") in (None, "None") or "clusterIP" not in str(e.body):
                    await self._create_on_host(_raising(e), vsvc, "Service")
                log.warning("%s/%s: cluster IP %s is taken on the host; service %s/%s gets another",
                            self.ns, self.name, body["spec"]["clusterIP"], vns, vname)
                body["spec"].pop("clusterIP")
                await self._create_on_host(self.host.create_namespaced_service(self.ns, body), vsvc, "Service")
            self.seen.add(key)
        elif hsvc is not None and self._host_leftover(key, hsvc, "Service"):
            await _ignore_missing(self.host.delete_namespaced_service(hname, self.ns))

    # ---- secrets / configMaps used by pods (toHost) ---------------------------------------

    @staticmethod
    def _config_api(kind: str, side: client.CoreV1Api):
        resource = {"secret": "secret", "configmap": "config_map", "serviceaccount": "service_account"}[kind]
        return tuple(getattr(side, f"{verb}_namespaced_{resource}") for verb in ("read", "create", "replace", "delete"))

    async def sync_config_to_host(self, kind: str, vns: str, vname: str) -> None:
        """Create or update the host copy of a secret/configMap a pod uses, or of a
        ServiceAccount (``sync.toHost.serviceAccounts``)."""
        vread, *_ = self._config_api(kind, self.virtual)
        hread, hcreate, hreplace, _ = self._config_api(kind, self.host)
        vobj = await read_or_none(vread, vname, vns)
        if vobj is None:
            return  # the kubelet reports FailedMount until it appears
        body = tr.translate_config_object(self.virtual_api.sanitize_for_serialization(vobj),
                                          tr.HOST_KINDS[kind], self.name, self.ns, self.owner)
        hobj = await read_or_none(hread, body["metadata"]["name"], self.ns)
        if hobj is None:
            await hcreate(self.ns, body)
        elif self._owned(hobj, body["kind"]):
            body["metadata"]["resourceVersion"] = hobj.metadata.resource_version
            body["metadata"]["ownerReferences"] = self.host_api.sanitize_for_serialization(
                hobj.metadata.owner_references)
            await hreplace(body["metadata"]["name"], self.ns, body)
        self.seen.add((kind, vns, vname))

    async def reconcile_config(self, kind: str, vns: str, vname: str) -> None:
        if (vns, vname) in self.from_host_targets and kind == "secret":
            async with self._from_host_locks.setdefault((vns, vname), asyncio.Lock()):
                source = self.from_host_targets.get((vns, vname))
                if source is not None:   # still mapped: the host Secret was not deleted meanwhile
                    await self._sync_from_host(source, (vns, vname))
            return
        key = (kind, vns, vname)
        vread, *_ = self._config_api(kind, self.virtual)
        hread, _, _, hdelete = self._config_api(kind, self.host)
        hname = host_name(vname, vns, self.name)
        vobj = await read_or_none(vread, vname, vns)
        hobj = await read_or_none(hread, hname, self.ns)
        hkind = tr.HOST_KINDS[kind]
        if hobj is not None and not self._owned(hobj, hkind):
            return
        if vobj is not None and hobj is not None:
            if (hobj.metadata.annotations or {}).get(tr.OBJECT_UID) != vobj.metadata.uid:
                await _ignore_missing(hdelete(hname, self.ns))   # deleted and re-created (§1.6)
            await self.sync_config_to_host(kind, vns, vname)
        elif vobj is not None:
            # used by a pod (e.g. kube-root-ca.crt published after the pod was synced), or a
            # ServiceAccount, which syncs whenever its kind is enabled
            if key in self.used or kind == "serviceaccount":
                await self.sync_config_to_host(kind, vns, vname)
        elif hobj is not None and self._host_leftover(key, hobj, hkind):
            await _ignore_missing(hdelete(hname, self.ns))

    # ---- fromHost secrets ------------------------------------------------------------------

    def _from_host_target(self, namespace: str, name: str) -> tuple[str, str] | None:
        for m in self.config.secret_mappings:   # sorted in upstream matching order
            if m.host_namespace != namespace:
                continue
            if m.host_name == name or m.host_name == "*":
                return m.virtual_namespace, name if m.virtual_name == "*" else m.virtual_name
        return None

    async def _on_host_secret_from_host(self, event_type: str, secret: dict) -> None:
        meta = secret["metadata"]
        if MANAGED_BY in (meta.get("labels") or {}):
            return  # objects vCluster synced to the host are never imported back
        target = self._from_host_target(meta["namespace"], meta["name"])
        if target is None:
            return
        source = (meta["namespace"], meta["name"])
        async with self._from_host_locks.setdefault(target, asyncio.Lock()):
            if event_type == "DELETED":
                if self.from_host_targets.pop(target, None) is not None:
                    await _ignore_missing(self.virtual.delete_namespaced_secret(target[1], target[0]))
                return
            self.from_host_targets[target] = source
            await self._sync_from_host(source, target)

    async def _sync_from_host(self, source: tuple[str, str], target: tuple[str, str]) -> None:
        """One-way copy of labels, annotations and data; virtual edits are overwritten and a
        deleted virtual copy comes back (vcluster-sync.md §4)."""
        hobj = await read_or_none(self.host.read_namespaced_secret, source[1], source[0])
        if hobj is None:
            return
        vns, vname = target
        if await read_or_none(self.virtual.read_namespace, vns) is None:
            await _ignore_missing(self.virtual.create_namespace({"metadata": {"name": vns}}))
        body = {"metadata": {"name": vname, "namespace": vns, "labels": hobj.metadata.labels,
                             "annotations": hobj.metadata.annotations},
                "type": hobj.type, "data": hobj.data}
        vobj = await read_or_none(self.virtual.read_namespaced_secret, vname, vns)
        if vobj is None:
            await self.virtual.create_namespaced_secret(vns, body)
        elif (vobj.data, vobj.metadata.labels, vobj.metadata.annotations) != (
                hobj.data, hobj.metadata.labels, hobj.metadata.annotations):
            body["metadata"]["resourceVersion"] = vobj.metadata.resource_version
            body["type"] = vobj.type   # type is not copied on update
            await self.virtual.replace_namespaced_secret(vname, vns, body)


def _event_time() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _raising(error: Exception):
    raise error

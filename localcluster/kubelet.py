"""A local stand-in for the kubelet: Node objects, and pods as real local processes.

What it does, as the real kubelet does:
- registers Ready Node objects and renews their Leases, so the node lifecycle controller
  keeps them Ready;
- watches pods bound to its nodes (one shared watch), gives each a unique loopback pod IP,
  materialises secret/configMap/projected/downwardAPI/emptyDir/hostPath/PVC volumes, and runs
  each container whose image maps to a local command as a real process in a private mount
  namespace with the container's command, args, env, working dir and volume mounts;
- reports container states, exit codes, restarts (restartPolicy) and readiness (the
  readinessProbe, else the first containerPort accepting connections);
- on deletion sends SIGTERM, waits the grace period, kills, and deletes the object.

Images that cannot run here are simulated (Running/Ready without a process); a plugin
(``--plugin``, e.g. vcluster_real) adds image rules. An image with no rule waits as one that
cannot be pulled, with a message naming the rules file.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import sys
from pathlib import Path

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from . import podspec
from .kube import watch_forever
from .pods import PodWorker, now

__all__ = ["LocalKubelet"]

# CPU the node declares to the scheduler. Nothing enforces requests here (no cgroups), and
# a vCluster control plane requests 200m but idles at a few percent of a core, so the node declares
# 8 CPUs per core: a session's tests can keep a few dozen vClusters scheduled on 2 cores.
NODE_CPU = int(os.environ.get("LOCALCLUSTER_NODE_CPU") or 8 * (os.cpu_count() or 2))
KUBELET_VERSION = "v1.36.3"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10
log = logging.getLogger("localcluster.kubelet")


class LocalKubelet:
    def __init__(self, api: client.ApiClient, *, state_dir: Path, images: podspec.ImageMap,
                 nodes: list[str], apiserver_host: str, apiserver_port: int,
                 pod_cidr: str, container_path: str | None = None, node_ip: str = "127.0.0.1",
                 cluster_dns: str | None = None):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.pods_dir = state_dir / "pods"
        self.images = images
        self.nodes = nodes
        self.node_ip = node_ip
        self.apiserver_host = apiserver_host
        self.apiserver_port = apiserver_port
        self.cluster_dns = cluster_dns   # the kubelet's clusterDNS: ClusterFirst pods' nameserver
        # what dnsPolicy Default pods get: this machine's, the node's
        self.node_resolv = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
        # this Python environment's scripts (jupyterhub-singleuser) first, as an image would have them
        self.container_path = container_path or os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get("PATH", "/usr/bin:/bin")])
        self.ips = podspec.IPPool(pod_cidr)
        self.workers: dict[str, PodWorker] = {}
        self._tasks: list[asyncio.Task] = []
        self._http: aiohttp.ClientSession | None = None

    # ---- lookups used by pod workers --------------------------------------------------

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            s = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (s.data or {}).items()}

    async def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            cm = await self.core.read_namespaced_config_map(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        data = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return data

    async def claim_path(self, namespace: str, claim: str) -> str:
        try:
            pvc = await self.core.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as e:
            if e.status == 404:
                raise podspec.PodSpecError(f"persistentvolumeclaim {claim!r} not found") from None
            raise
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise podspec.PodSpecError(f"persistentvolumeclaim {claim!r} is not bound yet")
        pv = await self.core.read_persistent_volume(pvc.spec.volume_name)
        source = pv.spec.host_path or pv.spec.local
        if source is None:
            raise podspec.PodSpecError(
                f"persistentvolume {pv.metadata.name!r} has no hostPath or local source; "
                f"the local kubelet can only mount directories on this machine")
        Path(source.path).mkdir(parents=True, exist_ok=True)
        return source.path

    async def service_account_token(self, pod: dict, source: dict) -> str:
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[source["audience"]] if source.get("audience") else [],
            expiration_seconds=source.get("expirationSeconds", 3607),
            bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=pod["metadata"]["name"], uid=pod["metadata"]["uid"]),
        ))
        sa = pod["spec"].get("serviceAccountName") or "default"
        try:
            result = await self.core.create_namespaced_service_account_token(sa, pod["metadata"]["namespace"], request)
        except ApiException as e:
            raise podspec.PodSpecError(f"token for serviceaccount {sa!r}: {e.reason}") from None
        return result.status.token

    async def probe(self, kind: str, ip: str, port: int, path: str | None) -> bool:
        try:
            if kind == "tcp":
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 1)
                writer.close()
                return True
            # an HTTPS probe does not verify the certificate, as the kubelet's does not
            async with self._http.get(f"{kind}://{ip}:{port}{path}", ssl=False,
                                      timeout=aiohttp.ClientTimeout(total=1)) as r:
                return 200 <= r.status < 400
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError):
            return False

    async def event(self, pod: dict, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                kind="Pod", api_version="v1", name=meta["name"], namespace=meta["namespace"], uid=meta["uid"]),
            reason=reason, message=message[:1024], type=kind,
            source=client.V1EventSource(component="kubelet", host=pod["spec"].get("nodeName")),
            first_timestamp=now(), last_timestamp=now(), count=1,
        )
        try:
            await self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as e:
            if e.status not in (403, 404):  # namespace terminating or gone
                log.debug("event for %s/%s: %s", meta["namespace"], meta["name"], e.reason)

    # ---- nodes ------------------------------------------------------------------------

    def _node_status(self) -> dict:
        t = now()
        conditions = [
            {"type": kind, "status": "False", "reason": f"KubeletHas{ok}", "lastHeartbeatTime": t,
             "lastTransitionTime": t}
            for kind, ok in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                             ("PIDPressure", "SufficientPID"))
        ]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "local kubelet is posting ready status",
                           "lastHeartbeatTime": t, "lastTransitionTime": t})
        capacity = {"cpu": str(NODE_CPU), "memory": "24Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "capacity": capacity, "allocatable": capacity, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self.node_ip}],
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64", "containerRuntimeVersion": "localcluster://1",
                "kernelVersion": os.uname().release, "osImage": "localcluster",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }

    async def register_nodes(self) -> None:
        for name in self.nodes:
            body = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "localcluster.dev/node": "true"}},
            }
            try:
                await self.core.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    raise
            await self.core.patch_node_status(name, {"status": self._node_status()})

    async def _heartbeat(self) -> None:
        while True:
            for name in self.nodes:
                try:
                    await self._renew_lease(name)
                    await self.core.patch_node_status(name, {"status": self._node_status()})
                except Exception:
                    log.exception("heartbeat for node %s failed", name)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _renew_lease(self, node: str) -> None:
        t = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": t}
        try:
            await self.coordination.patch_namespaced_lease(node, "kube-node-lease", {"spec": spec})
        except ApiException as e:
            if e.status != 404:
                raise
            await self.coordination.create_namespaced_lease("kube-node-lease", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"}, "spec": spec})

    # ---- pods -------------------------------------------------------------------------

    async def _on_pod(self, event_type: str, pod_obj) -> None:
        pod = self.api.sanitize_for_serialization(pod_obj)
        meta, spec = pod["metadata"], pod["spec"]
        if spec.get("nodeName") not in self.nodes:
            return
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker:
                worker.deleting.set()
            return
        if worker is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not meta.get("deletionTimestamp"):
                return
            worker = PodWorker(self, meta["namespace"], meta["name"], uid, pod)
            self.workers[uid] = worker
            worker.task = asyncio.create_task(worker.run())
            worker.task.add_done_callback(lambda _t, uid=uid: self.workers.pop(uid, None))
        else:
            worker.pod["metadata"] = meta  # deletion timestamp and grace period
        if meta.get("deletionTimestamp"):
            worker.deleting.set()

    async def start(self) -> None:
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession()
        await self.register_nodes()
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        # One watch for the pods of all local nodes; field selectors cannot OR several nodes.
        selector = {"field_selector": f"spec.nodeName={self.nodes[0]}"} if len(self.nodes) == 1 else {}
        self._tasks.append(asyncio.create_task(watch_forever(
            self.core.list_pod_for_all_namespaces, self._on_pod, what="pods", **selector)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for worker in list(self.workers.values()):
            if worker.task:
                worker.task.cancel()
        await asyncio.gather(*self._tasks, *(w.task for w in self.workers.values() if w.task),
                             return_exceptions=True)
        if self._http:
            await self._http.close()

"""Pod ``N-0`` of upstream's vCluster chart: what the emulated ``syncer`` container does when it starts.

Registered with the local kubelet as ``simulate: vcluster``. On start it reads the rendered
``vcluster.yaml`` from its mounted ``vc-config-N`` volume, refuses to run beside another
vCluster in the namespace, ensures Secret ``N-certs``, starts the virtual API and
controller-manager, runs the syncer and finally writes Secret ``vc-N`` (and
``exportKubeConfig.additionalSecrets``), in upstream's order (``cmd/vcluster/cmd/start.go``).
The container is Ready while the virtual API serves ``/readyz``; stopping it (scale to 0,
pause, uninstall) stops the control plane and syncer but leaves synced host pods running.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

import vcluster_real
from localcluster.kube import api_client
from vcluster_spawner.vcluster import read_or_none

from .config import VClusterConfig
from .controlplane import PORT, VirtualControlPlane
from .syncer import StartError, Syncer

log = logging.getLogger("vcluster_emulation")

DELAY_ENV = "VCLUSTER_EMULATION_STARTUP_DELAY"


@dataclass(frozen=True)
class HostCluster:
    binaries: Path
    etcd_url: str
    service_cidr: str
    log_dir: Path
    startup_delay: float


class VClusterSimulator:
    def __init__(self, kubelet, host: HostCluster):
        self.kubelet = kubelet
        self.host = host
        self.core = client.CoreV1Api(kubelet.api)
        self.control_plane: VirtualControlPlane | None = None
        self.syncer: Syncer | None = None
        self.virtual_api: client.ApiClient | None = None
        self.syncer_host_api: client.ApiClient | None = None
        self.task: asyncio.Task | None = None
        self.api_started = False

    async def start(self, pod: dict, container: dict, pod_ip: str, volumes: dict[str, str]) -> None:
        self.task = asyncio.create_task(self._run(pod, pod_ip, volumes))

    async def _service_account_client(self, pod: dict) -> client.ApiClient:
        """The host API as the pod's ServiceAccount (a token bound to the pod, as the kubelet
        projects it into a syncer pod): the vCluster chart's Role bounds what the syncer may do,
        so a right the spawner's values take away is really gone."""
        meta = pod["metadata"]
        token = await self.core.create_namespaced_service_account_token(
            pod["spec"].get("serviceAccountName") or "default", meta["namespace"], {"spec": {
                "expirationSeconds": 24 * 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}}})
        host = self.kubelet.api.configuration
        configuration = client.Configuration()
        configuration.host, configuration.ssl_ca_cert = host.host, host.ssl_ca_cert
        configuration.api_key = {"BearerToken": f"Bearer {token.status.token}"}
        return client.ApiClient(configuration)

    async def _run(self, pod: dict, pod_ip: str, volumes: dict[str, str]) -> None:
        namespace = pod["metadata"]["namespace"]
        name = pod["metadata"]["labels"]["release"]
        try:
            config = VClusterConfig.parse(
                (Path(volumes["vcluster-config"]) / "config.yaml").read_text(), name, namespace)
            if self.host.startup_delay:
                await asyncio.sleep(self.host.startup_delay)
            await self._refuse_second_vcluster(name, namespace)
            owner_svc = await read_or_none(self.core.read_namespaced_service, name, namespace)
            if owner_svc is None and config.set_owner:
                raise StartError(f"get vcluster service: service {namespace}/{name} not found")
            owner = {"name": name, "uid": owner_svc.metadata.uid} if owner_svc else None
            service_ip = owner_svc.spec.cluster_ip if owner_svc else None
            cp = self.control_plane = VirtualControlPlane(
                name=name, namespace=namespace, pod_ip=pod_ip, data_dir=Path(volumes["data"]),
                binaries=self.host.binaries, etcd_url=self.host.etcd_url, service_cidr=self.host.service_cidr,
                cluster_domain=config.cluster_domain, extra_sans=config.extra_sans, service_ip=service_ip)
            certs = await self._read_secret(f"{name}-certs", namespace)
            files = cp.ensure_pki(certs)
            if certs is None:
                await self._write_secret(f"{name}-certs", namespace, files, owner,
                                         {"app": "vcluster", "vcluster-name": name})
            await cp.start(self.host.log_dir)
            self.api_started = True
            self.virtual_api = await api_client(cp.admin_kubeconfig)
            # its own connections to the host, as a syncer pod has: sharing the kubelet's pool
            # (100 connections) starved syncers beyond ~14 vClusters, ~7 host watches each
            self.syncer_host_api = await self._service_account_client(pod)
            self.syncer = Syncer(self.syncer_host_api, self.virtual_api, config, owner=owner,
                                 kubernetes_ip=service_ip or pod_ip)
            await self.syncer.start()
            await self._export_kubeconfigs(cp, config, owner)
            log.info("vCluster %s/%s is up on %s:%s", namespace, name, pod_ip, PORT)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            message = f"vCluster {namespace}/{name} control plane failed to start: {e}"
            log.error(message, exc_info=not isinstance(e, StartError))
            await self.kubelet.event(pod, "Warning", "VClusterStartFailed", message)
            await self._stop_components()

    async def _refuse_second_vcluster(self, name: str, namespace: str) -> None:
        """Since 0.25 the control plane refuses to start beside another vCluster."""
        apps = client.AppsV1Api(self.kubelet.api)
        others = await apps.list_namespaced_stateful_set(namespace, label_selector="app=vcluster")
        for sts in others.items:
            if (sts.metadata.labels or {}).get("release") != name:
                raise StartError(f"there is already a virtual cluster in namespace {namespace} "
                                 f"({sts.metadata.name}); only one vCluster per namespace is allowed")

    async def _read_secret(self, name: str, namespace: str) -> dict[str, bytes] | None:
        secret = await read_or_none(self.core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def _write_secret(self, name: str, namespace: str, data: dict[str, bytes], owner: dict | None,
                            labels: dict[str, str]) -> None:
        meta = {"name": name, "namespace": namespace, "labels": labels}
        if owner:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": owner["name"],
                                        "uid": owner["uid"], "controller": False}]
        body = {"metadata": meta, "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
        try:
            await self.core.create_namespaced_secret(namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise
            await self.core.patch_namespaced_secret(name, namespace, {"data": body["data"]})

    async def _export_kubeconfigs(self, cp: VirtualControlPlane, config: VClusterConfig, owner: dict | None) -> None:
        """Secret vc-N (upstream pkg/setup/controllers.go WriteKubeConfigToSecret)."""
        export = config.export_kubeconfig
        targets = [{"name": f"vc-{config.name}", "namespace": config.namespace, **{
            k: export.get(k) for k in ("context", "server", "insecure")}}]
        for extra in export.get("additionalSecrets") or []:
            targets.append({**extra, "namespace": extra.get("namespace") or config.namespace})
        for t in targets:
            kubeconfig = cp.kubeconfig(t.get("server") or f"https://localhost:{PORT}",
                                       context=t.get("context") or "Default", insecure=bool(t.get("insecure")))
            data = {
                "config": yaml.safe_dump(kubeconfig).encode(),
                "certificate-authority": (cp.pki_dir / "ca.crt").read_bytes(),
                "client-certificate": (cp.pki_dir / "admin.crt").read_bytes(),
                "client-key": (cp.pki_dir / "admin.key").read_bytes(),
                "token": b"",
            }
            same_ns = t["namespace"] == config.namespace
            await self._write_secret(t["name"], t["namespace"], data, owner if same_ns else None,
                                     {"app": "vcluster", "vcluster-name": config.name})

    async def ready(self) -> bool:
        return self.api_started and self.control_plane is not None and await self.control_plane.readyz()

    async def _stop_components(self) -> None:
        if self.syncer:
            await self.syncer.stop()
        if self.virtual_api:
            await self.virtual_api.close()
        if self.syncer_host_api:
            await self.syncer_host_api.close()
        if self.control_plane:
            await self.control_plane.stop()
        self.api_started = False

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self._stop_components()


def register(cluster) -> None:
    """localcluster plugin hook (``python -m localcluster up --plugin vcluster_emulation``)."""
    from localcluster.kubelet import register_simulator

    host = HostCluster(
        binaries=cluster.binaries, etcd_url=cluster.control_plane.etcd_url, service_cidr=cluster.service_cidr,
        log_dir=cluster.state_dir / "logs" / "vclusters",
        startup_delay=float(os.environ.get(DELAY_ENV, "0")),
    )
    register_simulator("vcluster", lambda kubelet: VClusterSimulator(kubelet, host))
    # the chart is upstream's (vcluster_real.chart): its init container copies the Kubernetes
    # image's binaries, as on the real one; only the syncer container is simulated
    built = vcluster_real.build(cluster.binaries / "helm")
    cluster.images = cluster.images.extended([vcluster_real.KUBERNETES_IMAGE_RULE], source=__name__,
                                             vcluster_kubernetes=str(vcluster_real.kubernetes_image(cluster, built)))

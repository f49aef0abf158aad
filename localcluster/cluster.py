"""The local cluster as one unit: control plane, local kubelet and volume provisioner."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from . import dns
from .controlplane import ControlPlane, Identity, loopback_ranges, mint_identity
from .kube import api_client
from .kubelet import LocalKubelet
from .podspec import ImageMap
from .processes import wait_for
from .provisioner import LocalProvisioner
from .serviceproxy import ServiceProxy

log = logging.getLogger("localcluster")

DEFAULT_IMAGES = Path(__file__).parent / "images.yaml"
STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class ClusterState:
    """What a client needs to use a running local cluster; written to ``cluster.json``."""

    state_dir: Path
    server: str
    admin_kubeconfig: Path
    binaries: Path
    pid: int
    service_cidr: str
    pod_cidr: str

    @classmethod
    def read(cls, state_dir: Path) -> ClusterState:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return cls(Path(data["state_dir"]), data["server"], Path(data["admin_kubeconfig"]),
                   Path(data["binaries"]), data["pid"], data["service_cidr"], data["pod_cidr"])

    def write(self) -> None:
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps({
            "state_dir": str(self.state_dir), "server": self.server,
            "admin_kubeconfig": str(self.admin_kubeconfig), "binaries": str(self.binaries),
            "pid": self.pid, "service_cidr": self.service_cidr, "pod_cidr": self.pod_cidr,
        }, indent=2))
        tmp.rename(self.state_dir / STATE_FILE)

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"

    def mint_identity(self, user: str, groups: tuple[str, ...] = ()) -> Identity:
        return mint_identity(self.state_dir, self.server, user, groups)


class LocalCluster:
    def __init__(self, state_dir: Path, binaries: Path, *, images: Path = DEFAULT_IMAGES,
                 nodes: int = 1, plugins: tuple[str, ...] = (), verbosity: int = 1):
        self.state_dir = state_dir
        self.binaries = binaries
        # "{imagefs}": files images would contain (localcluster/imagefs)
        self.images = ImageMap.load(images).extended(imagefs=str(Path(__file__).parent / "imagefs"))
        self.node_names = [f"local-node-{i}" for i in range(nodes)]
        self.plugins = plugins
        self.service_cidr, self.pod_cidr = loopback_ranges()
        self.control_plane = ControlPlane(state_dir, binaries, verbosity, service_cidr=self.service_cidr)
        self.api: client.ApiClient | None = None
        self.kubelet: LocalKubelet | None = None
        self._background: list[asyncio.Task] = []

    async def start(self, progress=print) -> ClusterState:
        started = time.monotonic()
        progress("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler")
        await self.control_plane.start()
        # "{coredns}": the real CoreDNS, for the cluster's DNS and the images plugins map to it
        self.images = self.images.extended(coredns=str(await asyncio.to_thread(dns.build)))
        for plugin in self.plugins:  # e.g. vcluster_real adds its image rules
            module = importlib.import_module(plugin)
            if hasattr(module, "register"):
                module.register(self)
        self.api = await api_client(self.control_plane.admin_kubeconfig)
        provisioner = LocalProvisioner(self.api, self.state_dir / "volumes")
        await provisioner.create_storage_classes()
        self._background.append(asyncio.create_task(provisioner.run()))
        self._background.append(asyncio.create_task(ServiceProxy(self.api, self.service_cidr).run()))
        progress(f"registering node(s) {', '.join(self.node_names)} with the local kubelet")
        self.kubelet = LocalKubelet(
            self.api, state_dir=self.state_dir, images=self.images, nodes=self.node_names,
            apiserver_host="127.0.0.1", apiserver_port=self.control_plane.apiserver_port,
            pod_cidr=self.pod_cidr, cluster_dns=dns.cluster_dns_ip(self.service_cidr),
        )
        await self.kubelet.start()
        await dns.deploy(self.api, self.service_cidr)
        core = client.CoreV1Api(self.api)

        async def default_service_account():  # proves the serviceaccount controller runs
            try:
                await core.read_namespaced_service_account("default", "default")
                return True
            except ApiException:
                return False

        await wait_for(default_service_account, timeout=60, what="the default ServiceAccount",
                       alive=self.control_plane.processes)
        progress("waiting for the cluster DNS (CoreDNS, kube-system/kube-dns)")
        apps = client.AppsV1Api(self.api)

        async def dns_ready():
            deployment = await apps.read_namespaced_deployment("coredns", dns.NAMESPACE)
            return (deployment.status.ready_replicas or 0) >= 1

        await wait_for(dns_ready, timeout=120, what="the cluster DNS (kube-system/coredns Ready)",
                       alive=self.control_plane.processes)
        state = ClusterState(self.state_dir, self.control_plane.server, self.control_plane.admin_kubeconfig,
                             self.binaries, os.getpid(), self.service_cidr, self.pod_cidr)
        state.write()
        progress(f"cluster ready in {time.monotonic() - started:.1f} s: KUBECONFIG={state.admin_kubeconfig}")
        return state

    async def watch_health(self) -> None:
        """Returns (raising) when a control-plane component exits unexpectedly."""
        while True:
            self.control_plane.check_alive()
            await asyncio.sleep(1)

    async def stop(self) -> None:
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        if self.kubelet:
            await self.kubelet.stop()  # pods' processes first, while the API still answers
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.api:
            await self.api.close()
        await self.control_plane.stop()

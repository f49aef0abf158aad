"""The emulated vCluster control plane: a real kube-apiserver and kube-controller-manager of
its own per vCluster, on the host etcd under a prefix that lives with ``data-N-0``.

Upstream (v0.36.1 ``cmd/vcluster/cmd/start.go``, ``pkg/certs``, ``pkg/k8s/k8s.go``) runs
apiserver, controller-manager and the syncer in pod ``N-0``, stores its state in the
``data`` volume (kine/SQLite) and its PKI in Secret ``N-certs``. Here the state's identity is a
marker file in that same volume: keep the PVC and the old virtual cluster comes back (the
"revival" of a reinstall); lose it and the cluster starts empty.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import uuid
from pathlib import Path

import aiohttp
import yaml

from localcluster import pki
from localcluster.processes import ManagedProcess, ProcessGroup, free_port, wait_for

log = logging.getLogger("vcluster_emulation")

PORT = 8443
KCM_CONTROLLERS = (
    # upstream pkg/k8s/k8s.go disables what only makes sense with real nodes or volumes;
    # endpoints are off here as on the host (loopback pod IPs, see localcluster/serviceproxy.py)
    "*,-nodeipam,-nodelifecycle,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,"
    "-cloud-node-lifecycle,-ttl,-endpoint,-endpointslice,-endpointslicemirroring"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class VirtualControlPlane:
    def __init__(self, *, name: str, namespace: str, pod_ip: str, data_dir: Path, binaries: Path,
                 etcd_url: str, service_cidr: str, cluster_domain: str, extra_sans: list[str],
                 service_ip: str | None):
        self.name, self.namespace, self.pod_ip = name, namespace, pod_ip
        self.data_dir = data_dir
        self.binaries = binaries
        self.etcd_url = etcd_url
        self.service_cidr = service_cidr
        self.cluster_domain = cluster_domain
        self.extra_sans = extra_sans
        self.service_ip = service_ip
        self.group = ProcessGroup()
        self.pki_dir = data_dir / "pki"
        self.admin_kubeconfig = data_dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.pod_ip}:{PORT}"

    def state_id(self) -> str:
        """Which virtual cluster this volume holds; created on first start."""
        marker = self.data_dir / "state-id"
        if not marker.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(uuid.uuid4().hex)
        return marker.read_text().strip()

    def ensure_pki(self, certs_secret: dict[str, bytes] | None) -> dict[str, bytes]:
        """CA and service-account key from Secret ``N-certs`` if it exists (so clients that pinned
        the CA keep working across restarts), else new ones; a fresh serving cert each start
        (upstream regenerates it when the SANs change, e.g. a new pod IP)."""
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        if certs_secret and {"ca.crt", "ca.key", "sa.key"} <= set(certs_secret):
            files = {k: certs_secret[k] for k in ("ca.crt", "ca.key", "sa.key")}
        else:
            ca = pki.CertificateAuthority.create(f"vcluster-{self.name}-ca")
            files = {"ca.crt": ca.pair.cert_pem, "ca.key": ca.pair.key_pem, "sa.key": pki.service_account_key()}
        for fname, content in files.items():
            (self.pki_dir / fname).write_bytes(content)
        ca = pki.CertificateAuthority.load(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")
        sans = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                f"kubernetes.default.svc.{self.cluster_domain}", "localhost", self.name,
                f"{self.name}.{self.namespace}", "127.0.0.1", self.pod_ip, *self.extra_sans]
        if self.service_ip:
            sans.append(self.service_ip)
        ca.issue("kube-apiserver", server_names=tuple(dict.fromkeys(sans)), client=False).write(
            self.pki_dir / "apiserver.crt", self.pki_dir / "apiserver.key")
        admin = ca.issue("vcluster-admin", ("system:masters",))
        admin.write(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        kcm = ca.issue("system:kube-controller-manager")
        kcm.write(self.pki_dir / "kcm.crt", self.pki_dir / "kcm.key")
        self._write_kubeconfig(self.admin_kubeconfig, "admin")
        self._write_kubeconfig(self.data_dir / "kcm.kubeconfig", "kcm")
        return files

    def _write_kubeconfig(self, path: Path, who: str) -> None:
        path.write_text(yaml.safe_dump(self.kubeconfig(self.server, who=who)))

    def kubeconfig(self, server: str, *, who: str = "admin", context: str = "Default",
                   insecure: bool = False) -> dict:
        """Upstream's exported kubeconfig shape: certificate data inline."""
        cluster = {"server": server}
        if insecure:
            cluster["insecure-skip-tls-verify"] = True
        else:
            cluster["certificate-authority-data"] = _b64((self.pki_dir / "ca.crt").read_bytes())
        return {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": "user", "user": {
                "client-certificate-data": _b64((self.pki_dir / f"{who}.crt").read_bytes()),
                "client-key-data": _b64((self.pki_dir / f"{who}.key").read_bytes())}}],
            "contexts": [{"name": context, "context": {"cluster": "local", "user": "user"}}],
            "current-context": context,
        }

    async def start(self, log_dir: Path, timeout: float = 120) -> None:
        p = self.pki_dir
        apiserver = await self._spawn("kube-apiserver", log_dir, [
            str(self.binaries / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-prefix=/vcluster-emulation/{self.state_id()}",
            f"--bind-address={self.pod_ip}", f"--secure-port={PORT}", f"--advertise-address={self.pod_ip}",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-account-issuer=https://kubernetes.default.svc.{self.cluster_domain}",
            f"--service-account-key-file={p / 'sa.key'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--authorization-mode=RBAC", "--allow-privileged=true", "--profiling=false",
            # memory: one of these per user; the emulated clusters are small
            "--enable-priority-and-fairness=false", "--watch-cache=false",
            "--v=0",
        ])
        await wait_for(self.readyz, timeout=timeout, what=f"virtual apiserver of {self.namespace}/{self.name}",
                       alive=[apiserver])
        kcm_kubeconfig = self.data_dir / "kcm.kubeconfig"
        await self._spawn("kube-controller-manager", log_dir, [
            str(self.binaries / "kube-controller-manager"),
            f"--kubeconfig={kcm_kubeconfig}", f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
            f"--controllers={KCM_CONTROLLERS}", "--profiling=false", "--v=0",
        ])

    async def readyz(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{self.server}/readyz", ssl=ctx, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    return r.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def _spawn(self, name: str, log_dir: Path, argv: list[str]) -> ManagedProcess:
        return await self.group.spawn(name, argv, log_dir / f"{self.namespace}_{self.name}_{name}.log")

    async def stop(self) -> None:
        await self.group.stop(grace=5)

"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler as local processes."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from . import pki
from .kube import write_kubeconfig
from .processes import ManagedProcess, ProcessGroup, free_port, wait_for

RANGE_LOCKS = Path(tempfile.gettempdir()) / "localcluster-ranges"
_held_ranges: list[int] = []   # lock descriptors, held (and the ranges owned) while this process lives


def _claim_range(octets: range) -> str:
    """A /16 ``127.<octet>.0.0/16`` that no other local cluster on this machine holds: each
    running cluster holds an advisory lock per range it uses, released when its process ends."""
    RANGE_LOCKS.mkdir(exist_ok=True)
    for octet in random.sample(octets, len(octets)):
        fd = os.open(RANGE_LOCKS / f"127.{octet}", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held_ranges.append(fd)
        return f"127.{octet}.0.0/16"
    raise RuntimeError(f"every loopback range 127.{octets.start}-{octets.stop - 1}.0.0/16 is held by a running "
                       f"local cluster (locks in {RANGE_LOCKS}): stop one with 'python -m localcluster down'")


def loopback_ranges() -> tuple[str, str]:
    """(service CIDR, pod CIDR) for one cluster: /16s of 127.0.0.0/8 that no other local
    cluster on this machine uses (make test runs one per worker), held while this process lives.

    Service cluster IPs come from loopback so that the local stand-in for kube-proxy can make
    them reachable from this machine, as they are from a pod in a real cluster.
    """
    return _claim_range(range(96, 128)), _claim_range(range(128, 255))


SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass
class Identity:
    """A client certificate identity and the kubeconfig that uses it."""

    user: str
    groups: tuple[str, ...]
    kubeconfig: Path


def mint_identity(state_dir: Path, server: str, user: str, groups: tuple[str, ...] = ()) -> Identity:
    """A kubeconfig authenticating as ``user`` in ``groups`` (a client certificate signed by
    the cluster CA); RBAC decides what it may do. Works while the cluster runs, no restart."""
    pki_dir = state_dir / "pki"
    name = user.replace(":", "_").replace("/", "_")
    ca = pki.CertificateAuthority.load(pki_dir / "ca.crt", pki_dir / "ca.key")
    cert, key = pki_dir / f"{name}.crt", pki_dir / f"{name}.key"
    ca.issue(user, groups).write(cert, key)
    kubeconfig = write_kubeconfig(
        state_dir / f"{name}.kubeconfig",
        server=server, ca_path=pki_dir / "ca.crt", user=user, cert_path=cert, key_path=key,
    )
    return Identity(user, groups, kubeconfig)


@dataclass
class ControlPlane:
    state_dir: Path
    binaries: Path
    verbosity: int = 1
    service_cidr: str = "127.96.0.0/16"
    group: ProcessGroup = field(default_factory=ProcessGroup)
    apiserver_port: int = 0
    etcd_url: str = ""

    @property
    def kubernetes_service_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    def _bin(self, name: str) -> str:
        return str(self.binaries / name)

    def mint_identity(self, user: str, groups: tuple[str, ...] = ()) -> Identity:
        return mint_identity(self.state_dir, self.server, user, groups)

    def _write_pki(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        ca = pki.CertificateAuthority.create("localcluster-ca")
        ca.pair.write(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")
        serving = ca.issue(
            "kube-apiserver",
            server_names=(
                "127.0.0.1", "localhost", self.kubernetes_service_ip, "kubernetes", "kubernetes.default",
                "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            ),
            client=False,
        )
        serving.write(self.pki_dir / "apiserver.crt", self.pki_dir / "apiserver.key")
        sa_key = self.pki_dir / "sa.key"
        sa_key.write_bytes(pki.service_account_key())
        sa_key.chmod(0o600)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, timeout: float = 90.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        etcd_client, etcd_peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.apiserver_port = free_port()
        self.mint_identity("admin", ("system:masters",))

        etcd = await self._spawn("etcd", [
            self._bin("etcd"), "--name", "local", "--data-dir", str(self.state_dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"local=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level", "warn", "--quota-backend-bytes", str(2 << 30),
        ])
        async with aiohttp.ClientSession() as http:
            async def etcd_healthy():
                async with http.get(f"http://127.0.0.1:{etcd_client}/health") as r:
                    return r.status == 200 and (await r.json(content_type=None)).get("health") == "true"

            await wait_for(etcd_healthy, timeout=timeout, what="etcd /health", alive=[etcd])

        p = self.pki_dir
        apiserver = await self._spawn("kube-apiserver", [
            self._bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", f"--secure-port={self.apiserver_port}",
            "--advertise-address=127.0.0.1",
            # No kube-proxy routes the `kubernetes` Service; the local kubelet points pods at
            # the apiserver directly (KUBERNETES_SERVICE_HOST/PORT).
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p / 'sa.key'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            f"--v={self.verbosity}",
        ])
        admin_ctx = self._ssl_context(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        async with aiohttp.ClientSession() as http:
            async def apiserver_ready():
                async with http.get(f"{self.server}/readyz", ssl=admin_ctx) as r:
                    return r.status == 200

            await wait_for(apiserver_ready, timeout=timeout, what="kube-apiserver /readyz",
                           alive=[etcd, apiserver])

        kcm = self.mint_identity("system:kube-controller-manager")
        scheduler = self.mint_identity("system:kube-scheduler")
        await self._spawn("kube-controller-manager", [
            self._bin("kube-controller-manager"),
            f"--kubeconfig={kcm.kubeconfig}",
            f"--authentication-kubeconfig={kcm.kubeconfig}",
            f"--authorization-kubeconfig={kcm.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            # As in kubeadm clusters: each controller acts as its own service account, which
            # is what the bootstrap RBAC roles are written for.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            # The API server rejects loopback pod IPs in Endpoints/EndpointSlices; the local
            # service proxy selects pods itself (serviceproxy.py).
            "--controllers=*,-endpoint,-endpointslice",
            f"--cluster-signing-cert-file={p / 'ca.crt'}", f"--cluster-signing-key-file={p / 'ca.key'}",
            "--profiling=false",
            f"--v={self.verbosity}",
        ])
        scheduler_port = free_port()
        await self._spawn("kube-scheduler", [
            self._bin("kube-scheduler"),
            f"--kubeconfig={scheduler.kubeconfig}",
            f"--authentication-kubeconfig={scheduler.kubeconfig}",
            f"--authorization-kubeconfig={scheduler.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={scheduler_port}",
            "--profiling=false",
            f"--v={self.verbosity}",
        ])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        async with aiohttp.ClientSession() as http:
            async def scheduler_healthy():
                async with http.get(f"https://127.0.0.1:{scheduler_port}/healthz", ssl=insecure) as r:
                    return r.status == 200

            await wait_for(scheduler_healthy, timeout=timeout, what="kube-scheduler /healthz",
                           alive=self.processes)

    def _ssl_context(self, cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    async def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        return await self.group.spawn(name, argv, self.logs_dir / f"{name}.log")

    @property
    def processes(self) -> list[ManagedProcess]:
        return self.group.processes

    def check_alive(self) -> None:
        self.group.check_alive()

    async def stop(self) -> None:
        await self.group.stop()   # reverse start order: clients first, etcd last

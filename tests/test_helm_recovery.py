"""A helm killed mid-operation (a start cancelled by its timeout, a hub restart) leaves the
release pending-install or pending-upgrade; every later `helm upgrade` of it then fails with
"another operation is in progress". The next install recovers it (real helm, real release
records, upstream's vCluster chart on the real vCluster)."""

from __future__ import annotations

import asyncio
import os

import pytest
from kubernetes_asyncio import client

from localcluster.processes import wait_for
from vcluster_spawner.helm import ChartRef, Helm
from vcluster_spawner.vcluster import Ref, VClusterOps

from .chart_support import values_file
from .vclusters import new_namespace, vcluster_chart

pytestmark = pytest.mark.cluster


@pytest.fixture
def helm_env(cluster, tmp_path, monkeypatch):
    """The spawner's helm runs with the hub's environment."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.admin_kubeconfig))
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "helm"))
    return Helm(str(cluster.binaries / "helm"), timeout=120)


async def kill_when(helm: Helm, name: str, namespace: str, status: str, *args: str) -> None:
    """Run helm ``args`` and SIGKILL it as soon as the release records ``status``."""
    proc = await asyncio.create_subprocess_exec(helm.binary, *args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL, env=os.environ.copy())

    async def reached():
        return await helm.pending(name, namespace) == status
    try:
        await wait_for(reached, timeout=60, interval=0.1, what=f"release {namespace}/{name} {status}")
    finally:
        proc.kill()
        await proc.wait()


# The interrupted helm's control plane runs an image no rule maps, so its pod never turns
# Ready and helm --wait holds the release pending until the kill: a control plane that came up
# quickly could otherwise let the release reach "deployed" between two looks.
NEVER_READY = {"controlPlane": {"statefulSet": {"image": {"registry": "unpulled.invalid"}}}}


async def test_a_release_an_interrupted_helm_left_pending_is_recovered(kube, helm_env, tmp_path):
    helm, namespace, name = helm_env, await new_namespace(kube), "vc-interrupted"
    ops = VClusterOps(client.CoreV1Api(kube), client.AppsV1Api(kube), helm)
    ref, chart = Ref(namespace, name), ChartRef(str(vcluster_chart()))
    values = {"telemetry": {"enabled": False}}
    try:
        await kill_when(helm, name, namespace, "pending-install", "upgrade", "--install", name, str(vcluster_chart()),
                        "--namespace", namespace, "--wait", "--values", str(values_file(values, tmp_path)),
                        "--values", str(values_file(NEVER_READY, tmp_path)))
        told: list[str] = []
        await ops.install(ref, chart, values, told.append)
        assert told == ["Recovering your virtual cluster from an interrupted install"]
        assert await helm.pending(name, namespace) is None

        changed = {**values, "controlPlane": {"statefulSet": {"annotations": {"revision": "2"}}}}
        await kill_when(helm, name, namespace, "pending-upgrade", "upgrade", "--install", name, str(vcluster_chart()),
                        "--namespace", namespace, "--wait", "--values", str(values_file(changed, tmp_path)),
                        "--values", str(values_file(NEVER_READY, tmp_path)))
        told.clear()
        await ops.install(ref, chart, changed, told.append)
        assert told == ["Recovering your virtual cluster from an interrupted upgrade"]
        assert await helm.pending(name, namespace) is None
        sts = await client.AppsV1Api(kube).read_namespaced_stateful_set(name, namespace)
        assert sts.metadata.annotations.get("revision") == "2"
    finally:
        await helm.uninstall(name, namespace)
        await client.CoreV1Api(kube).delete_namespace(namespace)


async def test_a_cancelled_helm_is_stopped_gently_and_leaves_nothing_pending(kube, helm_env, tmp_path):
    """The spawner's own helm, cancelled mid-install (start_timeout, a stop): SIGTERM, and helm
    records the interruption itself, so the next start has nothing to recover."""
    helm, namespace, name = helm_env, await new_namespace(kube), "vc-cancelled"
    try:
        install = asyncio.ensure_future(helm._run("upgrade", "--install", name, str(vcluster_chart()), "--namespace", namespace,
                                                  "--wait", "--timeout", "120s", what="helm install"))

        async def pending():
            return await helm.pending(name, namespace) == "pending-install"
        await wait_for(pending, timeout=60, interval=0.1, what="install under way")
        install.cancel()
        await asyncio.gather(install, return_exceptions=True)
        assert await helm.pending(name, namespace) is None
    finally:
        await helm.uninstall(name, namespace)
        await client.CoreV1Api(kube).delete_namespace(namespace)

"""The lifecycle service (jupyterhub_config.d/40): repairs a vCluster running without a server,
deletes one asleep for too long, and keeps the user's namespace and home storage (pytest -m hub)."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client

from localcluster.processes import wait_for
from vcluster_spawner.helm import Helm
from vcluster_spawner.vcluster import Ref, State, Superseded, VClusterOps

from .helpers import gone
from .hub import Hub
from .test_lifecycle import assert_asleep, notebook_status, vcluster_state

pytestmark = pytest.mark.hub

# dynamic mode, sleep on stop; the service checks every second, allows a vCluster 3 s without
# a server and deletes it after 30 s asleep (long enough for the test's hand-made drift first)
LIFECYCLE = '''
c.VClusterSpawner.stop_action = "sleep"
c.VClusterHub.lifecycle_interval = 1
c.VClusterHub.lifecycle_grace_period = 3
c.VClusterHub.lifecycle_delete_asleep_after = 30
'''

HOME_PVC = {"metadata": {"name": "home-lena"},   # stands in for the user's home (issue 5)
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


async def test_lifecycle_service_repairs_drift_then_deletes_an_expired_vcluster_and_keeps_the_home(cluster, kube,
                                                                                                 tmp_path):
    """On the real vCluster: the drift repaired on a control plane still starting, the expired
    vCluster uninstalled with its data volume."""
    kube = kube
    hub = Hub(tmp_path / "hub", cluster, LIFECYCLE, snippets=("10-vcluster-spawner.py", "40-lifecycle-service.py"))
    await hub.start()
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    try:
        await hub.add_user("lena")
        assert (await hub.start_server("lena"))[-1].get("ready"), hub.log_tail()
        await core.create_namespaced_persistent_volume_claim("vc-lena", HOME_PVC)
        await hub.stop_server("lena")
        await assert_asleep(kube, "lena")

        # drift: the vCluster is woken by hand while the user has no server
        assert "waking" in await hub.operator_cli("wake", "lena")

        async def running():
            sts, _ = await vcluster_state(kube, "lena")
            return sts.spec.replicas == 1
        await wait_for(running, timeout=30, what="woken by hand")

        async def asleep():
            sts, pods = await vcluster_state(kube, "lena")
            return sts.spec.replicas == 0 and not pods
        await wait_for(asleep, timeout=120, what="the service puts the vCluster back to sleep")
        decisions = [line for line in hub.log_path.read_text().splitlines() if "decision user=lena" in line]
        # starting or running, depending on how far the control plane got before the grace ran out
        assert any(" sleep: " in d and "with no active server" in d for d in decisions), decisions

        # asleep longer than delete_asleep_after: deleted, with its data volume; the home stays
        await gone(apps.read_namespaced_stateful_set, "vc-lena", "vc-lena", timeout=120, what="expired vCluster deleted")
        await gone(core.read_namespaced_persistent_volume_claim, "data-vc-lena-0", "vc-lena", what="data PVC deleted")

        async def deletion_logged():
            return "done user=lena vcluster=vc-lena/vc-lena delete" in hub.log_path.read_text()
        await wait_for(deletion_logged, timeout=120, what="the service logs the finished deletion")
        assert "decision user=lena vcluster=vc-lena/vc-lena delete: asleep for" in hub.log_path.read_text()
        assert (await core.read_namespace("vc-lena")).status.phase == "Active"
        home = await core.read_namespaced_persistent_volume_claim("home-lena", "vc-lena")
        assert home.metadata.deletion_timestamp is None

        # the user starts again: a fresh vCluster, same namespace, the home still there
        events = await hub.start_server("lena")
        assert events[-1].get("ready"), hub.log_tail()
        assert any("Creating your virtual cluster" in e["message"] for e in events)
        await core.read_namespaced_persistent_volume_claim("home-lena", "vc-lena")
        await hub.stop_server("lena")
    finally:
        await hub.api("DELETE", "/users/lena")   # the namespace goes with the user
        await hub.stop()


async def test_a_start_wins_over_a_sleep_or_delete_decided_before_it(cluster, kube, tmp_path):
    """The lifecycle service decides on a StatefulSet it read, then acts; a start in between
    claims the vCluster (VClusterOps.claim), and the service's conditional sleep or delete does
    nothing. Here the start is a real hub start; the service's action is its own call."""
    hub = Hub(tmp_path / "hub", cluster, 'c.VClusterSpawner.stop_action = "none"\n')
    await hub.start()
    ops = VClusterOps(client.CoreV1Api(kube), client.AppsV1Api(kube), Helm(str(cluster.binaries / "helm")))
    ref = Ref("vc-max", "vc-max")
    try:
        await hub.add_user("max")
        assert (await hub.start_server("max"))[-1].get("ready"), hub.log_tail()
        await hub.stop_server("max")
        decided_on = await ops.status(ref)           # running with no server: the service would act
        assert decided_on.state == State.RUNNING

        assert (await hub.start_server("max"))[-1].get("ready"), hub.log_tail()
        with pytest.raises(Superseded):
            await ops.sleep(ref, decided_on=decided_on)
        with pytest.raises(Superseded):
            await ops.delete(ref, decided_on=decided_on)
        sts, _ = await vcluster_state(kube, "max")
        assert sts.spec.replicas == 1 and "loft.sh/paused" not in (sts.metadata.annotations or {})
        await notebook_status(hub, "max")

        # decided on the current state, the same call acts
        await hub.stop_server("max")
        await ops.sleep(ref, decided_on=await ops.status(ref))
        await assert_asleep(kube, "max")
    finally:
        await hub.api("DELETE", "/users/max")
        await hub.stop()

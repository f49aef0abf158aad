"""Idle culling (jupyterhub-idle-culler as a hub-managed service, jupyterhub_config.d/30):
an idle server is stopped and its vCluster goes to sleep (pytest -m hub)."""

from __future__ import annotations

import pytest

from localcluster.processes import wait_for

from .hub import Hub
from .test_lifecycle import assert_asleep, notebook_status, vcluster_state

pytestmark = pytest.mark.hub

# a short timeout and check interval, so the test sees a cull; static mode: the operator
# provisions, the spawner wakes on start and puts to sleep on stop
CULLER = '''
c.VClusterSpawner.vcluster_mode = "static"
c.VClusterHub.cull_timeout = 4
c.VClusterHub.cull_every = 2
'''


async def test_culling_an_idle_server_puts_its_vcluster_to_sleep(cluster, kube, tmp_path):
    """On the real vCluster: provisioned asleep by the operator, woken by the start, paused
    upstream's way after the cull."""
    kube = kube
    hub = Hub(tmp_path / "hub", cluster, CULLER, snippets=("10-vcluster-spawner.py", "30-idle-culler.py"))
    await hub.start()
    try:
        await hub.add_user("ivy")
        assert "vc-ivy/vc-ivy asleep" in await hub.operator_cli("provision", "ivy", "--asleep")
        events = await hub.start_server("ivy")
        assert events[-1].get("ready"), hub.log_tail()
        await notebook_status(hub, "ivy")

        async def culled():
            return not (await hub.user_model("ivy"))["servers"]
        await wait_for(culled, timeout=120, what="idle server culled")

        async def asleep():
            sts, pods = await vcluster_state(kube, "ivy")
            return sts.spec.replicas == 0 and not pods
        await wait_for(asleep, timeout=120, what="vCluster asleep after the cull")
        await assert_asleep(kube, "ivy")
        log = hub.log_path.read_text()
        assert "Culling server ivy" in log, hub.log_tail()
    finally:
        await hub.api("DELETE", "/users/ivy")   # its vCluster and namespace go with it
        await hub.stop()

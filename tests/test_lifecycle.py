"""VClusterSpawner end to end: real JupyterHub and proxy, the local cluster, the real vCluster
0.36.1 (docs/real-vcluster.md) and real jupyterhub-singleuser servers (pytest -m lifecycle)."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client

from localcluster.processes import wait_for

from .helpers import gone
from .hub import Hub
from .vclusters import virtual_client

pytestmark = pytest.mark.lifecycle


@pytest.fixture
async def hub(cluster, tmp_path):
    """A hub in dynamic mode whose stop action is sleep (the test may restart it)."""
    h = Hub(tmp_path / "hub", cluster, 'c.VClusterSpawner.stop_action = "sleep"\n')
    await h.start()
    yield h
    await h.stop()


def ref(user: str) -> tuple[str, str]:
    return f"vc-{user}", f"vc-{user}"


async def notebook_status(hub: Hub, user: str, server: str = "") -> dict:
    path = f"/user/{user}/{server + '/' if server else ''}api/status"
    status, body = await hub.request("GET", hub.url + path)
    assert status == 200, (status, body)
    return body


async def assert_asleep(kube, user):
    sts, pods = await vcluster_state(kube, user)
    assert sts.spec.replicas == 0 and pods == [], (sts.spec.replicas, [p.metadata.name for p in pods])
    return sts


async def _no_control_plane(kube, user) -> bool:
    ns, name = ref(user)
    pods = await client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=f"app=vcluster,release={name}")
    return not pods.items


async def vcluster_state(kube, user):
    ns, name = ref(user)
    sts = await client.AppsV1Api(kube).read_namespaced_stateful_set(name, ns)
    pods = await client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=f"vcluster.loft.sh/managed-by={name}")
    return sts, [p for p in pods.items if not p.metadata.deletion_timestamp]


async def test_start_routes_to_the_notebook_in_the_vcluster_then_sleep_and_wake(hub, kube):
    await hub.add_user("alice")
    events = await hub.start_server("alice")
    assert events[-1].get("ready"), hub.log_tail()
    messages = [e["message"] for e in events]
    assert any("Creating your virtual cluster" in m for m in messages), messages
    assert any("Starting your notebook server" in m for m in messages), messages

    body = await notebook_status(hub, "alice")   # through the proxy, answered by the real server
    assert "started" in body

    ns, name = ref("alice")
    vapi = await virtual_client(kube, name, ns)
    try:
        vpod = await client.CoreV1Api(vapi).read_namespaced_pod("jupyter-alice", "default")
    finally:
        await vapi.close()
    hpod = await client.CoreV1Api(kube).read_namespaced_pod(f"jupyter-alice-x-default-x-{name}", ns)
    assert hpod.metadata.annotations["vcluster.loft.sh/object-uid"] == vpod.metadata.uid
    assert hpod.status.pod_ip == vpod.status.pod_ip
    sts_before, _ = await vcluster_state(kube, "alice")

    await hub.stop_server("alice")
    sts = await assert_asleep(kube, "alice")
    assert sts.metadata.annotations["loft.sh/paused"] == "true"
    assert sts.metadata.annotations["loft.sh/paused-replicas"] == "1"
    assert sts.metadata.annotations["loft.sh/paused-date"].endswith("Z")

    events = await hub.start_server("alice")
    assert events[-1].get("ready"), hub.log_tail()
    assert any("Waking your virtual cluster" in e["message"] and "asleep since" in e["message"] for e in events)
    await notebook_status(hub, "alice")
    sts, pods = await vcluster_state(kube, "alice")
    assert sts.metadata.uid == sts_before.metadata.uid   # same vCluster, woken
    assert "loft.sh/paused" not in (sts.metadata.annotations or {})
    assert [p.metadata.name for p in pods if p.metadata.name.startswith("jupyter-")] == [f"jupyter-alice-x-default-x-{name}"]
    await hub.stop_server("alice")


async def test_dynamic_mode_deletes_on_stop_and_recreates_fresh(cluster, kube, tmp_path):
    """On the real vCluster: its release, data volume and exported kubeconfig go, and a start
    creates it anew."""
    kube = kube
    # defaults: dynamic, stop action delete
    hub = await Hub(tmp_path / "hub", cluster).start()
    try:
        await hub.add_user("dora")
        assert (await hub.start_server("dora"))[-1].get("ready"), hub.log_tail()
        await notebook_status(hub, "dora")
        ns, name = ref("dora")
        core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
        first = await apps.read_namespaced_stateful_set(name, ns)
        await hub.stop_server("dora")
        await gone(apps.read_namespaced_stateful_set, name, ns, what="release uninstalled")
        await gone(core.read_namespaced_persistent_volume_claim, f"data-{name}-0", ns, what="data PVC deleted")
        await gone(core.read_namespaced_secret, f"vc-{name}", ns, what="kubeconfig secret gone")

        events = await hub.start_server("dora")
        assert events[-1].get("ready"), hub.log_tail()
        assert any("Creating your virtual cluster" in e["message"] for e in events)
        second = await apps.read_namespaced_stateful_set(name, ns)
        assert second.metadata.uid != first.metadata.uid
        await notebook_status(hub, "dora")
        await hub.stop_server("dora")
    finally:
        await hub.stop()


async def test_named_servers_share_the_vcluster_and_the_last_stop_sleeps_it(hub, kube):
    await hub.add_user("nina")
    assert (await hub.start_server("nina"))[-1].get("ready"), hub.log_tail()
    assert (await hub.start_server("nina", "second"))[-1].get("ready"), hub.log_tail()
    await notebook_status(hub, "nina")
    await notebook_status(hub, "nina", "second")
    sts, pods = await vcluster_state(kube, "nina")
    notebooks = sorted(p.metadata.name for p in pods if p.metadata.name.startswith("jupyter-"))
    assert notebooks == ["jupyter-nina--second-x-default-x-vc-nina", "jupyter-nina-x-default-x-vc-nina"]

    await hub.stop_server("nina", "second")
    sts, _ = await vcluster_state(kube, "nina")
    assert sts.spec.replicas == 1                      # another server still runs
    await notebook_status(hub, "nina")
    await hub.stop_server("nina")
    await assert_asleep(kube, "nina")


async def test_static_mode_needs_a_provisioned_vcluster_and_sleeps_it_on_stop(cluster, kube, tmp_path):
    hub = await Hub(tmp_path / "hub", cluster, 'c.VClusterSpawner.vcluster_mode = "static"\n').start()
    try:
        await hub.add_user("sam")
        status, body = await hub.api("POST", "/users/sam/server")
        assert status == 400 and "no virtual cluster was provisioned for you" in body["message"], body

        # the operator provisions it with the hub's own configuration
        assert "vc-sam/vc-sam asleep" in await hub.operator_cli("provision", "sam", "--asleep")

        events = await hub.start_server("sam")
        assert events[-1].get("ready"), hub.log_tail()
        assert any("Waking your virtual cluster" in e["message"] for e in events)
        await notebook_status(hub, "sam")
        await hub.stop_server("sam")
        await assert_asleep(kube, "sam")

        # provisioning again upgrades an asleep vCluster and leaves it asleep (helm's upgrade
        # alone would bring the control plane back), or wakes it when asked for running
        out = await hub.operator_cli("provision", "sam", "--asleep")
        assert "upgrading vc-sam/vc-sam" in out and "vc-sam/vc-sam asleep" in out, out
        await wait_for(lambda: _no_control_plane(kube, "sam"), timeout=60, what="control plane stopped again")
        await assert_asleep(kube, "sam")
        out = await hub.operator_cli("provision", "sam")
        assert "Virtual cluster ready" in out and "vc-sam/vc-sam running" in out, out
        sts, _ = await vcluster_state(kube, "sam")
        assert sts.spec.replicas == 1 and sts.status.ready_replicas == 1
        assert "paused" not in str(sts.metadata.annotations or {})
    finally:
        await hub.stop()


SLEEP_ON_STOP = 'c.VClusterSpawner.stop_action = "sleep"\n'


async def hub_with_user(cluster, tmp_path, user: str) -> Hub:
    hub = await Hub(tmp_path / "hub", cluster, SLEEP_ON_STOP).start()
    await hub.add_user(user)
    return hub


async def test_hub_restart_finds_running_servers_again(cluster, kube, tmp_path):
    hub = await hub_with_user(cluster, tmp_path, "rita")
    assert (await hub.start_server("rita"))[-1].get("ready"), hub.log_tail()
    await hub.stop()
    restarted = await Hub(hub.workdir, cluster, SLEEP_ON_STOP, restart_of=hub).start()
    try:
        model = await restarted.user_model("rita")
        assert model["servers"][""]["ready"], model
        await notebook_status(restarted, "rita")
        await restarted.stop_server("rita")
        await assert_asleep(kube, "rita")
    finally:
        await restarted.stop()


async def test_hub_killed_mid_spawn_then_restarted_spawns_once(cluster, kube, tmp_path):
    hub = await hub_with_user(cluster, tmp_path, "kim")
    await hub.api("POST", "/users/kim/server")
    ns, name = ref("kim")

    async def control_plane_created():
        return await client.AppsV1Api(kube).read_namespaced_stateful_set(name, ns)
    await wait_for(control_plane_created, timeout=60, what="helm install under way")
    await hub.stop(kill=True)

    restarted = await Hub(hub.workdir, cluster, SLEEP_ON_STOP, restart_of=hub).start()
    try:
        # the interrupted spawn is either resumed (its pod was already running: the hub adopts
        # it) or dropped (no pod yet); either way a start then gives exactly one notebook pod
        async def settled():
            server = (await restarted.user_model("kim"))["servers"].get("")
            return "absent" if server is None else ("ready" if server["ready"] else None)
        if await wait_for(settled, timeout=150, what="interrupted spawn settled") == "absent":
            assert (await restarted.start_server("kim"))[-1].get("ready"), restarted.log_tail()
        await notebook_status(restarted, "kim")
        _, pods = await vcluster_state(kube, "kim")
        assert [p.metadata.name for p in pods if p.metadata.name.startswith("jupyter-")] == \
            [f"jupyter-kim-x-default-x-{name}"]
        await restarted.stop_server("kim")
    finally:
        await restarted.stop()


async def test_a_hub_that_lost_its_database_replaces_the_leftover_pod(cluster, kube, tmp_path):
    """A new hub (fresh database) spawns a user whose old notebook pod still runs: KubeSpawner
    removes the leftover pod, and that removal must not put the vCluster to sleep mid-spawn.
    The new hub's lena is, to the cluster, another person (another creation time): she is
    refused her namespace until an administrator hands it over (``adopt``)."""
    old = await hub_with_user(cluster, tmp_path / "old", "lena")
    assert (await old.start_server("lena"))[-1].get("ready"), old.log_tail()
    await old.stop()
    new = await hub_with_user(cluster, tmp_path / "new", "lena")
    try:
        status, body = await new.api("POST", new.server_path("lena"), {}, timeout=300)
        assert status == 400 and "does not belong to you" in body["message"], (status, body)
        assert "now records 'lena'" in await new.operator_cli("adopt", "lena")
        events = await new.start_server("lena")
        assert events[-1].get("ready"), (events[-3:], new.log_tail())
        await notebook_status(new, "lena")
        sts, pods = await vcluster_state(kube, "lena")
        assert sts.spec.replicas == 1 and [p.metadata.name for p in pods if p.metadata.name.startswith("jupyter-")] \
            == [f"jupyter-lena-x-default-x-{ref('lena')[1]}"]
        await new.stop_server("lena")
    finally:
        await new.stop()


async def test_ten_users_start_at_once(hub, kube):
    users = [f"crowd{i}" for i in range(10)]
    for user in users:
        await hub.add_user(user)
    results = await asyncio.gather(*(hub.start_server(u, timeout=600) for u in users))
    assert all(r[-1].get("ready") for r in results), [r[-1] for r in results]
    for user in users:
        await notebook_status(hub, user)
    await asyncio.gather(*(hub.stop_server(u, timeout=300) for u in users))
    for user in users:
        await assert_asleep(kube, user)


async def test_removing_the_user_deletes_the_vcluster_and_its_namespace(hub, kube):
    await hub.add_user("gone")
    assert (await hub.start_server("gone"))[-1].get("ready"), hub.log_tail()
    for server in ("two", "three"):
        assert (await hub.start_server("gone", server))[-1].get("ready"), hub.log_tail()
    await hub.stop_server("gone", "three", remove=True)   # removing one named server keeps it
    await client.AppsV1Api(kube).read_namespaced_stateful_set(*reversed(ref("gone")))
    await hub.stop_server("gone", "two")
    await hub.stop_server("gone")
    status, body = await hub.api("DELETE", "/users/gone")
    assert status == 204, body
    ns, name = ref("gone")
    await gone(client.CoreV1Api(kube).read_namespace, ns, timeout=90, what="user namespace deleted")


async def test_a_helm_failure_is_a_clear_message_and_leaves_nothing_running(cluster, kube, tmp_path):
    bad = 'c.VClusterSpawner.vcluster_values = {"controlPlane": {"distro": {"k3s": {"enabled": True}}}}\n'
    hub = await Hub(tmp_path / "hub", cluster, bad).start()
    try:
        await hub.add_user("fay")
        status, body = await hub.api("POST", "/users/fay/server")
        assert status == 400, body
        assert "Your virtual cluster could not be started: helm upgrade --install vc-fay/vc-fay failed" in body["message"]
        assert "k3s" in body["message"]
        ns, name = ref("fay")
        assert (await client.AppsV1Api(kube).list_namespaced_stateful_set(ns)).items == []
        assert (await client.CoreV1Api(kube).list_namespaced_pod(ns)).items == []
        assert not (await hub.user_model("fay"))["servers"]
    finally:
        await hub.stop()


async def test_an_unschedulable_control_plane_fails_with_the_schedulers_reason(cluster, kube, tmp_path):
    huge = ('c.VClusterSpawner.vcluster_values = {"controlPlane": {"statefulSet": {"resources": '
            '{"requests": {"cpu": "4000"}}}}}\nc.VClusterSpawner.vcluster_ready_timeout = 15\n')
    hub = await Hub(tmp_path / "hub", cluster, huge).start()
    try:
        await hub.add_user("huge")
        events = await hub.start_server("huge")
        assert events[-1].get("failed"), events[-3:]
        assert "its pod cannot be scheduled" in events[-1]["message"] and "Insufficient cpu" in events[-1]["message"]
    finally:
        await hub.stop()


async def test_sleep_grace_period_keeps_the_vcluster_warm(cluster, kube, tmp_path):
    config = 'c.VClusterSpawner.stop_action = "sleep"\nc.VClusterSpawner.sleep_grace_period = 5\n'
    hub = await Hub(tmp_path / "hub", cluster, config).start()
    try:
        await hub.add_user("gus")
        assert (await hub.start_server("gus"))[-1].get("ready"), hub.log_tail()
        await hub.stop_server("gus")
        sts, _ = await vcluster_state(kube, "gus")
        assert sts.spec.replicas == 1                  # within the grace period: still running
        events = await hub.start_server("gus")         # a quick restart needs no wake-up
        assert events[-1].get("ready") and not any("Waking" in e["message"] for e in events)
        await hub.stop_server("gus")

        async def asleep():
            sts, pods = await vcluster_state(kube, "gus")
            return sts.spec.replicas == 0 and not pods
        await wait_for(asleep, timeout=30, what="asleep after the grace period")
    finally:
        await hub.stop()


async def test_profiles_override_the_vcluster_values(cluster, kube, tmp_path):
    config = '''
c.VClusterSpawner.stop_action = "sleep"
c.VClusterSpawner.profile_list = [
    {"display_name": "Small", "slug": "small", "default": True},
    {"display_name": "Quota'd", "slug": "quota", "kubespawner_override": {"vcluster_values": {
        "policies": {"resourceQuota": {"enabled": True, "quota": {"count/pods": "7"}}}}}},
]
'''
    hub = await Hub(tmp_path / "hub", cluster, config).start()
    try:
        await hub.add_user("pia")
        assert (await hub.start_server("pia", options={"profile": "quota"}))[-1].get("ready"), hub.log_tail()
        quota = await client.CoreV1Api(kube).read_namespaced_resource_quota("vc-vc-pia", "vc-pia")
        # the profile's value over upstream's default quota (policies.resourceQuota.quota)
        assert quota.spec.hard["count/pods"] == "7" and quota.spec.hard["count/secrets"] == "100", quota.spec.hard
        await hub.stop_server("pia")
        status, body = await hub.api("POST", "/users/pia/server", {"profile": "no-such-profile"})
        assert status == 400 and "no-such-profile" in body["message"], body
    finally:
        await hub.stop()


async def test_a_crashing_notebook_fails_fast_with_its_reason(cluster, kube, tmp_path):
    config = ('c.VClusterSpawner.stop_action = "sleep"\n'
              'c.VClusterSpawner.cmd = ["python3", "-c", "import sys; print(\'no notebook here\'); sys.exit(3)"]\n')
    hub = await Hub(tmp_path / "hub", cluster, config).start()
    try:
        await hub.add_user("cara")
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = await hub.start_server("cara")
        assert events[-1].get("failed"), events[-1]
        assert "Your notebook server could not start: notebook exited with code 3" in events[-1]["message"]
        assert loop.time() - started < 120   # not the 240 s start_timeout
        _, pods = await vcluster_state(kube, "cara")
        assert pods == []                    # cleaned up, vCluster asleep
    finally:
        await hub.stop()

"""The warm pool and the wake ahead of a start, end to end on the real vCluster 0.36.1: the
lifecycle service keeps the pool, the hub's starts claim from it, race for its last member and
fall back to creating, the home follows the user to a new member, the spawn page wakes an
asleep vCluster and it sleeps again when no start follows (pytest -m hub). The decisions
themselves (interrupted claims, stale and broken members, the keeper's arithmetic) are unit
tests in test_pool_unit.py."""

from __future__ import annotations

import asyncio
import re

import pytest
from kubernetes_asyncio import client

from localcluster.processes import wait_for
from vcluster_spawner.home import HOME_NAMESPACE_LABEL
from vcluster_spawner.ownership import USERNAME_LABEL
from vcluster_spawner.pool import POOL_MEMBER, POOL_READY

from .helpers import gone
from .hub import Hub
from .test_storage import read_file, write_file
from .vclusters import helm

pytestmark = pytest.mark.hub

POOLED = '''
c.VClusterSpawner.profile_list = [
    {"display_name": "Pooled", "slug": "pooled", "default": True, "kubespawner_override": {"warm_pool_size": 1}},
    {"display_name": "Quota'd", "slug": "quota", "kubespawner_override": {"vcluster_values": {
        "policies": {"resourceQuota": {"enabled": True, "quota": {"count/pods": "7"}}}}}},
]
c.VClusterSpawner.stop_action = "delete"
c.VClusterHub.lifecycle_pool_interval = 2
'''


async def ready_members(core) -> list[str]:
    namespaces = await core.list_namespace(label_selector=f"{POOL_MEMBER}=true,{POOL_READY}=true")
    return sorted(ns.metadata.name for ns in namespaces.items if not ns.metadata.deletion_timestamp)


async def users_namespace(core, user: str) -> str:
    namespaces = await core.list_namespace(label_selector=f"{USERNAME_LABEL}={user}")
    live = [ns.metadata.name for ns in namespaces.items if not ns.metadata.deletion_timestamp]
    assert len(live) == 1, live
    return live[0]


async def a_member_ready(core, other_than: set[str] = frozenset(), timeout: float = 400) -> str:
    async def fresh():
        return [m for m in await ready_members(core) if m not in other_than]
    await wait_for(fresh, timeout=timeout, what="a ready warm pool member")
    return (await fresh())[0]


def said(events: list[dict], text: str) -> bool:
    return any(text in e.get("message", "") for e in events)


async def remove_pool(cluster, core) -> None:
    """The members nobody claimed (the keeper stopped with the hub)."""
    for ns in (await core.list_namespace(label_selector=f"{POOL_MEMBER}=true")).items:
        await helm(cluster, "uninstall", ns.metadata.name, "-n", ns.metadata.name, "--wait", check=False)
        await core.delete_namespace(ns.metadata.name)


async def test_the_warm_pool_serves_first_starts_is_raced_for_and_replenished(cluster, kube, tmp_path):
    core = client.CoreV1Api(kube)
    hub = Hub(tmp_path / "hub", cluster, POOLED, snippets=("10-vcluster-spawner.py", "40-lifecycle-service.py"))
    await hub.start()
    try:
        first = await a_member_ready(core)
        await hub.add_user("ann")
        events = await hub.start_server("ann", options={"profile": "pooled"})
        assert events[-1].get("ready"), hub.log_tail()
        assert said(events, f"Your virtual cluster {first} comes ready from the warm pool"), events
        assert not said(events, "Creating your virtual cluster") and not said(events, "Updating"), events
        assert await users_namespace(core, "ann") == first
        assert "vc-ann" not in {ns.metadata.name for ns in (await core.list_namespace()).items}
        await write_file(hub, "ann", "kept.txt", b"follows me to every vCluster\n")
        home = (await core.list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}={first}")).items
        assert len(home) == 1

        # dynamic mode: the stop deletes the member's vCluster; the next start takes a new
        # member and the home volume comes along; the old namespace goes
        second = await a_member_ready(core, {first})
        await hub.stop_server("ann")
        await gone(client.AppsV1Api(kube).read_namespaced_stateful_set, first, first, timeout=120,
                   what="the used member's vCluster deleted")
        events = await hub.start_server("ann", options={"profile": "pooled"})
        assert events[-1].get("ready"), hub.log_tail()
        assert said(events, f"Your virtual cluster {second} comes ready from the warm pool"), events
        assert await read_file(hub, "ann", "kept.txt") == b"follows me to every vCluster\n"
        moved = (await core.list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}={second}")).items
        assert [pv.metadata.name for pv in moved] == [home[0].metadata.name]
        await gone(core.read_namespace, first, timeout=120, what="the namespace left behind deleted")

        # two starts race for the last member: one claims it, the other creates its own and says so
        last = await a_member_ready(core, {first, second})
        await hub.add_user("bob")
        await hub.add_user("cy")
        bob, cy = await asyncio.gather(hub.start_server("bob", options={"profile": "pooled"}),
                                       hub.start_server("cy", options={"profile": "pooled"}))
        assert bob[-1].get("ready") and cy[-1].get("ready"), hub.log_tail()
        claimed = [e for e in (bob, cy) if said(e, f"Your virtual cluster {last} comes ready from the warm pool")]
        missed = [e for e in (bob, cy) if said(e, "No warm virtual cluster is free for your profile")]
        assert len(claimed) == 1 and len(missed) == 1, (bob, cy)
        assert sorted([await users_namespace(core, "bob"), await users_namespace(core, "cy")]) == sorted(
            [last, "vc-bob" if missed[0] is bob else "vc-cy"])

        # a profile whose values differ has no pool: created as always
        await hub.stop_server("bob")
        await hub.add_user("dee")
        events = await hub.start_server("dee", options={"profile": "quota"})
        assert events[-1].get("ready") and said(events, "Creating your virtual cluster vc-dee"), events

        status, metrics = await hub.request("GET", f"{hub.url}/hub/metrics")
        assert status == 200
        starts = re.findall(r"vcluster_spawner_warm_pool_starts_total\{.*", metrics)
        assert 'reason="",result="claimed"} 3.0' in metrics, starts
        assert 'reason="empty",result="miss"} 1.0' in metrics, starts
    finally:
        for user in ("ann", "bob", "cy", "dee"):
            await hub.api("DELETE", f"/users/{user}")
        await hub.stop()
        await remove_pool(cluster, core)


WAKE_AHEAD = '''
c.VClusterSpawner.vcluster_mode = "static"
c.VClusterSpawner.wake_ahead_timeout = 20
c.VClusterSpawner.wake_ahead_min_interval = 0   # the test wakes it ahead twice in a row
c.VClusterSpawner.profile_list = [
    {"display_name": "Small", "slug": "small", "default": True},
    {"display_name": "Large", "slug": "large"},
]
'''


async def test_the_spawn_page_wakes_the_vcluster_and_it_sleeps_again_without_a_start(cluster, kube,
                                                                                     tmp_path):
    apps = client.AppsV1Api(kube)
    hub = Hub(tmp_path / "hub", cluster, WAKE_AHEAD, snippets=("10-vcluster-spawner.py",))
    await hub.start()
    browser = None
    try:
        await hub.add_user("eve")
        assert "vc-eve/vc-eve asleep" in await hub.operator_cli("provision", "eve", "--asleep")
        browser = await hub.login("eve")

        async def replicas(n: int):
            sts = await apps.read_namespaced_stateful_set("vc-eve", "vc-eve")
            return sts.spec.replicas == n and sts

        async with browser.get(f"{hub.url}/hub/spawn") as r:
            assert r.status == 200 and "Large" in await r.text()
        sts = await wait_for(lambda: replicas(1), timeout=30, what="woken ahead by the spawn page")
        assert "hub.jupyter.org/woken-ahead-at" in sts.metadata.annotations
        await wait_for(lambda: replicas(0), timeout=120, what="asleep again: no start followed")

        # this time the user starts while it wakes: the start finds it awake, and after the
        # timeout it stays up (the start's claim supersedes the wake-ahead's sleep)
        async with browser.get(f"{hub.url}/hub/spawn") as r:
            assert r.status == 200
        await wait_for(lambda: replicas(1), timeout=30, what="woken ahead again")
        events = await hub.start_server("eve", options={"profile": "small"})
        assert events[-1].get("ready"), hub.log_tail()
        assert not said(events, "Waking your virtual cluster"), events
        await asyncio.sleep(25)
        assert await replicas(1), "the wake-ahead put a started vCluster to sleep"
        status, _ = await hub.request("GET", f"{hub.url}/user/eve/api/status")
        assert status == 200
        sts = await apps.read_namespaced_stateful_set("vc-eve", "vc-eve")
        assert "hub.jupyter.org/woken-ahead-at" not in (sts.metadata.annotations or {})
        await hub.stop_server("eve")
        await wait_for(lambda: replicas(0), timeout=120, what="asleep after the stop")

        _, metrics = await hub.request("GET", f"{hub.url}/hub/metrics")
        for outcome, count in (("woken", 2), ("slept", 1), ("used", 1)):
            assert f'vcluster_spawner_wake_ahead_total{{outcome="{outcome}"}} {count}.0' in metrics, metrics
    finally:
        if browser is not None:
            await browser.close()
        await hub.api("DELETE", "/users/eve")
        await hub.stop()

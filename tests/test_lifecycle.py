"""VClusterSpawner end to end: real JupyterHub and proxy, the local cluster, the vCluster
emulation and real jupyterhub-singleuser servers (pytest -m lifecycle)."""

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
    sts, pods = await vcluster_state(kube, "alice")
    assert sts.spec.replicas == 0 and pods == []
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

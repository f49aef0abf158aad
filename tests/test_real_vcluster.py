"""The spawner's vCluster operations against the real vCluster 0.36.1: its own binary and its
own chart, built from the Go module proxy (tools/build-vcluster.sh), on a local cluster whose
kubelet runs them (``--plugin vcluster_real``; docs/real-vcluster.md).

Two vClusters run side by side (each binds the same fixed loopback ports, in a network
namespace of its own), a virtual pod is synced to the host and runs, and each step of the
lifecycle (install, ready, sleep, wake, delete) is the spawner's own code, unchanged.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from localcluster.processes import wait_for
from vcluster_spawner.helm import ChartRef, Helm
from vcluster_spawner.values import computed_values, with_hash
from vcluster_spawner.vcluster import Ref, State, VClusterOps, VirtualClient

from .helpers import gone
from .hub import Hub
from .test_lifecycle import assert_asleep, notebook_status
from .test_storage import notebook_exec, read_file, write_file
from .vclusters import vcluster_chart

pytestmark = pytest.mark.cluster

API_URL = "https://{cluster_ip}:443"   # Service N's cluster IP, as the tests' hubs reach it
NOTEBOOK_LIKE = {   # what Pod Security "restricted" inside the vCluster lets a tenant run
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "main", "image": "python:3.11", "command": ["python3", "-c", "import time; time.sleep(600)"],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
    "terminationGracePeriodSeconds": 2,
}


async def test_real_vclusters_side_by_side_through_the_spawners_lifecycle(cluster, kube, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(cluster.admin_kubeconfig))   # helm's identity
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    chart = vcluster_chart()
    ops = VClusterOps(core, apps, Helm(str(cluster.binaries / "helm"), timeout=600))
    refs = [Ref(f"vc-real{i}", f"vc-real{i}") for i in (1, 2)]
    virtuals = {ref: VirtualClient(ref, core, API_URL) for ref in refs}
    machine_kubeconfig = Path("/root/.kube/config")   # vCluster writes this literal path
    before = machine_kubeconfig.stat().st_mtime_ns if machine_kubeconfig.exists() else None
    try:
        for ref in refs:
            await core.create_namespace({"metadata": {"name": ref.namespace}})

        async def up(ref: Ref):
            values = with_hash(computed_values(ref.name, ref.namespace), str(chart))
            status = await ops.install(ref, ChartRef(str(chart)), values)
            assert status.values_hash == values["controlPlane"]["statefulSet"]["annotations"][
                "hub.jupyter.org/values-hash"], "the hash the spawner compares against is on the cluster"
            steps: list[str] = []
            await ops.wait_ready(ref, virtuals[ref], 600, steps.append)
            assert steps == ["control-plane", "api", "service-account"]
        await asyncio.gather(*(up(ref) for ref in refs))
        # each control plane wrote its kubeconfig to its own /root/.kube, not to this machine's
        after = machine_kubeconfig.stat().st_mtime_ns if machine_kubeconfig.exists() else None
        assert after == before, "a vCluster wrote this machine's /root/.kube/config"

        # a tenant's pod, synced by the real syncer and run on the host
        ref = refs[0]
        virtual = client.CoreV1Api(await virtuals[ref].api())
        await virtual.create_namespaced_config_map("default", {"metadata": {"name": "kept"}, "data": {"a": "b"}})
        await virtual.create_namespaced_pod("default", {"metadata": {"name": "hello"}, "spec": NOTEBOOK_LIKE})
        host_name = f"hello-x-default-x-{ref.name}"

        async def running(api, name, namespace):
            pod = await api.read_namespaced_pod(name, namespace)
            return pod.status.phase == "Running"
        await wait_for(lambda: running(core, host_name, ref.namespace), timeout=120, what="host pod Running")
        await wait_for(lambda: running(virtual, "hello", "default"), timeout=60,
                       what="the virtual pod's status synced back")

        # sleep: the control plane and every synced pod stop (upstream's pause), state kept
        await ops.sleep(ref, timeout=180)
        assert (await ops.status(ref)).state == State.ASLEEP
        await gone(core.read_namespaced_pod, host_name, ref.namespace, timeout=120, what="synced pod after sleep")
        await gone(core.read_namespaced_pod, f"{ref.name}-0", ref.namespace, timeout=120, what="control plane pod")

        # wake: ready again with its store kept; a bare pod whose host pod the sleep deleted is
        # deleted by the syncer (upstream resumes no bare pod: the spawner creates the notebook
        # pod on every start)
        await virtuals[ref].close()
        virtuals[ref] = VirtualClient(ref, core, API_URL)
        await ops.wake(ref)
        await ops.wait_ready(ref, virtuals[ref], 600, lambda step: None)
        virtual = client.CoreV1Api(await virtuals[ref].api())
        assert (await virtual.read_namespaced_config_map("kept", "default")).data == {"a": "b"}
        await gone(virtual.read_namespaced_pod, "hello", "default", timeout=120, what="the bare pod after wake")

        # delete: the release, its synced objects and the control plane's data volume
        await ops.delete(ref)
        assert (await ops.status(ref)).state == State.ABSENT
        await gone(core.read_namespaced_persistent_volume_claim, f"data-{ref.name}-0", ref.namespace, timeout=120,
                   what="the control plane's data volume")
        assert (await ops.status(refs[1])).state == State.RUNNING, "the other vCluster is untouched"
    finally:
        for ref in refs:   # the namespace takes the release's objects and the data volume with it
            await virtuals[ref].close()
            await core.delete_namespace(ref.namespace)


NOTEBOOK_KUBECTL = """
import asyncio, os
from kubernetes_asyncio import client, config

async def main():
    async with await config.new_client_from_config(os.environ["KUBECONFIG"]) as api:
        pods = await client.CoreV1Api(api).list_namespaced_pod("default")
        print("pods:", " ".join(sorted(p.metadata.name for p in pods.items)))
asyncio.run(main())
"""


async def test_a_users_notebook_runs_in_a_real_vcluster_and_keeps_its_home_across_sleep(cluster, kube,
                                                                                           tmp_path):
    """The product end to end on the real vCluster: the hub creates it, the notebook runs in it
    and reaches its API with the kubeconfig it was given, a stop puts it to sleep, a start wakes
    it with the home directory as it was and a kubeconfig that works (upstream rotates
    certificates while running, since 0.34)."""
    hub = await Hub(tmp_path / "hub", cluster, 'c.VClusterSpawner.stop_action = "sleep"\n').start()
    try:
        await hub.add_user("rita")
        events = await hub.start_server("rita", timeout=600)
        assert events[-1].get("ready"), hub.log_tail()
        assert any("Creating your virtual cluster" in e["message"] for e in events)
        assert "started" in await notebook_status(hub, "rita")
        code, out = await notebook_exec(cluster, "rita", NOTEBOOK_KUBECTL)
        assert code == 0 and "pods: jupyter-rita" in out, out
        await write_file(hub, "rita", "kept.txt", b"survives the real vCluster's sleep\n")

        await hub.stop_server("rita")
        await assert_asleep(kube, "rita")

        events = await hub.start_server("rita", timeout=600)
        assert events[-1].get("ready"), hub.log_tail()
        assert any("Waking your virtual cluster" in e["message"] for e in events)
        assert await read_file(hub, "rita", "kept.txt") == b"survives the real vCluster's sleep\n"
        code, out = await notebook_exec(cluster, "rita", NOTEBOOK_KUBECTL)
        assert code == 0 and "pods: jupyter-rita" in out, out
    finally:
        await hub.api("DELETE", "/users/rita", timeout=300)   # the vCluster and its namespace
        await hub.stop()

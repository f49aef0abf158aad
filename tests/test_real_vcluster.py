"""The spawner's vCluster operations against the real vCluster 0.36.1: its own binary and its
own chart, built from the Go module proxy (tools/build-vcluster.sh), on a local cluster whose
kubelet runs them (``--plugin vcluster_real``; docs/real-vcluster.md).

Two vClusters run side by side (each binds the same fixed loopback ports, in a network
namespace of its own), a virtual pod is synced to the host and runs, and each step of the
lifecycle (install, ready, sleep, wake, delete) is the spawner's own code, unchanged.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from localcluster import ClusterState
from localcluster.processes import wait_for
from vcluster_spawner.helm import ChartRef, Helm
from vcluster_spawner.values import computed_values, with_hash
from vcluster_spawner.vcluster import Ref, State, VClusterOps, VirtualClient, read_or_none

from .helpers import gone
from .hub import Hub
from .test_lifecycle import assert_asleep, notebook_status
from .test_storage import notebook_exec, read_file, write_file
from .vclusters import helm, vcluster_chart, virtual_client

pytestmark = [pytest.mark.cluster, pytest.mark.real_vcluster]

API_URL = "https://{cluster_ip}:443"   # Service N's cluster IP, as the tests' hubs reach it
NOTEBOOK_LIKE = {   # what Pod Security "restricted" inside the vCluster lets a tenant run
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "main", "image": "python:3.11", "command": ["python3", "-c", "import time; time.sleep(600)"],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
    "terminationGracePeriodSeconds": 2,
}


async def test_real_vclusters_side_by_side_through_the_spawners_lifecycle(real_cluster, real_kube, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(real_cluster.admin_kubeconfig))   # helm's identity
    core, apps = client.CoreV1Api(real_kube), client.AppsV1Api(real_kube)
    chart = vcluster_chart()
    ops = VClusterOps(core, apps, Helm(str(real_cluster.binaries / "helm"), timeout=600))
    refs = [Ref(f"vc-real{i}", f"vc-real{i}") for i in (1, 2)]
    virtuals = {ref: VirtualClient(ref, core, API_URL) for ref in refs}
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


async def test_a_users_notebook_runs_in_a_real_vcluster_and_keeps_its_home_across_sleep(real_cluster, real_kube,
                                                                                           tmp_path):
    """The product end to end on the real vCluster: the hub creates it, the notebook runs in it
    and reaches its API with the kubeconfig it was given, a stop puts it to sleep, a start wakes
    it with the home directory as it was and a kubeconfig that works (upstream rotates
    certificates while running, since 0.34)."""
    hub = await Hub(tmp_path / "hub", real_cluster, 'c.VClusterSpawner.stop_action = "sleep"\n').start()
    try:
        await hub.add_user("rita")
        events = await hub.start_server("rita", timeout=600)
        assert events[-1].get("ready"), hub.log_tail()
        assert any("Creating your virtual cluster" in e["message"] for e in events)
        assert "started" in await notebook_status(hub, "rita")
        code, out = await notebook_exec(real_cluster, "rita", NOTEBOOK_KUBECTL)
        assert code == 0 and "pods: jupyter-rita" in out, out
        await write_file(hub, "rita", "kept.txt", b"survives the real vCluster's sleep\n")

        await hub.stop_server("rita")
        await assert_asleep(real_kube, "rita")

        events = await hub.start_server("rita", timeout=600)
        assert events[-1].get("ready"), hub.log_tail()
        assert any("Waking your virtual cluster" in e["message"] for e in events)
        assert await read_file(hub, "rita", "kept.txt") == b"survives the real vCluster's sleep\n"
        code, out = await notebook_exec(real_cluster, "rita", NOTEBOOK_KUBECTL)
        assert code == 0 and "pods: jupyter-rita" in out, out
    finally:
        await hub.api("DELETE", "/users/rita", timeout=300)   # the vCluster and its namespace
        await hub.stop()


# ---- the emulation against the real syncer ------------------------------------------------------

DIFF_POD = {   # what a tenant's pod commonly has: labels, annotations, a token, env refs, volumes
    "metadata": {"name": "diff", "labels": {"app": "diff", "release": "mine"}, "annotations": {"note": "kept"}},
    "spec": {**NOTEBOOK_LIKE, "containers": [{
        **NOTEBOOK_LIKE["containers"][0],
        "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "diff", "key": "k"}}}],
        "volumeMounts": [{"name": "cm", "mountPath": "/etc/diff"}, {"name": "scratch", "mountPath": "/scratch"}]}],
        "volumes": [{"name": "cm", "configMap": {"name": "diff"}}, {"name": "scratch", "emptyDir": {}}]},
}
# the home claim's shape: a claim for a volume reserved by name (fake PV mode copies it verbatim)
DIFF_CLAIM = {"metadata": {"name": "home", "labels": {"app": "diff"}},
              "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": "diff-no-such-volume",
                       "resources": {"requests": {"storage": "1Gi"}}}}
DIFF_SERVICE = {"metadata": {"name": "web", "labels": {"app": "diff"}},
                "spec": {"selector": {"app": "diff"}, "ports": [{"name": "http", "port": 80, "targetPort": 8888}]}}
# the S3 credentials the spawner writes beside the vCluster; the values map them inside
HOST_S3_SECRET = {"metadata": {"name": "jupyter-s3"}, "stringData": {"AWS_ACCESS_KEY_ID": "diff"}}

# Where the emulation differs from the real syncer, and why that is acceptable; every other
# field must be equal. Keys: regular expressions over the paths ``flatten`` writes, after
# ``comparable``'s placeholders; "<kind> <name>" alone: an object that only one side has.
KNOWN_DIFFERENCES: dict[str, str] = {
    r"host Service vc-diff-node-local-node-0.*":
        "the real syncer's fake kubelet endpoint for the node its pods run on (sync.fromHost.nodes "
        "off: a fake node); the emulation's fake node has no kubelet endpoint, the spawner uses none",
}


def flatten(value, path: str = "") -> dict[str, object]:
    """Leaves of ``value`` by path; list items by their ``name`` when they have one."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(
            item, f"{path}[{item['name'] if isinstance(item, dict) and 'name' in item else i}]").items()}
    return {path: value}


def placeholders(text: str) -> str:
    """Per-cluster values (uids, loopback IPs, random suffixes) replaced, so the rest compares."""
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uid>", text)
    text = re.sub(r"\b127\.\d+\.\d+\.\d+\b", "<ip>", text)
    # the token volume's name is made by the virtual API server (5 random characters)
    text = re.sub(r"kube-api-access-[a-z0-9]{5}\b", "kube-api-access-<random>", text)
    # a Deployment's pod: its template's hash and 5 random characters (CoreDNS's token Secret)
    return re.sub(r"-[a-z0-9]{8,10}-[a-z0-9]{5}-sa-token\b", "-<template-hash>-<random>-sa-token", text)


def comparable(what: str, obj: dict) -> dict[str, object]:
    """The fields of ``obj`` a syncer decides, under the prefix ``what``, placeholders applied."""
    meta = obj["metadata"]
    decided = {"metadata": {k: meta.get(k) for k in ("name", "labels", "annotations", "ownerReferences")}}
    if "spec" in obj:
        decided["spec"] = {k: v for k, v in obj["spec"].items() if k != "nodeName"}
    if obj.get("data") is not None:
        decided["data"] = obj["data"]
    return {f"{what}.{placeholders(path)}": placeholders(value) if isinstance(value, str) else value
            for path, value in flatten(decided).items()}


async def synced_objects(cluster: ClusterState, kube: client.ApiClient, ref: Ref) -> dict[str, object]:
    """Install upstream's chart with the spawner's values on ``cluster``, create what a tenant
    and the spawner commonly create (a pod using a ConfigMap, a claim, a Service; the host S3
    Secret), and return, flattened: the host objects the syncer made from them, the virtual
    copy of the host Secret, and which host objects of each kind exist."""
    core = client.CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": ref.namespace}})
    await core.create_namespaced_secret(ref.namespace, HOST_S3_SECRET)
    values = Path(tempfile.mkdtemp()) / "values.yaml"
    values.write_text(yaml.safe_dump(computed_values(ref.name, ref.namespace)))
    await helm(cluster, "upgrade", "--install", ref.name, str(vcluster_chart()), "-n", ref.namespace, "-f", str(values),
               "--wait", "--timeout", "600s")
    vapi = await virtual_client(kube, ref.name, ref.namespace)
    try:
        virtual = client.CoreV1Api(vapi)
        await virtual.create_namespaced_config_map("default", {"metadata": {"name": "diff"}, "data": {"k": "v"}})
        await virtual.create_namespaced_persistent_volume_claim("default", DIFF_CLAIM)
        await virtual.create_namespaced_service("default", DIFF_SERVICE)
        await virtual.create_namespaced_pod("default", DIFF_POD)

        def plain(obj) -> dict:
            return kube.sanitize_for_serialization(obj)
        found: dict[str, object] = {}
        for kind, read, name in (
                ("host Pod", core.read_namespaced_pod, "diff"),
                ("host ConfigMap", core.read_namespaced_config_map, "diff"),
                ("host PersistentVolumeClaim", core.read_namespaced_persistent_volume_claim, "home"),
                ("host Service", core.read_namespaced_service, "web")):
            host_name = f"{name}-x-default-x-{ref.name}"
            obj = await wait_for(lambda r=read, n=host_name: read_or_none(r, n, ref.namespace), timeout=120,
                                 what=f"{kind} {host_name} in {ref}")
            found |= comparable(kind, plain(obj))
        copy = await wait_for(lambda: read_or_none(virtual.read_namespaced_secret, "s3-credentials", "default"),
                              timeout=60, what=f"the S3 credentials inside {ref}")
        found |= comparable("virtual Secret", plain(copy))
        async def coredns_synced():   # CoreDNS's pod, with its ConfigMap and token, as on any start
            return [p for p in (await core.list_namespaced_pod(ref.namespace)).items if p.metadata.name.startswith("coredns-")
                    and p.status.phase == "Running"]
        await wait_for(coredns_synced, timeout=120, what=f"CoreDNS of {ref} running on the host")
        for kind, listing in (("Service", core.list_namespaced_service), ("ConfigMap", core.list_namespaced_config_map),
                              ("Secret", core.list_namespaced_secret),
                              ("PersistentVolumeClaim", core.list_namespaced_persistent_volume_claim),
                              ("ServiceAccount", core.list_namespaced_service_account)):
            for item in (await listing(ref.namespace)).items:
                if not item.metadata.name.startswith("sh.helm.release."):   # helm's, one per revision
                    found[f"host {kind} {placeholders(item.metadata.name)}"] = "exists"
        return found
    finally:
        await vapi.close()


async def test_the_emulation_syncs_what_the_real_syncer_syncs_field_by_field(cluster, kube, real_cluster, real_kube):
    """The same chart and values on both clusters, the same tenant objects inside: the host
    objects the emulated syncer makes (and the Secret it imports) equal the real syncer's,
    field by field, but for KNOWN_DIFFERENCES."""
    ref = Ref("vc-diff", "vc-diff")   # the same names on both clusters: names and hashes compare
    try:
        emulated = await synced_objects(cluster, kube, ref)
        real = await synced_objects(real_cluster, real_kube, ref)
    finally:
        for api in (kube, real_kube):
            await client.CoreV1Api(api).delete_namespace(ref.namespace)
    differences = {path: (emulated.get(path, "<absent>"), real.get(path, "<absent>"))
                   for path in sorted(set(emulated) | set(real)) if emulated.get(path) != real.get(path)}
    unexplained = {p: d for p, d in differences.items() if not any(re.fullmatch(k, p) for k in KNOWN_DIFFERENCES)}
    assert not unexplained, "emulated vs real:\n" + "\n".join(f"{p}: {e!r} vs {r!r}" for p, (e, r) in unexplained.items())
    assert any(p.startswith("host Pod.spec.") for p in emulated), "the comparison compared nothing"

"""The admin panel's REST calls (start, stop, remove of default and named servers, delete user)
with the vCluster following, the example profiles (jupyterhub_config.d/20) refusing tampered
options, and the spawner's metrics on /hub/metrics (pytest -m hub)."""

from __future__ import annotations

import base64

import pytest
import yaml
from kubernetes_asyncio import client

from .helpers import gone
from .hub import Hub
from .test_lifecycle import assert_asleep, notebook_status, vcluster_state

pytestmark = pytest.mark.hub

SNIPPETS = ("10-vcluster-spawner.py", "20-profiles.py")


@pytest.fixture
async def hub(cluster, tmp_path):
    h = Hub(tmp_path / "hub", cluster, 'c.VClusterSpawner.stop_action = "sleep"\n', snippets=SNIPPETS)
    await h.start()
    yield h
    await h.stop()


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_admin_panel_start_stop_remove_default_and_named_servers(hub, kube):
    await hub.add_user("ada")
    # the admin panel: "Start Server" = POST .../server, named = POST .../servers/NAME
    assert (await hub.start_server("ada"))[-1].get("ready"), hub.log_tail()
    assert (await hub.start_server("ada", "gpu"))[-1].get("ready"), hub.log_tail()
    await notebook_status(hub, "ada", "gpu")
    _, pods = await vcluster_state(kube, "ada")
    assert sorted(p.metadata.name for p in pods if p.metadata.name.startswith("jupyter-")) == \
        ["jupyter-ada--gpu-x-default-x-vc-ada", "jupyter-ada-x-default-x-vc-ada"]

    # "Stop Server" on the named one: its pod goes, the vCluster keeps running for the default
    await hub.stop_server("ada", "gpu")
    sts, pods = await vcluster_state(kube, "ada")
    assert sts.spec.replicas == 1
    assert [p.metadata.name for p in pods if p.metadata.name.startswith("jupyter-")] == ["jupyter-ada-x-default-x-vc-ada"]
    # "Delete Server" (remove) on the stopped named server: gone from the hub, vCluster stays
    status, body = await hub.api("DELETE", "/users/ada/servers/gpu", {"remove": True})
    assert status == 204, body
    assert "gpu" not in (await hub.user_model("ada"))["servers"]
    assert (await vcluster_state(kube, "ada"))[0].spec.replicas == 1
    await notebook_status(hub, "ada")

    # "Stop Server" on the last server: the vCluster sleeps; "Start Server" wakes it
    await hub.stop_server("ada")
    await assert_asleep(kube, "ada")
    events = await hub.start_server("ada")
    assert events[-1].get("ready") and any("Waking" in e["message"] for e in events), hub.log_tail()
    await notebook_status(hub, "ada")

    # "Delete User" with a running server: server stopped, vCluster and namespace deleted
    status, body = await hub.api("DELETE", "/users/ada")
    assert status == 204, body
    await gone(client.CoreV1Api(kube).read_namespace, "vc-ada", timeout=120, what="namespace of a deleted user")

    # the operations are on the hub's /hub/metrics
    status, text = await hub.request("GET", f"{hub.url}/hub/metrics")
    assert status == 200, text
    assert metric(text, "vcluster_spawner_operation_duration_seconds_count", operation="provision") >= 1
    assert metric(text, "vcluster_spawner_operation_duration_seconds_count", operation="wake") >= 1
    assert metric(text, "vcluster_spawner_operations_total", operation="sleep", result="success") >= 1
    assert metric(text, "vcluster_spawner_operations_total", operation="delete", result="success") >= 1
    assert 'vcluster_spawner_vclusters{state="running"}' in text


async def test_profiles_offer_sizes_and_versions_and_refuse_tampered_options(hub, kube):
    await hub.add_user("pat")
    refused = {
        "no-such-size": ({"profile": "huge"}, "No such profile: huge. Options include: small, large"),
        "unoffered image": ({"profile": "small", "image": "evil"},
                            "'evil' is not a choice of 'image' in profile 'small'; choices: sample, scipy"),
        "free-form image": ({"profile": "small", "image--unlisted-choice": "evil/miner:latest"},
                            "unlisted_choice for image without being enabled"),
    }
    for what, (options, message) in refused.items():
        status, body = await hub.api("POST", "/users/pat/server", options)
        assert status == 400, (what, status, body)
        assert "Your server options were refused" in body["message"] and message in body["message"], (what, body)
    assert not (await hub.user_model("pat"))["servers"]
    assert (await client.AppsV1Api(kube).list_namespaced_stateful_set("vc-pat")).items == []

    # a valid choice: the large size's quota and the chosen Kubernetes version reach the vCluster
    events = await hub.start_server("pat", options={"profile": "large", "kubernetes": "1.35"})
    assert events[-1].get("ready"), hub.log_tail()
    core = client.CoreV1Api(kube)
    quota = await core.read_namespaced_resource_quota("vc-vc-pat", "vc-pat")
    assert quota.spec.hard["count/pods"] == "100" and quota.spec.hard["requests.cpu"] == "8"
    config = await core.read_namespaced_secret("vc-config-vc-pat", "vc-pat")
    values = yaml.safe_load(base64.b64decode(config.data["config.yaml"]))
    assert values["controlPlane"]["distro"]["k8s"]["image"]["tag"] == "v1.35.4"
    await notebook_status(hub, "pat")
    await hub.stop_server("pat")
    await hub.api("DELETE", "/users/pat")

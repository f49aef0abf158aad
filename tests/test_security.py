"""Attacks that must fail (pytest -m security): a tenant, cluster-admin in their own vCluster,
armed with the kubeconfig the notebook gets, against the real host API server with RBAC, Pod
Security admission and the chart's admission policies on (tests/conftest.py applies them, as
an operator's cluster has them). Each attack must be refused, the refusal must reach the tenant
(an API error, or a SyncError event on the virtual object when the host refuses what the
vCluster accepted), and nothing of it may exist on the host. Everything runs against the real
vCluster 0.36.1 (its own virtual API server and syncer): what refuses the attacks is upstream's
code, not this project's reading of it.

Then the names: namespaces that are not the user's are never adopted or deleted, a newcomer with
a removed user's name does not get that user's home, and names the hub accepts (e-mail
addresses, unicode, punctuation, long names, near-collisions) each start, are reachable and own
one namespace (up to six users starting at once).
docs/architecture.md, "Threat model", lists each claim with the test that proves it.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import uuid
from dataclasses import dataclass

import pytest
from kubernetes_asyncio import client, config

from localcluster import ClusterState
from localcluster.kube import api_client
from localcluster.processes import wait_for
from vcluster_spawner.home import HOME_NAMESPACE_LABEL, RETIRED_HOME_LABEL
from vcluster_spawner.ownership import OWNER_ANNOTATION, USERNAME_LABEL
from vcluster_spawner.translate import host_name
from vcluster_spawner.vcluster import (
    DELETING,
    PAUSED,
    PAUSED_DATE,
    PAUSED_REPLICAS,
    STARTING_AT,
    VALUES_HASH,
    WOKEN_AHEAD,
)

from .chart_support import service_account_kubeconfig
from .helpers import attack_outcomes, gone
from .hub import Hub, quote

pytestmark = [pytest.mark.security, pytest.mark.hub]

RUN = uuid.uuid4().hex[:4]
ATTACKER, VICTIM, OPERATOR = f"eve{RUN}", f"vic{RUN}", f"ops{RUN}"
SLEEP_ON_STOP = 'c.VClusterSpawner.stop_action = "sleep"\n'


def ns_of(user: str) -> str:
    return f"vc-{user}"


async def started(hub: Hub, user: str) -> list[dict]:
    await hub.add_user(user)
    events = await hub.start_server(user)
    assert events and events[-1].get("ready"), (events[-3:], hub.log_tail())
    return events


async def refused_start(hub: Hub, user: str, options: dict | None = None) -> str:
    """Start ``user``'s server, which must fail; returns what the user is told (the hub answers
    the request itself when the spawn fails within its 10 s wait, else the progress stream)."""
    await hub.add_user(user)
    post = asyncio.ensure_future(hub.api("POST", hub.server_path(user), options or {}, timeout=300))
    done, _ = await asyncio.wait({post}, timeout=12)
    if done:
        status, body = post.result()
        if status >= 400:
            return body["message"]
    events = await hub.wait_progress(user)
    await post
    assert not events[-1].get("ready"), events[-3:]
    return events[-1]["message"]


async def tenant_client(kube, user: str) -> client.ApiClient:
    """The notebook's own kubeconfig (host Secret jupyter-kubeconfig, synced into the vCluster)."""
    secret = await client.CoreV1Api(kube).read_namespaced_secret("jupyter-kubeconfig", ns_of(user))
    with tempfile.NamedTemporaryFile("wb", suffix=".kubeconfig", delete=False) as f:
        f.write(base64.b64decode(secret.data["config"]))
    return await config.new_client_from_config(f.name)


# An operator's profiles that the vCluster refuses (a hostPath volume) or that pass the vCluster
# but not the host (an inline CSI volume); the first is everyone's default.
PROFILES = '''
c.VClusterSpawner.profile_list = [
    {"display_name": "Default", "slug": "default", "default": True},
    {"display_name": "Host data", "slug": "hostpath", "kubespawner_override": {
        "volumes": [{"name": "data", "hostPath": {"path": "/srv/data"}}],
        "volume_mounts": [{"name": "data", "mountPath": "/srv/data"}]}},
    {"display_name": "Scratch", "slug": "csi", "kubespawner_override": {
        "volumes": [{"name": "scratch", "csi": {"driver": "scratch.csi.example.org"}}],
        "volume_mounts": [{"name": "scratch", "mountPath": "/scratch"}]}},
]
'''


@dataclass
class World:
    """A hub on the cluster running the real vCluster, with two running users (the attacker and
    the victim); ``tenant`` is the attacker's own kubeconfig, ``kube`` the host's admin."""
    hub: Hub
    tenant: client.ApiClient
    kube: client.ApiClient
    cluster: ClusterState


@pytest.fixture(scope="module")
async def world(cluster, kube, tmp_path_factory):
    hub = await Hub(tmp_path_factory.mktemp("security") / "hub", cluster,
                    SLEEP_ON_STOP + PROFILES).start()
    try:
        await asyncio.gather(started(hub, ATTACKER), started(hub, VICTIM))
        tenant = await tenant_client(kube, ATTACKER)
        yield World(hub, tenant, kube, cluster)
        await tenant.close()
    finally:
        # the real vClusters go with their users: the shared real cluster's memory is for later tests
        await asyncio.gather(*(hub.api("DELETE", f"/users/{quote(user)}", timeout=300)
                               for user in (ATTACKER, VICTIM, OPERATOR)))
        await hub.stop()


# ---- pods the host must never run -------------------------------------------------------------

CONTAINER = {"name": "main", "image": "python:3.11", "command": ["sleep", "600"]}
RESTRICTED = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
              "containers": [{**CONTAINER, "securityContext": {"allowPrivilegeEscalation": False,
                                                                "capabilities": {"drop": ["ALL"]}}}]}


def pod(name: str, **spec) -> dict:
    body = {"metadata": {"name": name}, "spec": {**RESTRICTED, **spec}}
    return body


def with_container(**security) -> list[dict]:
    return [{**CONTAINER, "securityContext": security}]


# refused by Pod Security inside the vCluster (policies.podSecurityStandard) when created
POD_SECURITY_ATTACKS = {
    "privileged": dict(containers=with_container(privileged=True)),
    "host-pid": dict(hostPID=True),
    "host-network": dict(hostNetwork=True),
    "host-path-root": dict(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
    "added-capability": dict(containers=with_container(allowPrivilegeEscalation=False,
                                                       capabilities={"add": ["SYS_ADMIN"], "drop": ["ALL"]})),
    "inline-nfs-home-export": dict(volumes=[{"name": "homes", "nfs": {"server": "127.0.0.1", "path": "/"}}]),
    "root-user": dict(securityContext={"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}}),
}


async def no_host_object(read, name: str, namespace: str, settle: float = 3.0) -> None:
    """The host object does not exist now nor after the syncer had time to act."""
    for _ in range(2):
        try:
            await read(name, namespace)
        except client.ApiException as e:
            assert e.status == 404, e
        else:
            raise AssertionError(f"host object {namespace}/{name} exists")
        await asyncio.sleep(settle)


async def sync_error(tenant: client.ApiClient, name: str, namespace: str = "default", timeout: float = 30) -> str:
    """The SyncError event the syncer records on a virtual object the host refused."""
    core = client.CoreV1Api(tenant)

    async def recorded():
        events = await core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        return next((e.message for e in events.items if e.reason == "SyncError"), None)
    return await wait_for(recorded, timeout=timeout, what=f"SyncError event on virtual {namespace}/{name}")


@pytest.mark.parametrize("attack", sorted(POD_SECURITY_ATTACKS))
async def test_a_pod_pod_security_refuses_is_refused_inside_the_vcluster(world, attack):
    tenant, kube = world.tenant, world.kube
    name = f"{attack}-{uuid.uuid4().hex[:4]}"
    with pytest.raises(client.ApiException) as refused:
        await client.CoreV1Api(tenant).create_namespaced_pod("default", pod(name, **POD_SECURITY_ATTACKS[attack]))
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body, refused.value.body
    await no_host_object(client.CoreV1Api(kube).read_namespaced_pod, host_name(name, "default", ns_of(ATTACKER)),
                         ns_of(ATTACKER))


async def test_a_tenant_who_lifts_pod_security_inside_is_stopped_by_the_host(world):
    """Cluster-admin inside, the tenant makes a namespace that allows privileged pods: refused,
    and the tenant is told, by the vCluster's own Pod Security (it labels the namespace back) or
    by the host's. Which layer refuses depends on a race inside the vCluster, so this test holds
    with either layer alone; the host layer alone is attacked with the syncer's identity
    (test_a_compromised_control_plane_cannot_forge_what_the_hub_acts_on, docs/ablation.md)."""
    tenant, kube = world.tenant, world.kube
    vcore = client.CoreV1Api(tenant)
    vns = f"lifted-{uuid.uuid4().hex[:4]}"
    await vcore.create_namespace({"metadata": {"name": vns, "labels": {
        "pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "privileged"}}})
    name = "privileged"
    try:
        await vcore.create_namespaced_pod(vns, pod(name, containers=with_container(privileged=True)))
    except client.ApiException as e:   # the vCluster re-labelled the namespace first: refused inside
        assert e.status == 403 and "violates PodSecurity" in e.body, e.body
    else:
        message = await sync_error(tenant, name, vns)
        assert "violates PodSecurity" in message and "privileged" in message, message
    await no_host_object(client.CoreV1Api(kube).read_namespaced_pod, host_name(name, vns, ns_of(ATTACKER)),
                         ns_of(ATTACKER))


# ---- what Pod Security allows and the admission policies refuse -------------------------------

async def test_an_inline_csi_volume_is_refused_by_the_host(world):
    tenant, kube = world.tenant, world.kube
    name = f"csi-{uuid.uuid4().hex[:4]}"
    await client.CoreV1Api(tenant).create_namespaced_pod("default", pod(name, volumes=[
        {"name": "export", "csi": {"driver": "nfs.csi.k8s.io", "volumeAttributes": {"server": "nfs", "share": "/"}}}]))
    message = await sync_error(tenant, name)
    assert "volume type not allowed" in message, message
    await no_host_object(client.CoreV1Api(kube).read_namespaced_pod, host_name(name, "default", ns_of(ATTACKER)),
                         ns_of(ATTACKER))


@pytest.mark.parametrize("target", ["victims-home", "available-admin-volume"])
async def test_a_claim_naming_a_volume_not_reserved_for_the_tenant_is_refused(world, target):
    tenant, kube = world.tenant, world.kube
    core = client.CoreV1Api(kube)
    if target == "victims-home":
        pvs = await core.list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}={ns_of(VICTIM)}")
        volume = pvs.items[0].metadata.name
    else:
        volume = f"admin-made-{uuid.uuid4().hex[:4]}"
        await core.create_persistent_volume({"metadata": {"name": volume}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{volume}"}}})
    claim = f"steal-{uuid.uuid4().hex[:4]}"
    try:
        await client.CoreV1Api(tenant).create_namespaced_persistent_volume_claim("default", {
            "metadata": {"name": claim},
            "spec": {"volumeName": volume, "storageClassName": "", "accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": "1Gi"}}}})
        message = await sync_error(tenant, claim)
        assert f"volume {volume} is not reserved for namespace {ns_of(ATTACKER)}" in message, message
        await no_host_object(core.read_namespaced_persistent_volume_claim, host_name(claim, "default", ns_of(ATTACKER)),
                             ns_of(ATTACKER))
        pv = await core.read_persistent_volume(volume)
        assert pv.spec.claim_ref is None or pv.spec.claim_ref.namespace != ns_of(ATTACKER), pv.spec.claim_ref
    finally:
        if target != "victims-home":
            await core.delete_persistent_volume(volume)


SERVICE_ATTACKS = {
    "external-ips": ({"externalIPs": ["10.96.0.10"]}, "externalIPs are not allowed"),
    "node-port": ({"type": "NodePort"}, "Services of type NodePort are not allowed"),
    "load-balancer": ({"type": "LoadBalancer"}, "Services of type LoadBalancer are not allowed"),
}


@pytest.mark.parametrize("attack", sorted(SERVICE_ATTACKS))
async def test_a_service_reaching_outside_the_namespace_is_refused_by_the_host(world, attack):
    tenant, kube = world.tenant, world.kube
    spec, expected = SERVICE_ATTACKS[attack]
    name = f"{attack}-{uuid.uuid4().hex[:4]}"
    try:
        await client.CoreV1Api(tenant).create_namespaced_service("default", {"metadata": {"name": name}, "spec": {
            "selector": {"app": "x"}, "ports": [{"port": 80}], **spec}})
    except client.ApiException as e:   # upstream creates the host Service first: the host's error
        assert e.status == 403 and expected in e.body, e.body
    else:                              # synced afterwards: the refusal is an event
        message = await sync_error(tenant, name)
        assert expected in message, message
    await no_host_object(client.CoreV1Api(kube).read_namespaced_service, host_name(name, "default", ns_of(ATTACKER)),
                         ns_of(ATTACKER))


# where the scheduler would not put them: control-plane or dedicated nodes (the chart's
# admission.nodeSelectorKeys and admission.tolerationKeys)
PLACEMENT_ATTACKS = {
    "node-name": ({"nodeName": "local-node-0"}, "may not name their node"),
    "control-plane-toleration": ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                                   "operator": "Exists", "effect": "NoSchedule"}]},
                                 "tolerate only the taints"),
    "tolerate-everything": ({"tolerations": [{"operator": "Exists"}]}, "tolerate only the taints"),
    "control-plane-selector": ({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
                               "may select nodes only by"),
}


@pytest.mark.parametrize("attack", sorted(PLACEMENT_ATTACKS))
async def test_a_pod_placed_past_the_scheduler_is_refused_by_the_host(world, attack):
    tenant, kube = world.tenant, world.kube
    spec, expected = PLACEMENT_ATTACKS[attack]
    name = f"{attack}-{uuid.uuid4().hex[:4]}"
    await client.CoreV1Api(tenant).create_namespaced_pod("default", pod(name, **spec))
    message = await sync_error(tenant, name)
    assert expected in message, message
    await no_host_object(client.CoreV1Api(kube).read_namespaced_pod, host_name(name, "default", ns_of(ATTACKER)),
                         ns_of(ATTACKER))


async def test_a_claim_that_selects_volumes_by_label_is_refused_by_the_host(world):
    """A selector binds any Available volume whose labels match, an administrator's among them."""
    tenant, kube = world.tenant, world.kube
    name = f"selector-{uuid.uuid4().hex[:4]}"
    await client.CoreV1Api(tenant).create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                                             "resources": {"requests": {"storage": "1Gi"}},
                                             "selector": {"matchLabels": {"dataset": "survey"}}}})
    # the syncer creates a claim's host copy once a pod uses it
    await client.CoreV1Api(tenant).create_namespaced_pod("default", pod(f"{name}-user", volumes=[
        {"name": "data", "persistentVolumeClaim": {"claimName": name}}]))
    message = await sync_error(tenant, name)
    assert "may not select volumes by label" in message, message
    await no_host_object(client.CoreV1Api(kube).read_namespaced_persistent_volume_claim,
                         host_name(name, "default", ns_of(ATTACKER)), ns_of(ATTACKER))


async def test_the_notebook_itself_passes_restricted_and_tokens_stay_out_of_annotations(world):
    """The notebook pod runs under "restricted" (the host enforces it, so its existence is the
    proof) and no service-account token sits in a host pod's annotations."""
    core = client.CoreV1Api(world.kube)
    namespace = await core.read_namespace(ns_of(ATTACKER))
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = (await core.list_namespaced_pod(ns_of(ATTACKER))).items
    notebook = next(p for p in pods if p.metadata.name == host_name(f"jupyter-{ATTACKER}", "default", ns_of(ATTACKER)))
    assert notebook.status.phase == "Running"
    for p in pods:
        leaked = [k for k in (p.metadata.annotations or {}) if k.startswith("vcluster.loft.sh/token-")]
        assert not leaked, (p.metadata.name, leaked)


async def test_the_tenants_credentials_open_nothing_but_their_own_vcluster(world):
    tenant, kube, cluster = world.tenant, world.kube, world.cluster
    victim_api = await client.CoreV1Api(kube).read_namespaced_service(ns_of(VICTIM), ns_of(VICTIM))
    for server in (cluster.server, f"https://{victim_api.spec.cluster_ip}:443"):
        other = client.Configuration()
        c = tenant.configuration
        other.host, other.verify_ssl = server, False
        other.cert_file, other.key_file, other.api_key = c.cert_file, c.key_file, dict(c.api_key)
        async with client.ApiClient(other) as api:
            with pytest.raises(client.ApiException) as refused:
                await client.CoreV1Api(api).list_secret_for_all_namespaces()
        assert refused.value.status == 401, (server, refused.value.status)
    # inside: the credentials Secrets mapped for this user, never the host's vc-N or N-certs
    names = {s.metadata.name for s in (await client.CoreV1Api(tenant).list_secret_for_all_namespaces()).items}
    assert not {f"vc-{ns_of(ATTACKER)}", f"{ns_of(ATTACKER)}-certs", f"vc-{ns_of(VICTIM)}"} & names, names


# ---- a compromised control plane -------------------------------------------------------------

TRUSTED_ANNOTATIONS = (PAUSED, PAUSED_REPLICAS, PAUSED_DATE, VALUES_HASH, STARTING_AT, DELETING, WOKEN_AHEAD)


async def test_a_compromised_control_plane_cannot_forge_what_the_hub_acts_on(world, tmp_path):
    """The syncer's own identity (its ServiceAccount's token: what a control plane one vCluster
    bug away from the tenant holds) tries to write what the hub trusts and acts on with its own
    identity: helm's release records (the next start's recovery or upgrade applies them) and the
    StatefulSet's replicas and annotations (what a wake restores, the values hash, the claim).
    The chart's policy <release>-hub-records refuses each; the syncer's own work goes on."""
    namespace = ns_of(ATTACKER)
    release = namespace
    kubeconfig = await service_account_kubeconfig(world.kube, world.cluster, namespace, f"vc-{release}",
                                                  tmp_path / "syncer.kubeconfig")
    admin = client.CoreV1Api(world.kube)
    records = await admin.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={release}")
    latest = max(records.items, key=lambda s: int(s.metadata.labels["version"]))
    sts_before = await client.AppsV1Api(world.kube).read_namespaced_stateful_set(release, namespace)

    def record(name: str, kind: str) -> dict:
        forged = base64.b64encode(b"H4sIAAAAAAAA/forged").decode()
        return {"metadata": {"name": name, "labels": {"owner": "helm", "name": release, "status": "pending-upgrade",
                                                      "version": "99"}},
                "type": kind, "data": {"release": forged}}
    async with await api_client(kubeconfig) as syncer:
        core, apps = client.CoreV1Api(syncer), client.AppsV1Api(syncer)
        attacks = {
            "forge a pending release record": core.create_namespaced_secret(
                namespace, record(f"sh.helm.release.v1.{release}.v99", "helm.sh/release.v1")),
            "forge one as an Opaque Secret": core.create_namespaced_secret(
                namespace, record(f"forged-{RUN}", "Opaque")),
            "mark the latest record pending": core.patch_namespaced_secret(
                latest.metadata.name, namespace, {"metadata": {"labels": {"status": "pending-upgrade"}}}),
            "delete the latest record": core.delete_namespaced_secret(latest.metadata.name, namespace),
            "scale the control plane": apps.patch_namespaced_stateful_set(release, namespace, {"spec": {"replicas": 3}}),
            # the host namespace's Pod Security is all that stands here: the syncer's identity
            # creates host pods directly, past the vCluster's own Pod Security
            "run a privileged pod on the host": core.create_namespaced_pod(namespace, pod(
                f"privileged-{RUN}", containers=with_container(privileged=True))),
        }
        # each annotation the hub acts on (a wake's replicas, the values hash, the claim, the
        # delete mark, the pause), forged on its own
        for annotation in TRUSTED_ANNOTATIONS:
            attacks[f"forge {annotation}"] = apps.patch_namespaced_stateful_set(
                release, namespace, {"metadata": {"annotations": {annotation: "50"}}})
        outcomes = await attack_outcomes(attacks)
        assert outcomes == {name: 403 for name in attacks}, outcomes
        # what the syncer does for the tenant (Secrets its pods use) it still does
        probe = await core.create_namespaced_secret(namespace, {"metadata": {"name": f"probe-{RUN}"},
                                                                "stringData": {"a": "b"}})
        await core.delete_namespaced_secret(probe.metadata.name, namespace)
    after = await admin.read_namespaced_secret(latest.metadata.name, namespace)
    assert after.metadata.labels["status"] == latest.metadata.labels["status"]
    sts = await client.AppsV1Api(world.kube).read_namespaced_stateful_set(release, namespace)
    assert sts.spec.replicas == sts_before.spec.replicas and sts.metadata.annotations == sts_before.metadata.annotations


# ---- names and ownership ----------------------------------------------------------------------

async def test_a_namespace_that_is_not_the_users_is_neither_adopted_nor_deleted(cluster, kube, tmp_path):
    """A namespace an administrator made (for anything) under the name a user's template gives;
    and the template "{username}" with a user called kube-system."""
    core = client.CoreV1Api(kube)
    squatted = f"sq{RUN}"
    await core.create_namespace({"metadata": {"name": ns_of(squatted), "labels": {"team": "finance"}}})
    hub = await Hub(tmp_path / "hub", cluster, 'c.VClusterSpawner.vcluster_namespace_template = "{username}"\n'
                    'c.VClusterSpawner.vcluster_name_template = "vc-{username}"\n').start()
    try:
        for user, namespace in ((ns_of(squatted), ns_of(squatted)), ("kube-system", "kube-system")):
            before = await core.read_namespace(namespace)
            message = await refused_start(hub, user)
            assert f"the host namespace {namespace} meant for your virtual cluster already exists and does not " \
                   "belong to you" in message, message
            status, body = await hub.api("DELETE", f"/users/{quote(user)}")
            assert status == 204, body
            after = await core.read_namespace(namespace)
            assert after.metadata.deletion_timestamp is None
            assert after.metadata.labels == before.metadata.labels and after.metadata.annotations == before.metadata.annotations
            assert not (await client.AppsV1Api(kube).list_namespaced_stateful_set(namespace)).items
        # only an administrator's explicit decision (e.g. after an upgrade from a version without
        # ownership) makes it the user's
        user = ns_of(squatted)
        await hub.add_user(user)
        assert "now records" in await hub.operator_cli("adopt", user)
        await started(hub, user)
        labels = (await core.read_namespace(user)).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted" and labels["team"] == "finance"
        await hub.stop_server(user)
    finally:
        await hub.stop()
        await core.delete_namespace(ns_of(squatted))


async def test_a_newcomer_with_a_removed_users_name_gets_a_new_home(cluster, kube, tmp_path):
    core = client.CoreV1Api(kube)
    user = f"nina{RUN}"
    hub = await Hub(tmp_path / "hub", cluster, SLEEP_ON_STOP).start()
    try:
        await started(hub, user)
        old = (await core.list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}={ns_of(user)}")).items
        assert len(old) == 1
        await hub.stop_server(user)
        status, body = await hub.api("DELETE", f"/users/{quote(user)}")
        assert status == 204, body
        await gone(core.read_namespace, ns_of(user), timeout=120, what=f"namespace {ns_of(user)} deleted")
        retired = await core.read_persistent_volume(old[0].metadata.name)
        assert retired.metadata.labels[RETIRED_HOME_LABEL] == ns_of(user)
        assert HOME_NAMESPACE_LABEL not in retired.metadata.labels

        await started(hub, user)   # a different person: same name, new hub user
        new = (await core.list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}={ns_of(user)}")).items
        assert [pv.metadata.name for pv in new] != [old[0].metadata.name]
        assert (await core.read_persistent_volume(old[0].metadata.name)).status.phase in ("Released", "Available")
        await hub.stop_server(user)
    finally:
        await hub.stop()


async def test_a_home_kept_for_someone_else_is_not_taken_by_a_new_users_start(cluster, kube, tmp_path):
    """An administrator made a home for someone (migrated data): an Available volume of the home
    class, labelled for that person's namespace. A new user's provisioning claim binds it (static
    binding comes before the provisioner); the spawner does not relabel it as the new user's,
    refuses the start with the reason, and the volume stays as the administrator made it."""
    core = client.CoreV1Api(kube)
    user, volume, kept_for = f"pam{RUN}", f"migrated-{RUN}", f"vc-someone-{RUN}"
    await core.create_persistent_volume({"metadata": {"name": volume, "labels": {HOME_NAMESPACE_LABEL: kept_for}},
                                         "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"],
                                                  "persistentVolumeReclaimPolicy": "Retain",
                                                  "storageClassName": "local-rwx",
                                                  "hostPath": {"path": f"/tmp/{volume}"}}})
    hub = await Hub(tmp_path / "hub", cluster).start()
    try:
        message = await refused_start(hub, user)
        assert "kept for someone else" in message and volume in message, message
        pv = await core.read_persistent_volume(volume)
        assert pv.metadata.labels == {HOME_NAMESPACE_LABEL: kept_for}, pv.metadata.labels
        assert OWNER_ANNOTATION not in (pv.metadata.annotations or {})
    finally:
        await hub.api("DELETE", f"/users/{quote(user)}", timeout=300)
        await hub.stop()
        await core.delete_persistent_volume(volume)


# unique per run: a namespace left by an earlier run belongs to that run's (different) user
GENERATED_NAMES = [f"alice{RUN}@example.org", f"jürgen.müller{RUN}", f"o'brien+{RUN}", "x" * 76 + RUN,
                   f"near.miss{RUN}", f"near-miss{RUN}"]


async def test_any_name_the_hub_accepts_starts_and_owns_one_namespace(cluster, kube, tmp_path):
    """On the real vCluster: each name's release, Services and certificates are upstream's."""
    hub = await Hub(tmp_path / "hub", cluster).start()
    core = client.CoreV1Api(kube)
    try:
        # all at once: names that slug alike (near.miss, near-miss) race for their namespaces too
        await asyncio.gather(*(started(hub, name) for name in GENERATED_NAMES))
        for name in GENERATED_NAMES:
            # the server's address as the hub gives it (escaped), requested as it is, as a browser does
            url = (await hub.user_model(name))["servers"][""]["url"]
            status, body = await hub.request("GET", f"{hub.url}{url}api/status")
            assert status == 200, (name, status, body)
        await asyncio.gather(*(hub.stop_server(name) for name in GENERATED_NAMES))
        # each namespace records its user, by name in an annotation and as a valid label
        recorded = {}
        for ns in (await core.list_namespace(label_selector="app.kubernetes.io/managed-by=vcluster-spawner")).items:
            owner = (ns.metadata.annotations or {}).get(OWNER_ANNOTATION)
            if owner in GENERATED_NAMES:
                recorded.setdefault(owner, []).append(ns.metadata.name)
                assert ns.metadata.labels[USERNAME_LABEL]
        assert {n: len(v) for n, v in recorded.items()} == {n: 1 for n in GENERATED_NAMES}, recorded
        assert len({v[0] for v in recorded.values()}) == len(GENERATED_NAMES)
    finally:
        await hub.stop()



async def test_a_notebook_pod_that_breaks_the_rules_fails_the_start_at_once_with_the_reason(world):
    """An operator's profile (PROFILES) that the vCluster refuses, or that passes the vCluster
    but not the host: the user learns why in seconds, not after start_timeout."""
    message = await refused_start(world.hub, OPERATOR, {"profile": "hostpath"})
    assert "refused by your virtual cluster" in message and "violates PodSecurity" in message, message
    message = await refused_start(world.hub, OPERATOR, {"profile": "csi"})
    assert "the host cluster refused it" in message and "volume type not allowed" in message, message

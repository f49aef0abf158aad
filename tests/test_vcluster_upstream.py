"""What the spawner relies on in vCluster 0.36.1, dangerous parts included, checked against the
real vCluster (its binary and chart, docs/real-vcluster.md): each test pins one behaviour of the
table "Upstream behaviours the spawner relies on, pinned" there (pytest -m upstream)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from localcluster.processes import holds, wait_for
from vcluster_spawner.helm import Helm
from vcluster_spawner.translate import host_name
from vcluster_spawner.vcluster import Ref, State, VClusterOps

from .chart_support import KUBE_VERSION
from .helpers import gone, pod_phase, pod_ready, python_pod
from .vclusters import helm, install, new_namespace, vcluster_chart, vcluster_cli, virtual_client, wait_ready

pytestmark = pytest.mark.upstream


@pytest.fixture
async def vcluster(kube, cluster):
    """A running vCluster "vc" in its own namespace; yields (namespace, virtual ApiClient)."""
    ns = await new_namespace(kube)
    await install(cluster, "vc", ns)
    await wait_ready(kube, "vc", ns)
    vapi = await virtual_client(kube, "vc", ns)
    yield ns, vapi
    await vapi.close()
    await helm(cluster, "uninstall", "vc", "-n", ns, check=False)
    await client.CoreV1Api(kube).delete_namespace(ns)


async def start_failure(core, ns, pod) -> str:
    """What the control plane of ``pod`` said when it exited with an error: the tail of its log
    the kubelet keeps as the container's termination message."""
    async def failed():
        status = (await core.read_namespaced_pod(pod, ns)).status
        for container in status.container_statuses or ():
            for state in (container.state, container.last_state):
                if state and state.terminated and state.terminated.exit_code:
                    return state.terminated.message or f"exit code {state.terminated.exit_code}"
        return None
    return await wait_for(failed, timeout=120, what=f"{pod} refusing to start")


async def scale(kube, ns, replicas):
    await client.AppsV1Api(kube).patch_namespaced_stateful_set_scale("vc", ns, {"spec": {"replicas": replicas}})


# ---- chart ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,message", [
    ("controlPlane.distro.k3s.enabled=true", "additional properties 'k3s' not allowed"),
    ("controlPlane.distro.k0s.enabled=true", "additional properties 'k0s' not allowed"),
    ("sync.toHost.pods.enabeld=true", "additional properties 'enabeld' not allowed"),
    ("syncer.extraArgs={x}", "additional properties 'syncer' not allowed"),
])
async def test_unknown_or_removed_values_keys_are_rejected(cluster, bad, message):
    code, out = await helm(cluster, "template", "vc", str(vcluster_chart()), "--set", bad, check=False)
    assert code != 0 and message in out


async def test_chart_renders_upstream_host_objects(cluster):
    # as on install: upstream renders the claim retention policy only for Kubernetes 1.27+
    _, out = await helm(cluster, "template", "alice", str(vcluster_chart()), "-n", "user-alice",
                        "--kube-version", KUBE_VERSION, "--set",
                        "sync.fromHost.secrets.enabled=true", "--set",
                        "sync.fromHost.secrets.mappings.byName.user-alice-secrets/s3=default/s3")
    objects = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    sts = objects[("StatefulSet", "alice")]
    assert sts["metadata"]["labels"]["app"] == "vcluster" and sts["metadata"]["labels"]["release"] == "alice"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain"}
    svc = objects[("Service", "alice")]
    assert \
        (svc["spec"]["ports"][0]["port"], svc["spec"]["ports"][0]["targetPort"]) == (443, 8443)
    for key in [("Service", "alice-headless"), ("ServiceAccount", "vc-alice"), ("ServiceAccount", "vc-workload-alice"),
                ("Role", "vc-alice"), ("RoleBinding", "vc-alice"), ("Secret", "vc-config-alice"),
                ("ClusterRole", "vc-alice-v-user-alice"), ("ClusterRoleBinding", "vc-alice-v-user-alice")]:
        assert key in objects, key
    rules = objects[("ClusterRole", "vc-alice-v-user-alice")]["rules"]
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]} in rules
    config = yaml.safe_load(base64.b64decode(objects[("Secret", "vc-config-alice")]["data"]["config.yaml"]))
    assert config["sync"]["fromHost"]["secrets"]["mappings"]["byName"] == {"user-alice-secrets/s3": "default/s3"}


# ---- control plane -------------------------------------------------------------------------

async def test_install_gives_a_working_virtual_api_through_vc_secret(kube, vcluster):
    ns, vapi = vcluster
    core = client.CoreV1Api(kube)
    secret = await core.read_namespaced_secret("vc-vc", ns)
    assert set(secret.data) == {"config", "certificate-authority", "client-certificate", "client-key", "token"}
    kubeconfig = yaml.safe_load(base64.b64decode(secret.data["config"]))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://localhost:8443"  # upstream default
    assert secret.metadata.owner_references[0].kind == "Service"
    certs = await core.read_namespaced_secret("vc-certs", ns)
    assert certs.metadata.owner_references[0].name == "vc"
    vcore = client.CoreV1Api(vapi)
    await vcore.read_namespaced_service_account("default", "default")
    names = {n.metadata.name for n in (await vcore.list_namespace()).items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    # the virtual cluster is not the host: the host namespace does not exist inside it
    assert ns not in names
    pvc = await core.read_namespaced_persistent_volume_claim("data-vc-0", ns)
    assert pvc.status.phase == "Bound"


async def test_export_kubeconfig_context_server_and_additional_secrets(kube, cluster):
    ns = await new_namespace(kube)
    await install(cluster, "vc", ns, {"exportKubeConfig": {
        "context": "my-vc", "server": f"https://vc.{ns}:443",
        "additionalSecrets": [{"name": "extra-kubeconfig", "context": "extra", "server": "https://x.example:443"}]}})
    await wait_ready(kube, "vc", ns)
    core = client.CoreV1Api(kube)
    main = yaml.safe_load(base64.b64decode((await core.read_namespaced_secret("vc-vc", ns)).data["config"]))
    assert main["current-context"] == "my-vc" and main["clusters"][0]["cluster"]["server"] == f"https://vc.{ns}:443"

    async def extra():
        return await core.read_namespaced_secret("extra-kubeconfig", ns)
    extra_secret = await wait_for(extra, timeout=30, what="additional kubeconfig secret")
    doc = yaml.safe_load(base64.b64decode(extra_secret.data["config"]))
    assert doc["current-context"] == "extra" and doc["clusters"][0]["cluster"]["server"] == "https://x.example:443"
    await helm(cluster, "uninstall", "vc", "-n", ns)


async def test_one_vcluster_per_namespace(kube, cluster, vcluster):
    ns, _ = vcluster
    await install(cluster, "second", ns)
    core = client.CoreV1Api(kube)
    # upstream cmd/vcluster/cmd/start.go (0.25+)
    assert "there is already a virtual cluster in namespace" in await start_failure(core, ns, "second-0")
    pod = await core.read_namespaced_pod("second-0", ns)
    assert not any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    await helm(cluster, "uninstall", "second", "-n", ns)


# ---- pods ------------------------------------------------------------------------------------

async def test_virtual_pod_runs_on_the_host_under_its_translated_name(kube, vcluster):
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    await vcore.create_namespaced_pod("default", python_pod(
        "web", ["-m", "http.server", "18500", "--directory=/tmp"], restart="Always", ports=[18500]))
    vpod = await pod_ready(vcore, "default", "web")
    hname = host_name("web", "default", "vc")
    assert hname == "web-x-default-x-vc"
    hpod = await core.read_namespaced_pod(hname, ns)
    assert hpod.metadata.labels["vcluster.loft.sh/managed-by"] == "vc"
    assert hpod.metadata.labels["vcluster.loft.sh/namespace"] == "default"
    assert hpod.metadata.labels["test"] == "web"   # virtual labels copied unchanged
    a = hpod.metadata.annotations
    assert (a["vcluster.loft.sh/object-name"], a["vcluster.loft.sh/object-namespace"]) == ("web", "default")
    assert a["vcluster.loft.sh/object-uid"] == vpod.metadata.uid
    assert a["vcluster.loft.sh/object-host-name"] == hname
    assert hpod.spec.service_account_name == "vc-workload-vc"
    assert hpod.metadata.owner_references[0].kind == "Service" and hpod.metadata.owner_references[0].name == "vc"
    svc = await core.read_namespaced_service("vc", ns)
    env = {e.name: e.value for e in hpod.spec.containers[0].env}
    assert env["KUBERNETES_SERVICE_HOST"] == svc.spec.cluster_ip and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert hpod.spec.dns_policy == "None" and hpod.spec.dns_config.searches[0] == "default.svc.cluster.local"
    assert vpod.status.pod_ip == hpod.status.pod_ip   # host status copied back
    reader, writer = await asyncio.open_connection(vpod.status.pod_ip, 18500)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.0 200")
    writer.close()


async def test_pod_in_the_vcluster_uses_its_service_account_against_the_virtual_api(vcluster):
    ns, vapi = vcluster
    vcore = client.CoreV1Api(vapi)
    code = (
        "import os, ssl, urllib.request, json;"
        "d='/var/run/secrets/kubernetes.io/serviceaccount/';"
        "ctx=ssl.create_default_context(cafile=d+'ca.crt');"
        "url='https://%s:%s/apis/authentication.k8s.io/v1/selfsubjectreviews' % "
        "(os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']);"
        "req=urllib.request.Request(url, method='POST',"
        " data=b'{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"SelfSubjectReview\"}',"
        " headers={'Authorization':'Bearer '+open(d+'token').read(),'Content-Type':'application/json'});"
        "user=json.load(urllib.request.urlopen(req, context=ctx))['status']['userInfo']['username'];"
        "assert user=='system:serviceaccount:default:default', user;"
        "assert open(d+'namespace').read()=='default'"
    )
    await vcore.create_namespaced_pod("default", python_pod("whoami", code))
    pod = await pod_phase(vcore, "default", "whoami", "Succeeded", "Failed")
    assert pod.status.phase == "Succeeded", pod.status.container_statuses[0].state.terminated.message


async def test_deleting_the_host_pod_deletes_the_virtual_pod(kube, vcluster):
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    await vcore.create_namespaced_pod("default", python_pod("sleeper", "import time; time.sleep(600)"))
    await pod_phase(vcore, "default", "sleeper", "Running")
    await core.delete_namespaced_pod("sleeper-x-default-x-vc", ns)
    await gone(vcore.read_namespaced_pod, "sleeper", "default", what="virtual pod deleted after host pod")


async def test_a_pod_recreated_under_its_old_name_replaces_the_old_host_pod(kube, vcluster):
    """KubeSpawner's start removes a leftover pod and creates one of the same name at once: the
    old host pod (other object-uid) is deleted and, once gone, the new one is synced."""
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    # slow to stop (ignores SIGTERM), so the new virtual pod meets the old host pod
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    await vcore.create_namespaced_pod("default", python_pod("again", stubborn))
    old = await pod_phase(vcore, "default", "again", "Running")
    await vcore.delete_namespaced_pod("again", "default", grace_period_seconds=0)
    await gone(vcore.read_namespaced_pod, "again", "default", what="old virtual pod deleted")
    await vcore.create_namespaced_pod("default", python_pod("again", "import time; time.sleep(600)"))
    new = await pod_phase(vcore, "default", "again", "Running", timeout=90)
    assert new.metadata.uid != old.metadata.uid
    host = await core.read_namespaced_pod("again-x-default-x-vc", ns)
    assert host.metadata.annotations["vcluster.loft.sh/object-uid"] == new.metadata.uid


# what a tenant's pod runs to resolve names: the C library's resolver, reading the
# /etc/resolv.conf the kubelet wrote from the dnsPolicy the syncer translated
RESOLVE = (
    "import json, socket, sys, urllib.request\n"
    "def ip(name):\n"
    "    try:\n"
    "        return socket.gethostbyname(name)\n"
    "    except OSError as e:\n"
    "        return 'error: %s' % e\n"
    "names = sys.argv[1].split(',')\n"
    "found = {n: ip(n) for n in names}\n"
    "found['http'] = urllib.request.urlopen('http://%s:18501/' % names[-1], timeout=10).status\n"
    "found['resolv.conf'] = open('/etc/resolv.conf').read()\n"
    "open('/dev/termination-log', 'w').write(json.dumps(found))\n"
)


async def test_coredns_serves_virtual_names_and_forwards_the_rest_to_the_host_dns(kube, cluster):
    """The real CoreDNS vCluster deploys: virtual Services by name, and with fallbackHostCluster
    host Services too (upstream pkg/coredns/template.go forwards to the control plane's
    nameserver, the host's kube-dns)."""
    core = client.CoreV1Api(kube)
    host_ns, ns = await new_namespace(kube, "dnshost"), await new_namespace(kube)
    await core.create_namespaced_pod(host_ns, python_pod(
        "hostweb", ["-m", "http.server", "18501", "--directory=/tmp"], restart="Always", ports=[18501]))
    await core.create_namespaced_service(host_ns, {"metadata": {"name": "hostweb"}, "spec": {
        "selector": {"test": "hostweb"}, "ports": [{"port": 18501}]}})
    await install(cluster, "vc", ns, {"networking": {"advanced": {"fallbackHostCluster": True}}})
    await wait_ready(kube, "vc", ns)
    vapi = await virtual_client(kube, "vc", ns)
    try:
        vcore = client.CoreV1Api(vapi)
        await vcore.create_namespaced_service("default", {"metadata": {"name": "vweb"}, "spec": {
            "selector": {"test": "nobody"}, "ports": [{"port": 80}]}})
        names = ["kubernetes.default.svc.cluster.local", "vweb", "nope.default.svc.cluster.local",
                 f"hostweb.{host_ns}.svc.cluster.local"]
        pod = python_pod("resolve", ["-c", RESOLVE, ",".join(names)])
        await vcore.create_namespaced_pod("default", pod)
        done = await pod_phase(vcore, "default", "resolve", "Succeeded", "Failed", timeout=120)
        message = done.status.container_statuses[0].state.terminated.message
        assert done.status.phase == "Succeeded", message
        found = json.loads(message)
        virtual_kubernetes = await vcore.read_namespaced_service("kubernetes", "default")
        vweb = await vcore.read_namespaced_service("vweb", "default")
        hostweb = await core.read_namespaced_service("hostweb", host_ns)
        assert found["kubernetes.default.svc.cluster.local"] == virtual_kubernetes.spec.cluster_ip
        assert found["vweb"] == vweb.spec.cluster_ip   # the short name, through the search list
        assert found["nope.default.svc.cluster.local"].startswith("error")
        # not a virtual name: CoreDNS forwarded it to the host's DNS, which knows the host Service
        assert found[f"hostweb.{host_ns}.svc.cluster.local"] == hostweb.spec.cluster_ip
        assert found["http"] == 200
        vdns = await core.read_namespaced_service("kube-dns-x-kube-system-x-vc", ns)
        assert found["resolv.conf"].startswith(f"nameserver {vdns.spec.cluster_ip}\n"), found["resolv.conf"]
    finally:
        await vapi.close()
        await helm(cluster, "uninstall", "vc", "-n", ns, check=False)
        for namespace in (ns, host_ns):
            await core.delete_namespace(namespace)


async def test_scale_to_zero_keeps_synced_pods_running_and_resume_deletes_bare_pods(kube, vcluster, cluster):
    """The dangerous part: scaling the StatefulSet to 0 stops only the control plane."""
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    await vcore.create_namespaced_pod("default", python_pod("bare", "import time; time.sleep(600)"))
    await pod_phase(vcore, "default", "bare", "Running")
    await vapi.close()
    await scale(kube, ns, 0)
    await gone(core.read_namespaced_pod, "vc-0", ns, what="control plane pod gone")
    host_pod = await core.read_namespaced_pod("bare-x-default-x-vc", ns)
    assert host_pod.status.phase == "Running" and not host_pod.metadata.deletion_timestamp
    # what `vcluster pause` does next: delete the host pods managed by the vCluster
    await core.delete_collection_namespaced_pod(ns, label_selector="vcluster.loft.sh/managed-by=vc")
    await gone(core.read_namespaced_pod, "bare-x-default-x-vc", ns, what="host pod deleted")
    await scale(kube, ns, 1)
    await wait_ready(kube, "vc", ns)
    vapi2 = await virtual_client(kube, "vc", ns)
    try:
        vcore2 = client.CoreV1Api(vapi2)
        await gone(vcore2.read_namespaced_pod, "bare", "default", what="bare virtual pod deleted on resume")
        # controller-owned pods come back: CoreDNS is re-created on the host
        async def coredns():
            pods = await core.list_namespaced_pod(ns, label_selector="k8s-app=vcluster-kube-dns")
            return [p for p in pods.items if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        await wait_for(coredns, timeout=60, what="CoreDNS host pod after resume")
    finally:
        await vapi2.close()


async def test_the_vcluster_cli_and_the_spawner_pause_and_resume_each_others_vclusters(kube, cluster, vcluster):
    """An operator's `vcluster pause`/`resume` (upstream's CLI, pkg/cli/pause_helm.go and
    resume_helm.go) and the spawner's sleep and wake (vcluster_spawner/vcluster.py) read and
    write the same marks, so either side can undo the other. And two upstream refusals: resume
    of a control plane scaled down without a pause, and pause of one the platform's sleep mode
    holds (label loft.sh/sleep-mode, pkg/platform/sleepmode) is left to the platform."""
    ns, vapi = vcluster
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    ops = VClusterOps(core, apps, Helm(str(cluster.binaries / "helm")))
    ref = Ref(ns, "vc")
    await client.CoreV1Api(vapi).create_namespaced_pod("default", python_pod("sleeper", "import time; time.sleep(600)"))
    await pod_phase(core, ns, "sleeper-x-default-x-vc", "Running")

    await ops.sleep(ref)
    assert (await ops.status(ref)).state == State.ASLEEP
    _, out = await vcluster_cli(cluster, "resume", "vc", "-n", ns)
    sts = await apps.read_namespaced_stateful_set("vc", ns)
    assert sts.spec.replicas == 1 and "loft.sh/paused" not in (sts.metadata.annotations or {}), out
    await wait_ready(kube, "vc", ns)

    _, out = await vcluster_cli(cluster, "pause", "vc", "-n", ns)
    assert (await ops.status(ref)).state == State.ASLEEP, out
    await gone(core.read_namespaced_pod, "vc-0", ns, what="the control plane the CLI paused")

    async def synced_pods():
        return (await core.list_namespaced_pod(ns, label_selector="vcluster.loft.sh/managed-by=vc")).items
    # the CLI deletes them before it exits; each then takes up to its grace period to go
    assert all(p.metadata.deletion_timestamp for p in await synced_pods()), out
    await wait_for(lambda: _none(synced_pods), timeout=60, what="the synced pods the CLI's pause deleted gone")
    await ops.wake(ref)
    await wait_ready(kube, "vc", ns)

    await scale(kube, ns, 0)
    await gone(core.read_namespaced_pod, "vc-0", ns, what="the control plane scaled down")
    code, out = await vcluster_cli(cluster, "resume", "vc", "-n", ns, check=False)
    assert code != 0 and "is scaled down but not paused" in out, out
    assert (await apps.read_namespaced_stateful_set("vc", ns)).spec.replicas == 0

    await apps.patch_namespaced_stateful_set("vc", ns, {"metadata": {"labels": {"loft.sh/sleep-mode": "true"}}})
    code, out = await vcluster_cli(cluster, "pause", "vc", "-n", ns, check=False)
    assert code == 0 and "is already sleeping" in out, out
    assert "loft.sh/paused" not in ((await apps.read_namespaced_stateful_set("vc", ns)).metadata.annotations or {})


async def test_managed_host_orphans_are_deleted_at_start_up(kube, vcluster):
    ns, vapi = vcluster
    core = client.CoreV1Api(kube)
    await vapi.close()
    await scale(kube, ns, 0)
    await gone(core.read_namespaced_pod, "vc-0", ns, what="control plane pod gone")
    hname = host_name("ghost", "default", "vc")
    orphan = {"metadata": {"name": hname, "labels": {"vcluster.loft.sh/managed-by": "vc",
                                                      "vcluster.loft.sh/namespace": "default"},
                           "annotations": {"vcluster.loft.sh/object-name": "ghost",
                                           "vcluster.loft.sh/object-namespace": "default",
                                           "vcluster.loft.sh/object-kind": "/v1, Kind=ConfigMap",
                                           "vcluster.loft.sh/object-host-name": hname,
                                           "vcluster.loft.sh/object-host-namespace": ns}},
              "data": {"k": "v"}}
    await core.create_namespaced_config_map(ns, orphan)
    kept = {"metadata": {"name": "not-managed"}, "data": {"k": "v"}}
    await core.create_namespaced_config_map(ns, kept)
    escaped = copy.deepcopy(orphan)
    escaped_name = host_name("escaped", "default", "vc")
    escaped["metadata"].update(name=escaped_name)
    escaped["metadata"]["annotations"].update({"vcluster.loft.sh/object-name": "escaped",
                                               "vcluster.loft.sh/object-host-name": escaped_name,
                                               "vcluster.loft.sh/skip-backsync": "true"})
    await core.create_namespaced_config_map(ns, escaped)
    await scale(kube, ns, 1)
    await wait_ready(kube, "vc", ns)
    await gone(core.read_namespaced_config_map, hname, ns, what="orphan deleted at start-up")
    await core.read_namespaced_config_map("not-managed", ns)  # unmanaged objects are left alone
    await core.read_namespaced_config_map(escaped_name, ns)   # the skip-backsync escape hatch


# ---- storage -----------------------------------------------------------------------------------

async def virtual_pvc(vcore, name="home", storage_class="local-rwx", volume_name=None):
    spec = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": storage_class}
    if volume_name:
        spec["volumeName"] = volume_name
    await vcore.create_namespaced_persistent_volume_claim("default", {"metadata": {"name": name}, "spec": spec})

    async def bound():
        pvc = await vcore.read_namespaced_persistent_volume_claim(name, "default")
        return pvc if pvc.status.phase == "Bound" else None
    return await wait_for(bound, timeout=60, what=f"virtual PVC {name} bound")


async def test_virtual_pvc_is_copied_verbatim_with_status_volume_name_and_fake_pv(kube, vcluster):
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    vpvc = await virtual_pvc(vcore)
    hpvc = await core.read_namespaced_persistent_volume_claim("home-x-default-x-vc", ns)
    assert hpvc.spec.storage_class_name == "local-rwx" and hpvc.spec.access_modes == ["ReadWriteMany"]
    assert vpvc.spec.volume_name == hpvc.spec.volume_name
    assert hpvc.metadata.owner_references[0].name == "vc"
    fake = await vcore.read_persistent_volume(hpvc.spec.volume_name)
    assert fake.spec.flex_volume.driver == "fake" and fake.spec.persistent_volume_reclaim_policy == "Delete"


async def test_deleting_the_virtual_pvc_deletes_the_host_pvc(kube, vcluster):
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    await virtual_pvc(vcore)
    await vcore.delete_namespaced_persistent_volume_claim("home", "default")
    await gone(core.read_namespaced_persistent_volume_claim, "home-x-default-x-vc", ns, what="host PVC deleted")


async def test_helm_uninstall_garbage_collects_synced_pvcs_and_pods_but_keeps_data_pvc(kube, cluster, vcluster):
    """The dangerous part: user PVCs synced to the host die with the release (upstream #244)."""
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    await virtual_pvc(vcore)
    await vcore.create_namespaced_pod("default", python_pod("sleeper", "import time; time.sleep(600)"))
    await pod_phase(vcore, "default", "sleeper", "Running")
    await vapi.close()
    await helm(cluster, "uninstall", "vc", "-n", ns)
    await gone(core.read_namespaced_persistent_volume_claim, "home-x-default-x-vc", ns, what="synced PVC GC'd")
    await gone(core.read_namespaced_pod, "sleeper-x-default-x-vc", ns, what="synced pod GC'd")
    await gone(core.read_namespaced_secret, "vc-vc", ns, what="vc-N GC'd")
    data = await core.read_namespaced_persistent_volume_claim("data-vc-0", ns)
    assert not data.metadata.deletion_timestamp


async def test_reinstall_with_retained_data_revives_the_virtual_state(kube, cluster, vcluster):
    """A retained data-N-0 brings the old virtual cluster back (upstream #29): the virtual PVC
    returns and gets a new host PVC with the old volumeName, which never binds once its PV is gone.

    The control plane is stopped before the uninstall. With its syncer still running, the
    garbage collector's deletion of the host PVC is a host-side deletion of a synced object, and
    the syncer deletes the virtual PVC too; whether that happens before the terminating syncer
    exits is a race (it made this test flaky), which is why upstream calls the revival best-effort."""
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    vpvc = await virtual_pvc(vcore)
    old_volume = vpvc.spec.volume_name
    await vcore.create_namespaced_config_map("default", {"metadata": {"name": "marker"}, "data": {"a": "b"}})
    await vapi.close()
    await scale(kube, ns, 0)
    await gone(core.read_namespaced_pod, "vc-0", ns, what="control plane stopped")
    await helm(cluster, "uninstall", "vc", "-n", ns)
    await gone(core.read_namespaced_persistent_volume_claim, "home-x-default-x-vc", ns, what="synced PVC GC'd")
    await gone(core.read_persistent_volume, old_volume, what="its Delete-policy volume removed")
    await install(cluster, "vc", ns)
    await wait_ready(kube, "vc", ns)
    vapi2 = await virtual_client(kube, "vc", ns)
    try:
        vcore2 = client.CoreV1Api(vapi2)
        assert (await vcore2.read_namespaced_config_map("marker", "default")).data == {"a": "b"}

        async def recreated():
            return await core.read_namespaced_persistent_volume_claim("home-x-default-x-vc", ns)
        hpvc = await wait_for(recreated, timeout=60, what="host PVC re-created from the revived virtual PVC")
        assert hpvc.spec.volume_name == old_volume
        async def pending():
            return (await core.read_namespaced_persistent_volume_claim("home-x-default-x-vc", ns)).status.phase == "Pending"
        await holds(pending, seconds=2, what="the re-created host PVC stays Pending")
    finally:
        await vapi2.close()


async def test_deleting_data_pvc_gives_a_fresh_virtual_cluster(kube, cluster, vcluster):
    ns, vapi = vcluster
    vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
    await vcore.create_namespaced_config_map("default", {"metadata": {"name": "marker"}, "data": {"a": "b"}})
    await vapi.close()
    await helm(cluster, "uninstall", "vc", "-n", ns)
    await core.delete_namespaced_persistent_volume_claim("data-vc-0", ns)
    await gone(core.read_namespaced_persistent_volume_claim, "data-vc-0", ns, what="data PVC deleted")
    await install(cluster, "vc", ns)
    await wait_ready(kube, "vc", ns)
    vapi2 = await virtual_client(kube, "vc", ns)
    try:
        with pytest.raises(ApiException) as missing:
            await client.CoreV1Api(vapi2).read_namespaced_config_map("marker", "default")
        assert missing.value.status == 404
    finally:
        await vapi2.close()


# ---- secrets from the host -------------------------------------------------------------------

async def test_from_host_secret_mappings_are_one_way_and_exact(kube, cluster):
    core = client.CoreV1Api(kube)
    ns = await new_namespace(kube)
    source_ns = f"{ns}-secrets"
    await core.create_namespace({"metadata": {"name": source_ns}})
    await core.create_namespaced_secret(source_ns, {"metadata": {"name": "s3"}, "stringData": {"key": "v1"}})
    await core.create_namespaced_secret(source_ns, {"metadata": {"name": "other"}, "stringData": {"key": "x"}})
    await install(cluster, "vc", ns, {"sync": {"fromHost": {"secrets": {
        "enabled": True, "mappings": {"byName": {f"{source_ns}/s3": "default/s3-creds"}}}}}})
    await wait_ready(kube, "vc", ns)
    vapi = await virtual_client(kube, "vc", ns)
    vcore = client.CoreV1Api(vapi)

    async def value():
        s = await vcore.read_namespaced_secret("s3-creds", "default")
        return base64.b64decode(s.data["key"]).decode()
    try:
        assert await wait_for(value, timeout=30, what="secret synced from the host") == "v1"
        # the admin kubeconfig vc-N and unmapped secrets stay out
        names = {s.metadata.name for s in (await vcore.list_secret_for_all_namespaces()).items}
        assert not names & {"vc-vc", "other", "vc-certs", "s3"}
        # host changes propagate; virtual edits are reverted; a deleted copy comes back
        await core.patch_namespaced_secret("s3", source_ns, {"stringData": {"key": "v2"}})
        await wait_for(lambda: _equals(value, "v2"), timeout=30, what="host update propagated")
        await vcore.patch_namespaced_secret("s3-creds", "default", {"stringData": {"key": "tampered"}})
        await wait_for(lambda: _equals(value, "v2"), timeout=30, what="virtual edit reverted")
        await vcore.delete_namespaced_secret("s3-creds", "default")
        await wait_for(lambda: _equals(value, "v2"), timeout=30, what="deleted copy re-created")
        await core.delete_namespaced_secret("s3", source_ns)
        await gone(vcore.read_namespaced_secret, "s3-creds", "default", what="host delete propagated")
    finally:
        await vapi.close()
        await helm(cluster, "uninstall", "vc", "-n", ns)


async def _equals(get, expected):
    return await get() == expected


async def test_a_mapped_host_namespace_made_after_the_start_is_imported_from(kube, cluster):
    """Upstream's documentation (vcluster-docs#458) says mapped host namespaces must exist when
    the vCluster starts; 0.36.1 does not enforce it: the control plane starts, watches the
    namespace (pkg/syncer/from_host_syncer.go, a multi-namespace cache), and imports the Secret
    once it is made. (The emulation refused to start; the real one corrected it.)"""
    core = client.CoreV1Api(kube)
    ns = await new_namespace(kube)
    source_ns = f"{ns}-later"
    await install(cluster, "vc", ns, {"sync": {"fromHost": {"secrets": {
        "enabled": True, "mappings": {"byName": {f"{source_ns}/s3": "default/s3"}}}}}})
    await wait_ready(kube, "vc", ns)
    vapi = await virtual_client(kube, "vc", ns)
    try:
        vcore = client.CoreV1Api(vapi)
        await core.create_namespace({"metadata": {"name": source_ns}})
        await core.create_namespaced_secret(source_ns, {"metadata": {"name": "s3"}, "stringData": {"key": "late"}})

        async def imported():
            return base64.b64decode((await vcore.read_namespaced_secret("s3", "default")).data["key"]).decode()
        assert await wait_for(imported, timeout=60, what="the secret of a namespace made later imported") == "late"
    finally:
        await vapi.close()
        await helm(cluster, "uninstall", "vc", "-n", ns)
        await core.delete_namespace(source_ns)


# ---- settings -----------------------------------------------------------------------------------

async def test_init_manifests_exist_before_the_syncer_and_set_owner_false(kube, cluster):
    ns = await new_namespace(kube)
    manifests = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-init, namespace: default}\ndata: {a: b}\n"
    await install(cluster, "vc", ns, {"experimental": {"deploy": {"vcluster": {"manifests": manifests}},
                                                       "syncSettings": {"setOwner": False}}})
    await wait_ready(kube, "vc", ns)
    vapi = await virtual_client(kube, "vc", ns)
    try:
        vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
        assert (await vcore.read_namespaced_config_map("from-init", "default")).data == {"a": "b"}
        await vcore.create_namespaced_pod("default", python_pod("p", "import time; time.sleep(600)"))
        await pod_phase(vcore, "default", "p", "Running")
        hpod = await core.read_namespaced_pod("p-x-default-x-vc", ns)
        assert not hpod.metadata.owner_references   # setOwner: false
    finally:
        await vapi.close()
        await helm(cluster, "uninstall", "vc", "-n", ns)
    # without owners the synced pod outlives the release (the cost of setOwner: false)
    async def running():
        return (await client.CoreV1Api(kube).read_namespaced_pod("p-x-default-x-vc", ns)).status.phase == "Running"
    await holds(running, seconds=3, what="the synced pod outlives its release")
    await client.CoreV1Api(kube).delete_namespace(ns)


async def test_service_accounts_to_host_when_enabled(kube, cluster):
    ns = await new_namespace(kube)
    await install(cluster, "vc", ns, {"sync": {"toHost": {"serviceAccounts": {"enabled": True}}}})
    await wait_ready(kube, "vc", ns)
    vapi = await virtual_client(kube, "vc", ns)
    try:
        vcore, core = client.CoreV1Api(vapi), client.CoreV1Api(kube)
        await vcore.create_namespaced_service_account("default", {"metadata": {"name": "worker"}})
        body = python_pod("p", "import time; time.sleep(600)")
        body["spec"]["serviceAccountName"] = "worker"
        await vcore.create_namespaced_pod("default", body)
        await pod_phase(vcore, "default", "p", "Running")
        hpod = await core.read_namespaced_pod("p-x-default-x-vc", ns)
        assert hpod.spec.service_account_name == "worker-x-default-x-vc"
        sa = await core.read_namespaced_service_account("worker-x-default-x-vc", ns)
        assert sa.automount_service_account_token is False
    finally:
        await vapi.close()
        await helm(cluster, "uninstall", "vc", "-n", ns)


async def _none(listing) -> bool:
    return not await listing()

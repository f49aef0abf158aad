"""The local cluster is a real Kubernetes: real API server, controllers, scheduler, and pods
that run as real processes (pytest -m cluster)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from localcluster.kube import api_client
from localcluster.processes import wait_for

from .helpers import gone, pod_phase, pod_ready, processes_matching, python_pod

pytestmark = pytest.mark.cluster


async def test_server_reports_its_real_version(kube):
    info = await client.VersionApi(kube).get_code()
    assert info.git_version == "v1.36.3"
    nodes = await client.CoreV1Api(kube).list_node()
    ready = {n.metadata.name: [c.status for c in n.status.conditions if c.type == "Ready"] for n in nodes.items}
    assert ready == {"local-node-0": ["True"]}


async def test_pod_runs_as_real_process_on_unique_pod_ip_and_stops_on_delete(kube, namespace):
    core = client.CoreV1Api(kube)
    port = 18080
    marker = f"--directory=/tmp/{namespace}"  # unique to this test's processes
    os.makedirs(f"/tmp/{namespace}", exist_ok=True)
    for name in ("web-a", "web-b"):
        await core.create_namespaced_pod(namespace, python_pod(
            name, ["-m", "http.server", str(port), marker], restart="Always", ports=[port]))
    a = await pod_ready(core, namespace, "web-a")
    b = await pod_ready(core, namespace, "web-b")
    assert a.status.pod_ip != b.status.pod_ip
    assert a.status.pod_ip.startswith("127.") and a.spec.node_name == "local-node-0"
    # Both listen on the same port, each on its own pod IP, as in separate network namespaces.
    for ip in (a.status.pod_ip, b.status.pod_ip):
        reader, writer = await asyncio.open_connection(ip, port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.0 200")
        writer.close()
    assert len(processes_matching(marker)) == 2

    await core.delete_namespaced_pod("web-a", namespace)
    await gone(core.read_namespaced_pod, "web-a", namespace, what="pod web-a deleted by the kubelet")
    with pytest.raises(OSError):
        await asyncio.open_connection(a.status.pod_ip, port)
    assert len(processes_matching(marker)) == 1


async def test_exit_codes_and_restart_policy(kube, namespace):
    core = client.CoreV1Api(kube)
    await core.create_namespaced_pod(namespace, python_pod("ok", "print('done')"))
    await core.create_namespaced_pod(namespace, python_pod("fails", "import sys; sys.exit(3)"))
    await core.create_namespaced_pod(namespace, python_pod("retries", "import sys; sys.exit(1)", restart="OnFailure"))
    ok = await pod_phase(core, namespace, "ok", "Succeeded")
    assert ok.status.container_statuses[0].state.terminated.exit_code == 0
    failed = await pod_phase(core, namespace, "fails", "Failed")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 3

    async def restarted():
        pod = await core.read_namespaced_pod("retries", namespace)
        statuses = pod.status.container_statuses or []
        return statuses and statuses[0].restart_count >= 1
    await wait_for(restarted, timeout=30, what="OnFailure restart")
    pod = await core.read_namespaced_pod("retries", namespace)
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 1


async def test_each_container_start_has_a_home_of_its_own(kube, namespace, cluster):
    """HOME is the container's own and empty at every start, as a container's /root is: pods
    here share this machine's file system, and vCluster reads ~/.kube/config before its
    in-cluster config (a kubeconfig left there by another pod hid upstream's one-vCluster-per-
    namespace refusal, docs/real-vcluster.md)."""
    core = client.CoreV1Api(kube)
    code = ("import os, pathlib, sys; home = pathlib.Path(os.environ['HOME']); first = pathlib.Path('/data/first');"
            "print('home', home, 'left-over' if (home / 'mine').exists() else 'empty', flush=True);"
            "(home / 'mine').write_text('x');"
            "sys.exit(0 if first.exists() else first.write_text('') or 1)")   # a restart, then done
    await core.create_namespaced_pod(namespace, python_pod(
        "home", code, restart="OnFailure", volumes=[{"name": "data", "emptyDir": {}}],
        mounts=[{"name": "data", "mountPath": "/data"}]))
    pod = await pod_phase(core, namespace, "home", "Succeeded", "Failed")
    log = (cluster.state_dir / "pods" / f"{namespace}_home_{pod.metadata.uid}" / "main.log").read_text()
    starts = [line.split() for line in log.splitlines() if line.startswith("home ")]
    assert [state for _, _, state in starts] == ["empty", "empty"], log
    assert starts[0][1] != os.path.expanduser("~"), "the machine's home is not the container's"


async def test_env_secrets_configmaps_and_service_account_token_are_mounted(kube, namespace):
    core = client.CoreV1Api(kube)
    await core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"pw": "s3cr3t"}})
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"greeting": "hi"}})
    check = (
        "import os, sys, json;"
        "t=open('/var/run/secrets/kubernetes.io/serviceaccount/token').read();"
        "ns=open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read();"
        "ok=(open('/etc/localcluster-test/creds/pw').read()=='s3cr3t' and os.environ['GREETING']=='hi'"
        " and os.environ['POD_IP']==os.environ['LOCALCLUSTER_POD_IP'] and os.getcwd()=='/srv/localcluster-test/work'"
        " and t.count('.')==2 and ns==os.environ['NS'] and os.environ['KUBERNETES_SERVICE_HOST']);"
        "sys.exit(0 if ok else 1)"
    )
    body = python_pod("env", check, volumes=[{"name": "creds", "secret": {"secretName": "creds"}}],
                      mounts=[{"name": "creds", "mountPath": "/etc/localcluster-test/creds", "readOnly": True}])
    c = body["spec"]["containers"][0]
    c["workingDir"] = "/srv/localcluster-test/work"
    c["env"] = [
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    await core.create_namespaced_pod(namespace, body)
    pod = await pod_phase(core, namespace, "env", "Succeeded", "Failed")
    assert pod.status.phase == "Succeeded", pod.status.container_statuses[0].state.terminated.message
    # The mount was private to the pod: the host sees only the empty mount point.
    assert not Path("/etc/localcluster-test/creds/pw").exists()


async def test_unmapped_image_waits_as_an_image_that_cannot_be_pulled(kube, namespace):
    """Pending with ImagePullBackOff, not Failed: a controller would re-create a failed pod in a
    tight loop (a ReplicaSet did, ~365 times in 3 minutes, docs/real-vcluster.md)."""
    core = client.CoreV1Api(kube)
    await core.create_namespaced_pod(namespace, python_pod("odd", "pass", image="example.org/unknown:1"))

    async def waiting():
        pod = await core.read_namespaced_pod("odd", namespace)
        states = [c.state.waiting for c in pod.status.container_statuses or [] if c.state.waiting]
        return (pod, states[0]) if states and states[0].reason == "ImagePullBackOff" else None
    pod, state = await wait_for(waiting, timeout=60, what="odd waiting for its image")
    assert pod.status.phase == "Pending"
    assert "not mapped to a local command" in state.message


async def test_https_readiness_probe_is_probed_over_tls(kube, namespace):
    """The real vCluster's probes are HTTPS on 8443; an http:// probe would never succeed."""
    core = client.CoreV1Api(kube)
    serve = (
        "import http.server, ssl, subprocess, os\n"
        "subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',"
        " '-nodes', '-subj', '/CN=probe', '-days', '1', '-keyout', '/tmp/k', '-out', '/tmp/c'], check=True,"
        " capture_output=True)\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain('/tmp/c', '/tmp/k')\n"
        "server = http.server.HTTPServer((os.environ['POD_IP'], 8443), http.server.SimpleHTTPRequestHandler)\n"
        "server.socket = ctx.wrap_socket(server.socket, server_side=True)\n"
        "server.serve_forever()\n")
    pod = python_pod("tls", serve, volumes=[{"name": "tmp", "emptyDir": {}}],
                     mounts=[{"name": "tmp", "mountPath": "/tmp"}])
    container = pod["spec"]["containers"][0]
    container["env"] = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    container["readinessProbe"] = {"httpGet": {"port": 8443, "path": "/", "scheme": "HTTPS"}, "periodSeconds": 1}
    await core.create_namespaced_pod(namespace, pod)
    await pod_ready(core, namespace, "tls", timeout=60)


def test_volume_at_tmp_does_not_hide_sources_under_tmp(tmp_path):
    """A volume mounted at /tmp (the real vCluster's pod has one) must not hide the other
    volumes' sources when they live under /tmp: podexec opens them all before mounting."""
    base = Path("/tmp") / f"podexec-{uuid.uuid4().hex[:8]}"
    for d in ("tmp-volume", "data", "out"):
        (base / d).mkdir(parents=True)
    (base / "data" / "marker").write_text("found")
    spec = tmp_path / "spec.json"
    inside = "/localcluster-test-podexec"   # mount points are made on the host: out of the way
    spec.write_text(json.dumps({
        "argv": ["sh", "-c", f"cat {inside}/data/marker > {inside}/out/seen; ls /tmp >> {inside}/out/seen"],
        "env": {"PATH": os.environ["PATH"]}, "cwd": "/",
        "mounts": [[str(base / "tmp-volume"), "/tmp", False], [str(base / "data"), f"{inside}/data", True],
                   [str(base / "out"), f"{inside}/out", False]],
    }))
    try:
        result = subprocess.run([sys.executable, "-m", "localcluster.podexec", str(spec)], capture_output=True,
                                text=True, cwd=Path(__file__).parent.parent, timeout=30)
        assert result.returncode == 0, result.stderr
        assert (base / "out" / "seen").read_text().splitlines() == ["found"], "the data volume; /tmp is the empty volume"
    finally:
        shutil.rmtree(base)


def test_clusters_side_by_side_never_share_a_loopback_range(tmp_path):
    """make test runs a local cluster per worker: a range held by a running cluster (another
    process) is never drawn again while it lives, and when all are held the error says so."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}   # the range locks' directory, for this test alone
    claim = "from localcluster.controlplane import _claim_range as claim; import sys; "
    holder = subprocess.Popen([sys.executable, "-c", claim + "print(*[claim(range(96, 128)) for _ in range(31)]);"
                               " sys.stdout.flush(); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                              cwd=Path(__file__).parent.parent)
    try:
        held = set(holder.stdout.readline().split())
        assert len(held) == 31
        other = subprocess.run([sys.executable, "-c", claim + "print(claim(range(96, 128))); claim(range(96, 128))"],
                               capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent, timeout=30)
        last = other.stdout.split()[0]
        assert last not in held and last.startswith("127.") and last.endswith(".0.0/16")
        assert "is held by a running local cluster" in other.stderr
    finally:
        holder.stdin.close()
        holder.wait(10)


async def test_rwx_volume_written_by_one_pod_is_read_by_another(kube, namespace):
    core = client.CoreV1Api(kube)
    await core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "shared"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "local-rwx",
                 "resources": {"requests": {"storage": "1Gi"}}},
    })
    volume = {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}
    mount = {"name": "shared", "mountPath": "/srv/localcluster-test/shared"}
    await core.create_namespaced_pod(namespace, python_pod(
        "writer", f"open('/srv/localcluster-test/shared/f','w').write('{namespace}')", volumes=[volume], mounts=[mount]))
    await pod_phase(core, namespace, "writer", "Succeeded")
    await core.create_namespaced_pod(namespace, python_pod(
        "reader", f"import sys; sys.exit(open('/srv/localcluster-test/shared/f').read() != '{namespace}')",
        volumes=[volume], mounts=[mount]))
    reader = await pod_phase(core, namespace, "reader", "Succeeded", "Failed")
    assert reader.status.phase == "Succeeded"
    pvc = await core.read_namespaced_persistent_volume_claim("shared", namespace)
    assert pvc.status.phase == "Bound" and pvc.status.access_modes == ["ReadWriteMany"]


@pytest.mark.parametrize("storage_class,survives", [("local-rwx", False), ("local-rwx-retain", True)])
async def test_reclaim_policy_is_honoured(kube, namespace, cluster, storage_class, survives):
    core = client.CoreV1Api(kube)
    await core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "c"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                 "resources": {"requests": {"storage": "1Gi"}}},
    })

    async def bound():
        pvc = await core.read_namespaced_persistent_volume_claim("c", namespace)
        return pvc if pvc.status.phase == "Bound" else None
    pvc = await wait_for(bound, timeout=30, what="claim bound")
    pv_name = pvc.spec.volume_name
    data = cluster.state_dir / "volumes" / pv_name / "keep"
    data.write_text("important")
    await core.delete_namespaced_persistent_volume_claim("c", namespace)
    if survives:
        async def released():
            pv = await core.read_persistent_volume(pv_name)
            return pv.status.phase == "Released"
        await wait_for(released, timeout=30, what="volume released")
        assert data.read_text() == "important"
        await core.delete_persistent_volume(pv_name)
    else:
        await gone(core.read_persistent_volume, pv_name, what="Delete volume removed")
        assert not data.exists()


async def test_namespace_deletion_completes(kube):
    core = client.CoreV1Api(kube)
    ns = f"t-doomed-{uuid.uuid4().hex[:6]}"
    await core.create_namespace({"metadata": {"name": ns}})
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}})
    await core.create_namespaced_pod(ns, python_pod("sleeper", "import time; time.sleep(600)"))
    await pod_phase(core, ns, "sleeper", "Running")
    await core.delete_namespace(ns)
    await gone(core.read_namespace, ns, timeout=90, what=f"namespace {ns} deleted")


async def test_garbage_collector_deletes_owned_objects(kube, namespace):
    core = client.CoreV1Api(kube)
    owner = await core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "owned", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})
    await core.delete_namespaced_config_map("owner", namespace)
    await gone(core.read_namespaced_config_map, "owned", namespace, what="owned configmap collected")


async def test_restricted_identity_is_denied_by_rbac(kube, namespace, cluster):
    identity = cluster.mint_identity(f"alice-{namespace}", ("students",))
    rbac = client.RbacAuthorizationV1Api(kube)
    await rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
    await rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "alice"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "User", "name": identity.user, "apiGroup": "rbac.authorization.k8s.io"}]})
    alice = await api_client(identity.kubeconfig)
    try:
        core = client.CoreV1Api(alice)
        await core.list_namespaced_config_map(namespace)  # allowed
        for call in (core.list_namespaced_secret(namespace), core.list_namespace(),
                     core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})):
            with pytest.raises(ApiException) as denied:
                await call
            assert denied.value.status == 403
    finally:
        await alice.close()


async def test_statefulset_creates_pod_and_pvc_from_template(kube, namespace):
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    await apps.create_namespaced_stateful_set(namespace, {
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db", "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{
                "name": "main", "image": "registry.k8s.io/pause:3.10",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    })
    pod = await pod_ready(core, namespace, "db-0")
    assert pod.metadata.owner_references[0].kind == "StatefulSet"
    pvc = await core.read_namespaced_persistent_volume_claim("data-db-0", namespace)
    assert pvc.spec.storage_class_name == "local-rwo"  # the default class

    async def sts_ready():
        sts = await apps.read_namespaced_stateful_set("db", namespace)
        return sts.status.ready_replicas == 1
    await wait_for(sts_ready, timeout=30, what="statefulset ready")


async def test_service_cluster_ip_forwards_to_ready_pods(kube, namespace):
    core = client.CoreV1Api(kube)
    await core.create_namespaced_pod(namespace, python_pod(
        "svc-backend", ["-m", "http.server", "18081", "--directory=/tmp"], restart="Always", ports=[18081]))
    svc = await core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"test": "svc-backend"}, "ports": [{"name": "http", "port": 80, "targetPort": 18081}]},
    })
    assert svc.spec.cluster_ip.startswith("127.")
    await pod_ready(core, namespace, "svc-backend")

    async def answers():
        reader, writer = await asyncio.open_connection(svc.spec.cluster_ip, 80)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        line = await reader.readline()
        writer.close()
        return line.startswith(b"HTTP/1.0 200")
    await wait_for(answers, timeout=30, what="service cluster IP answering")


async def test_pods_resolve_services_through_the_cluster_dns(kube, namespace):
    """kube-dns is the real CoreDNS (localcluster/dns.py); a ClusterFirst pod's C library
    resolver reaches it through the resolv.conf the kubelet wrote and the UDP Service proxy."""
    core = client.CoreV1Api(kube)
    svc = await core.create_namespaced_service(namespace, {
        "metadata": {"name": "named"}, "spec": {"selector": {"test": "nobody"}, "ports": [{"port": 80}]}})
    code = (
        "import json, socket\n"
        "def ip(name):\n"
        "    try:\n"
        "        return socket.gethostbyname(name)\n"
        "    except OSError as e:\n"
        "        return 'error: %s' % e\n"
        f"found = {{n: ip(n) for n in ('named', 'named.{namespace}.svc.cluster.local', 'kubernetes.default',"
        " 'absent.default.svc.cluster.local')}\n"
        "found['resolv.conf'] = open('/etc/resolv.conf').read()\n"
        "open('/dev/termination-log', 'w').write(json.dumps(found))\n"
    )
    await core.create_namespaced_pod(namespace, python_pod("resolver", code))
    pod = await pod_phase(core, namespace, "resolver", "Succeeded", "Failed", timeout=60)
    message = pod.status.container_statuses[0].state.terminated.message
    assert pod.status.phase == "Succeeded", message
    found = json.loads(message)
    kube_dns = await core.read_namespaced_service("kube-dns", "kube-system")
    kubernetes = await core.read_namespaced_service("kubernetes", "default")
    assert found["resolv.conf"].startswith(f"nameserver {kube_dns.spec.cluster_ip}\nsearch {namespace}.svc.cluster.local ")
    assert found["named"] == found[f"named.{namespace}.svc.cluster.local"] == svc.spec.cluster_ip
    assert found["kubernetes.default"] == kubernetes.spec.cluster_ip
    assert found["absent.default.svc.cluster.local"].startswith("error")

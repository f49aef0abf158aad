"""Home storage, credentials and isolation end to end (pytest -m storage): a real hub and proxy,
real notebook servers in vClusters, files written and read through the Jupyter contents API,
commands run inside the notebook container (the local kubelet's exec), all on the real vCluster
0.36.1 (docs/real-vcluster.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from localcluster.podshell import exec_in_container
from localcluster.processes import wait_for
from vcluster_spawner.home import HOME_NAMESPACE_LABEL, RETIRED_HOME_LABEL
from vcluster_spawner.translate import host_name

from .helpers import gone
from .hub import Hub
from .vclusters import helm, virtual_client

pytestmark = pytest.mark.storage

SLEEP_ON_STOP = 'c.VClusterSpawner.stop_action = "sleep"\n'


def ref(user: str) -> tuple[str, str]:
    return f"vc-{user}", f"vc-{user}"


def contents_url(hub: Hub, user: str, path: str, server: str = "") -> str:
    return f"{hub.url}/user/{user}/{server + '/' if server else ''}api/contents/{path}"


async def write_file(hub: Hub, user: str, path: str, data: bytes, server: str = "") -> None:
    status, body = await hub.request("PUT", contents_url(hub, user, path, server), {
        "type": "file", "format": "base64", "content": base64.b64encode(data).decode()})
    assert status in (200, 201), (status, body)


async def read_file(hub: Hub, user: str, path: str, server: str = "") -> bytes:
    status, body = await hub.request("GET", contents_url(hub, user, path, server) + "?type=file&format=base64&content=1")
    assert status == 200, (path, status, body)
    return base64.b64decode(body["content"])


async def notebook_exec(cluster, user: str, code: str, server: str = "") -> tuple[int, str]:
    """Python code run in the notebook container (its env, mounts and pod IP)."""
    ns, name = ref(user)
    pod = host_name(f"jupyter-{user}" + (f"--{server}" if server else ""), "default", name)
    return await exec_in_container(cluster, ns, pod, "notebook", [sys.executable, "-c", code])


async def home_volume(kube, user: str) -> client.V1PersistentVolume:
    pvs = await client.CoreV1Api(kube).list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}=vc-{user}")
    assert len(pvs.items) == 1, [pv.metadata.name for pv in pvs.items]
    return pvs.items[0]


async def shut_down(hub: Hub) -> None:
    """Stop every server (their vClusters go to sleep and free the node), then the hub."""
    if hub.proc and hub.proc.poll() is None:
        _, users = await hub.api("GET", "/users")
        for user in users or []:
            for server in user.get("servers") or {}:
                try:
                    await hub.stop_server(user["name"], server)
                except (AssertionError, TimeoutError) as e:
                    print(f"could not stop {user['name']}/{server!r}: {e}")
    await hub.stop()


async def started(hub: Hub, user: str, server: str = "", options: dict | None = None) -> None:
    events = await hub.start_server(user, server, options)
    assert events[-1].get("ready"), (events[-3:], hub.log_tail())


# ---- the home survives everything ------------------------------------------------------------

async def stop_restart(hub, kube, cluster, user):
    await hub.stop_server(user)            # stop action: sleep
    await started(hub, user)
    return hub


async def teardown_and_recreate(hub, kube, cluster, user):
    """Dynamic teardown as `python -m vcluster_spawner delete` does it: release uninstalled and
    the control plane's data PVC deleted, so the vCluster comes back empty (U0)."""
    await hub.stop_server(user)
    subprocess.run([sys.executable, "-m", "vcluster_spawner", "-f", str(hub.workdir / "jupyterhub_config.py"),
                    "delete", user], check=True, env={**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig)},
                   cwd=hub.workdir, capture_output=True)
    await started(hub, user)
    return hub


async def uninstall_keeping_control_plane_data(hub, kube, cluster, user):
    """`helm uninstall` alone: garbage collection takes the synced host PVC, data-N-0 stays (U)."""
    await hub.stop_server(user)
    ns, name = ref(user)
    await helm(cluster, "uninstall", name, "-n", ns, "--wait")
    await home_claim_gone_and_volume_released(kube, user)
    await started(hub, user)
    return hub


async def user_deletes_the_claim(hub, kube, cluster, user):
    """The tenant deletes the home claim inside their vCluster while the server runs (V)."""
    ns, name = ref(user)
    vapi = await virtual_client(kube, name, ns)
    try:
        await client.CoreV1Api(vapi).delete_namespaced_persistent_volume_claim("home", "default")
    finally:
        await vapi.close()
    await hub.stop_server(user)
    await home_claim_gone_and_volume_released(kube, user)
    await started(hub, user)
    return hub


async def home_claim_gone_and_volume_released(kube, user):
    """The event really took the host claim (GC, or the syncer after the tenant's delete); only
    the spawner's Retain volume is left, Released."""
    ns, name = ref(user)
    core = client.CoreV1Api(kube)
    await gone(core.read_namespaced_persistent_volume_claim, host_name("home", "default", name), ns,
               timeout=60, what="the host home claim deleted")

    async def released():
        return (await home_volume(kube, user)).status.phase == "Released"
    await wait_for(released, timeout=60, what="the home volume Released")


async def hub_restart(hub, kube, cluster, user):
    await hub.stop()
    return await Hub(hub.workdir, cluster, SLEEP_ON_STOP, restart_of=hub).start()


EVENTS = [stop_restart, teardown_and_recreate, uninstall_keeping_control_plane_data, user_deletes_the_claim,
          hub_restart]


async def test_home_survives_every_lifecycle_event(cluster, kube, tmp_path):
    """On the real vCluster: its own syncer and helm uninstall's garbage collection take the
    synced claim, the control plane's data volume goes with a delete (docs/real-vcluster.md)."""
    user, cluster, kube = "hana", cluster, kube
    hub = await Hub(tmp_path / "hub", cluster, SLEEP_ON_STOP).start()
    files: dict[str, bytes] = {}
    try:
        await hub.add_user(user)
        await started(hub, user)
        volume = (await home_volume(kube, user)).metadata.name
        for cycle in range(2 * len(EVENTS)):   # each event twice
            event = EVENTS[cycle % len(EVENTS)]
            files[f"cycle-{cycle}.bin"] = secrets.token_bytes(64 * 1024)
            files["notes/log.txt"] = files.get("notes/log.txt", b"") + f"cycle {cycle}: {event.__name__}\n".encode()
            if cycle == 0:
                status, body = await hub.request("PUT", contents_url(hub, user, "notes"), {"type": "directory"})
                assert status in (200, 201), body
            for path in (f"cycle-{cycle}.bin", "notes/log.txt"):
                await write_file(hub, user, path, files[path])
            hub = await event(hub, kube, cluster, user)
            for path, data in files.items():
                assert await read_file(hub, user, path) == data, f"{path} differs after {event.__name__}"
            pv = await home_volume(kube, user)
            assert (pv.metadata.name, pv.spec.persistent_volume_reclaim_policy) == (volume, "Retain")
            assert pv.spec.claim_ref.name == host_name("home", "default", ref(user)[1])
    finally:
        await shut_down(hub)


async def test_named_servers_share_the_home_and_profiles_add_volumes(cluster, kube, tmp_path):
    # reference data the user keeps in a ConfigMap of their vCluster (a hostPath, as in a plain
    # KubeSpawner deployment, is refused: Pod Security and the admission policy)
    profiles = """
c.VClusterSpawner.profile_list = [
    {"display_name": "Standard", "slug": "standard", "default": True},
    {"display_name": "With shared data", "slug": "data", "kubespawner_override": {
        "volumes": [{"name": "shared", "configMap": {"name": "shared-data"}}],
        "volume_mounts": [{"name": "shared", "mountPath": "/srv/shared", "readOnly": True}]}},
]
"""
    hub = await Hub(tmp_path / "hub", cluster, SLEEP_ON_STOP + profiles).start()
    try:
        await hub.add_user("nina")
        await started(hub, "nina")
        vapi = await virtual_client(kube, *reversed(ref("nina")))
        try:
            await client.CoreV1Api(vapi).create_namespaced_config_map("default", {
                "metadata": {"name": "shared-data"}, "data": {"README": "read-only reference data\n"}})
        finally:
            await vapi.close()
        await started(hub, "nina", "second", {"profile": "data"})
        await write_file(hub, "nina", "from-default.txt", b"written by the default server\n")
        assert await read_file(hub, "nina", "from-default.txt", "second") == b"written by the default server\n"
        await write_file(hub, "nina", "from-second.txt", b"and back\n", "second")
        assert await read_file(hub, "nina", "from-second.txt") == b"and back\n"

        code, out = await notebook_exec(cluster, "nina", """
import os
print(open("/srv/shared/README").read().strip())
try:
    open("/srv/shared/new", "w")
    print("WRITABLE")
except OSError as e:
    print("read-only:", e.errno)
print("cwd", os.getcwd())
""", server="second")
        assert code == 0, out
        assert "read-only reference data" in out and "read-only: 30" in out and "WRITABLE" not in out, out
        assert "cwd /home/jovyan" in out, out
    finally:
        await shut_down(hub)


# ---- credentials, isolation, networking ------------------------------------------------------

ISOLATION_PROBE = """
import asyncio, json, os, ssl, sys
from kubernetes_asyncio import client, config

OTHER_NS, OTHER_API, HOST_API = sys.argv[1], sys.argv[2], sys.argv[3]

async def outcome(call):
    try:
        await call
        return "ok"
    except client.ApiException as e:
        return e.status

async def probe(api):
    core = client.CoreV1Api(api)
    namespaces = sorted(n.metadata.name for n in (await core.list_namespace()).items)
    return {
        "namespaces": namespaces,
        "create_configmap": await outcome(core.create_namespaced_config_map(
            "default", {"metadata": {"generateName": "probe-"}, "data": {"a": "b"}})),
        # a namespace that does not exist in this vCluster lists as empty
        "other_secrets": len((await core.list_namespaced_secret(OTHER_NS)).items),
    }

async def elsewhere(api, host):
    # the same credentials presented to another API server (TLS not verified, so that the
    # answer comes from the server's authentication)
    c = api.configuration
    other = client.Configuration()
    other.host, other.verify_ssl = host, False
    other.cert_file, other.key_file, other.api_key = c.cert_file, c.key_file, dict(c.api_key)
    async with client.ApiClient(other) as a:
        return await outcome(client.CoreV1Api(a).list_namespaced_secret(OTHER_NS))

async def main():
    result = {}
    async with await config.new_client_from_config(os.environ["KUBECONFIG"]) as api:
        result["kubeconfig"] = await probe(api)
        result["kubeconfig_at_other_vcluster"] = await elsewhere(api, OTHER_API)
        result["kubeconfig_at_host"] = await elsewhere(api, HOST_API)
    config.load_incluster_config()
    async with client.ApiClient() as api:
        result["service_account"] = await probe(api)
        result["service_account_at_other_vcluster"] = await elsewhere(api, OTHER_API)
        result["service_account_at_host"] = await elsewhere(api, HOST_API)
    import urllib.request
    with urllib.request.urlopen(os.environ["JUPYTERHUB_API_URL"], timeout=10) as r:
        result["hub_api"] = r.status
    print("RESULT" + json.dumps(result))

asyncio.run(main())
"""


async def test_users_manage_their_own_vcluster_and_nothing_else(cluster, kube, tmp_path):
    """Also: S3 credentials copied from an existing host Secret named by a template. On the real
    vCluster: the notebook's in-cluster token and the kubeconfig it was given are upstream's."""
    cluster, kube = cluster, kube
    core = client.CoreV1Api(kube)
    store = f"s3-store-{secrets.token_hex(3)}"
    await core.create_namespace({"metadata": {"name": store}})
    await core.create_namespaced_secret(store, {"metadata": {"name": "s3-amy"}, "stringData": {
        "AWS_ACCESS_KEY_ID": "amy", "AWS_SECRET_ACCESS_KEY": "amy-secret", "S3_BUCKET": "amy-bucket"}})
    # the object store's host Service, which notebooks reach by name
    objects = await core.create_namespaced_service(store, {"metadata": {"name": "objects"}, "spec": {
        "selector": {"app": "object-store"}, "ports": [{"port": 9000}]}})
    config = SLEEP_ON_STOP + f'c.VClusterSpawner.s3_credentials_secret_template = "{store}/s3-{{username}}"\n' + """
c.VClusterSpawner.user_namespace_objects = [{
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "notebooks-from-hub"}, "spec": {
    "podSelector": {"matchLabels": {"component": "singleuser-server", "vcluster.loft.sh/managed-by": "{vcluster}"}},
    "policyTypes": ["Ingress"],
    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "hub"}}}]}]}}]
"""
    hub = await Hub(tmp_path / "hub", cluster, config).start()
    try:
        for user in ("amy", "ben"):
            await hub.add_user(user)
        await asyncio.gather(started(hub, "amy"), started(hub, "ben"))
        ben_svc = await core.read_namespaced_service(*reversed(ref("ben")))
        targets = (ref("ben")[0], f"https://{ben_svc.spec.cluster_ip}:443", cluster.server)
        code, out = await notebook_exec(cluster, "amy", ISOLATION_PROBE.replace(
            "sys.argv[1], sys.argv[2], sys.argv[3]", repr(targets)))
        assert code == 0, out
        result = json.loads(out.split("RESULT", 1)[1])
        for identity in ("kubeconfig", "service_account"):
            seen = result[identity]
            # the user's own cluster: full control, and nothing of anybody else's
            assert seen["create_configmap"] == "ok", (identity, seen)
            assert "vc-ben" not in seen["namespaces"] and "default" in seen["namespaces"], (identity, seen)
            assert seen["other_secrets"] == 0, (identity, seen)
            assert result[f"{identity}_at_other_vcluster"] == 401, (identity, result)
            assert result[f"{identity}_at_host"] == 401, (identity, result)
        assert result["hub_api"] == 200, result
        # names: the notebook asks its vCluster's CoreDNS, which answers for the virtual cluster
        # (its `kubernetes` Service has the address of amy's host Service N) and forwards host
        # names to the host's DNS (fallbackHostCluster, set by the spawner)
        code, out = await notebook_exec(cluster, "amy", "import socket; print('IPS', *map(socket.gethostbyname, "
                                        f"['kubernetes.default', 'objects.{store}.svc.cluster.local']))")
        amy_svc = await core.read_namespaced_service(*reversed(ref("amy")))
        assert f"IPS {amy_svc.spec.cluster_ip} {objects.spec.cluster_ip}" in out, out
        # the namespace NetworkPolicy is rendered for the user and selects the real notebook pod
        ns, name = ref("amy")
        policy = await client.NetworkingV1Api(kube).read_namespaced_network_policy("notebooks-from-hub", ns)
        notebook = await core.read_namespaced_pod(host_name("jupyter-amy", "default", name), ns)
        assert policy.spec.pod_selector.match_labels.items() <= notebook.metadata.labels.items()
        code, out = await notebook_exec(cluster, "amy", "import os; print('BUCKET', os.environ['S3_BUCKET'])")
        assert "BUCKET amy-bucket" in out, out

        # ben, admin of his own vCluster, claims amy's home volume by name: the host refuses it
        amy_pv = (await home_volume(kube, "amy")).metadata.name
        ns, name = ref("ben")
        steal = f"steal-{secrets.token_hex(3)}"
        vapi = await virtual_client(kube, name, ns)
        try:
            await client.CoreV1Api(vapi).create_namespaced_persistent_volume_claim("default", {
                "metadata": {"name": steal},
                "spec": {"volumeName": amy_pv, "storageClassName": "local-rwx", "accessModes": ["ReadWriteMany"],
                         "resources": {"requests": {"storage": "1Gi"}}}})
            claim = host_name(steal, "default", name)

            async def refused():   # the host's admission refuses the synced claim (tests/test_security.py)
                events = await client.CoreV1Api(vapi).list_namespaced_event(
                    "default", field_selector=f"involvedObject.name={steal}")
                return [e.message for e in events.items if e.reason == "SyncError"]
            assert "is not reserved for namespace vc-ben" in (await wait_for(
                refused, timeout=60, what=f"the host refusing {claim}"))[0]
        finally:
            await vapi.close()
        with pytest.raises(client.ApiException) as absent:
            await core.read_namespaced_persistent_volume_claim(claim, ns)
        assert absent.value.status == 404
        pv = await core.read_persistent_volume(amy_pv)
        assert (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name) == ("vc-amy", host_name("home", "default", "vc-amy"))
    finally:
        await shut_down(hub)
        await core.delete_namespace(store)


async def test_no_secret_value_leaks_and_credentials_refresh(cluster, kube, tmp_path):
    """Canary values in the S3 credentials, searched (raw and base64) in the hub's log and
    database, the host and virtual events, and the host pod specs after a full lifecycle. On
    the real vCluster: its own secret sync imports the credentials and its events are searched."""
    cluster, kube = cluster, kube
    source = tmp_path / "s3-source.json"
    first, second = (f"canary-{secrets.token_hex(12)}" for _ in range(2))
    source.write_text(json.dumps({"AWS_ACCESS_KEY_ID": "cora", "AWS_SECRET_ACCESS_KEY": first,
                                  "AWS_ENDPOINT_URL": "https://s3.example.org", "S3_BUCKET": "cora-data"}))
    config = SLEEP_ON_STOP + f"""
import json
async def s3_from_vault(spawner):
    # stands in for a lookup with the user's auth_state
    auth_state = await spawner.user.get_auth_state()
    return json.load(open({str(source)!r}))
c.VClusterSpawner.s3_credentials = s3_from_vault
c.VClusterSpawner.sync_service_accounts_to_host = True
c.VClusterSpawner.external_api_host_template = "{{username}}.k8s.example.org"
"""
    hub = await Hub(tmp_path / "hub", cluster, config).start()
    core = client.CoreV1Api(kube)
    ns, name = ref("cora")
    evidence = []
    try:
        await hub.add_user("cora")
        await started(hub, "cora")
        check = """
import os
print("ENV", os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["S3_BUCKET"])
print("FILE", open("/var/run/secrets/jupyter/s3/AWS_SECRET_ACCESS_KEY").read())
print("KUBECONFIG", os.environ["KUBECONFIG"], os.path.exists(os.environ["KUBECONFIG"]))
import yaml
print("CONTEXT", yaml.safe_load(open(os.environ["KUBECONFIG"]))["current-context"])
print("CLUSTER", os.environ["VCLUSTER_NAME"], os.environ["VCLUSTER_HOST_NAMESPACE"], os.environ["VCLUSTER_STOP_ACTION"],
      os.environ["VCLUSTER_EPHEMERAL"])
"""
        code, out = await notebook_exec(cluster, "cora", check)
        assert code == 0 and f"ENV {first} cora-data" in out and f"FILE {first}" in out, out
        assert "KUBECONFIG /var/run/secrets/jupyter/kubeconfig/config True" in out, out
        # which cluster it is, by the name the hub's pages use, and that a stop puts it to sleep
        assert f"CONTEXT {name}\n" in out and f"CLUSTER {name} {ns} sleep false" in out, out

        # the ServiceAccount the spawner made for the notebook is synced to the host
        await wait_for(lambda: core.read_namespaced_service_account(host_name("notebook", "default", name), ns),
                       timeout=60, what="the notebook ServiceAccount on the host")
        # the external kubeconfig: the user's context, the public name in the serving certificate
        external = await core.read_namespaced_secret(f"vc-{name}-external", ns)
        kubeconfig = yaml.safe_load(base64.b64decode(external.data["config"]))
        assert kubeconfig["current-context"] == "cora"
        assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://cora.k8s.example.org"
        svc = await core.read_namespaced_service(name, ns)
        ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        ctx = ssl.create_default_context(cadata=ca)
        reader, writer = await asyncio.open_connection(svc.spec.cluster_ip, 443, ssl=ctx,
                                                       server_hostname="cora.k8s.example.org")
        writer.close()

        # refreshed on the next start
        source.write_text(source.read_text().replace(first, second))
        await hub.stop_server("cora")
        await started(hub, "cora")
        code, out = await notebook_exec(cluster, "cora", check)
        assert code == 0 and f"ENV {second} cora-data" in out, out

        events = await core.list_namespaced_event(ns)
        evidence.append(json.dumps(kube.sanitize_for_serialization(events)))
        pods = await core.list_namespaced_pod(ns)
        evidence.append(json.dumps(kube.sanitize_for_serialization(pods)))
        vapi = await virtual_client(kube, name, ns)
        try:
            vevents = await client.CoreV1Api(vapi).list_event_for_all_namespaces()
            evidence.append(json.dumps(vapi.sanitize_for_serialization(vevents)))
        finally:
            await vapi.close()
        await hub.stop_server("cora")
        status, body = await hub.api("DELETE", "/users/cora")
        assert status == 204, body
    finally:
        await shut_down(hub)
    for path in hub.workdir.rglob("*"):
        if path.is_file() and path.suffix != ".py" and "helm-" not in str(path):
            evidence.append(path.read_bytes().decode(errors="replace"))
    haystack = "\n".join(evidence)
    for canary in (first, second):
        for form in (canary, base64.b64encode(canary.encode()).decode()):
            assert form not in haystack, f"a secret value leaked ({form[:12]}...)"
    # the search did look where the values would be: the pod refers to the Secret, the log has the spawns
    assert host_name("s3-credentials", "default", name) in haystack and "Passing your credentials" in haystack


async def test_home_is_kept_when_the_user_is_removed_and_deleted_only_on_request(cluster, kube, tmp_path):
    hub = await Hub(tmp_path / "hub", cluster, SLEEP_ON_STOP).start()
    try:
        await hub.add_user("olga")
        await started(hub, "olga")
        await write_file(hub, "olga", "thesis.tex", b"\\documentclass{article}\n")
        pv = await home_volume(kube, "olga")
        directory = Path(pv.spec.host_path.path)
        await hub.stop_server("olga")
        status, body = await hub.api("DELETE", "/users/olga")
        assert status == 204, body
        # the namespace and the vCluster are gone, the home is not: kept, and retired (a newcomer
        # named olga gets a new one: tests/test_security.py)
        await wait_for(lambda: _namespace_gone(kube, "vc-olga"), timeout=120, what="namespace vc-olga deleted")
        kept = await client.CoreV1Api(kube).read_persistent_volume(pv.metadata.name)
        assert kept.metadata.labels[RETIRED_HOME_LABEL] == "vc-olga" and HOME_NAMESPACE_LABEL not in kept.metadata.labels
        assert (directory / "thesis.tex").read_bytes() == b"\\documentclass{article}\n"

        # only the explicit admin command deletes it
        env = {**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig)}
        command = [sys.executable, "-m", "vcluster_spawner", "-f", str(hub.workdir / "jupyterhub_config.py"),
                   "delete-home", "olga"]
        refused = subprocess.run(command, env=env, cwd=hub.workdir, capture_output=True, text=True)
        assert refused.returncode != 0 and "--yes-delete-data" in refused.stderr + refused.stdout
        assert directory.exists()
        done = subprocess.run(command + ["--yes-delete-data"], env=env, cwd=hub.workdir, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"home volume {pv.metadata.name} released for deletion" in done.stdout
        await wait_for(lambda: _absent(directory), timeout=60, what="home data deleted by its provisioner")
    finally:
        await shut_down(hub)


async def _namespace_gone(kube, name: str) -> bool:
    try:
        await client.CoreV1Api(kube).read_namespace(name)
        return False
    except client.ApiException as e:
        return e.status == 404


async def _absent(path: Path) -> bool:
    return not path.exists()


async def test_a_home_class_that_cannot_serve_homes_is_a_clear_message(cluster, kube, tmp_path):
    """home_storage_class "" means the host's default class; here that is local-rwo, which binds
    on first consumer: refused before anything is provisioned."""
    hub = await Hub(tmp_path / "hub", cluster, SLEEP_ON_STOP + 'c.VClusterSpawner.home_storage_class = ""\n').start()
    try:
        await hub.add_user("wfc")
        status, body = await hub.api("POST", "/users/wfc/server")
        if status == 202:   # the vCluster is created first: a fresh one takes longer than the hub waits
            message = (await hub.wait_progress("wfc"))[-1]["message"]
        else:
            assert status == 400, body
            message = body["message"]
        assert "home_storage_class 'local-rwo' binds on first consumer" in message, message
        claims = await client.CoreV1Api(kube).list_namespaced_persistent_volume_claim("vc-wfc")
        assert not [c for c in claims.items if c.metadata.name == "vcluster-spawner-home"]
    finally:
        await shut_down(hub)

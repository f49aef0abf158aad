"""The ownership gate attacked end to end (pytest -m security): a hub user whose name lands on
another user's vCluster gets nothing of it, from any caller. On the real vCluster 0.36.1, with a
real hub, its status page and lifecycle service, and the operator CLI.

How a name lands on another user's namespace: warm pool members were named ``vc-pool-`` and 10
hex digits before names grew their ``--pool`` mark (a user called ``pool-<those digits>`` then
mapped onto a claimed member), an operator's template can map two users together, an
administrator may have made the namespace. Here the templates are one fixed name, so both
users' templates give the victim's namespace, whatever the cause would be on a real hub.

Seen to get through before the gate (at 66247bb, where each caller used the name template):
the status page showed the attacker the victim's running vCluster with a kubeconfig download,
and the lifecycle service put the victim's vCluster to sleep in the middle of its start on
behalf of another user whose name mapped onto it (that user had no server). Each caller's gate
call removed on its own: docs/ablation.md.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid

import pytest
from kubernetes_asyncio import client

from localcluster.processes import free_port, wait_for

from .hub import Hub, quote

pytestmark = [pytest.mark.security, pytest.mark.hub]

RUN = uuid.uuid4().hex[:4]
ATTACKER = f"pool-{RUN}012345"      # what a user needed to be called to land on an old pool member
TARGET = f"vc-{ATTACKER}"           # an old member's name: vc-pool- and 10 hex digits
VICTIM, ADMIN = f"ben{RUN}", f"ana{RUN}"
SECRET_MARK = f"victims-cluster-admin-{RUN}"

COLLIDING = f'''
c.VClusterSpawner.vcluster_namespace_template = "{TARGET}"
c.VClusterSpawner.vcluster_name_template = "{TARGET}"
c.VClusterSpawner.stop_action = "sleep"
c.Authenticator.admin_users = {{"{ADMIN}"}}
c.VClusterHub.status_port = {free_port()}
c.VClusterHub.lifecycle_interval = 1
c.VClusterHub.lifecycle_grace_period = 2
c.VClusterSpawner.wake_ahead_min_interval = 0
c.VClusterSpawner.profile_list = [{{"display_name": "Default", "slug": "default", "default": True}}]
'''


async def fetch(http, url: str) -> tuple[int, str]:
    async with http.get(url) as r:
        return r.status, await r.text()


async def test_a_user_whose_name_lands_on_another_users_vcluster_gets_nothing_of_it(cluster, kube, tmp_path):
    hub = Hub(tmp_path / "hub", cluster, COLLIDING,
              snippets=("10-vcluster-spawner.py", "40-lifecycle-service.py", "50-status-service.py"))
    await hub.start()
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    sessions = []
    try:
        for user in (VICTIM, ATTACKER, ADMIN):
            await hub.add_user(user)
        assert (await hub.start_server(VICTIM))[-1].get("ready"), hub.log_tail()
        # the victim's vCluster exports a cluster-admin kubeconfig for outside use
        kubeconfig = f"apiVersion: v1\nkind: Config\n# {SECRET_MARK}\n".encode()
        await core.create_namespaced_secret(TARGET, {"metadata": {"name": f"vc-{TARGET}-external"},
                                                     "data": {"config": base64.b64encode(kubeconfig).decode()}})
        page = f"{hub.url}/services/vcluster-status/"

        # the status page: the attacker's row shows nothing of the victim's, the download refuses
        attacker = await hub.login(ATTACKER)
        sessions.append(attacker)
        status, html = await fetch(attacker, page)
        assert status == 200 and "class='state absent'" in html and SECRET_MARK not in html, html
        assert "kubeconfig</a>" not in html, html
        status, body = await fetch(attacker, f"{page}users/{quote(ATTACKER)}/kubeconfig")
        assert status == 404 and SECRET_MARK not in body, (status, body)
        # ... while the victim downloads their own
        victim = await hub.login(VICTIM)
        sessions.append(victim)
        status, body = await fetch(victim, f"{page}users/{quote(VICTIM)}/kubeconfig")
        assert status == 200 and SECRET_MARK in body, (status, body)

        # the hub's home page: the attacker is not told the victim's cluster is theirs
        status, html = await fetch(attacker, f"{hub.url}/hub/home")
        assert status == 200 and f"Your virtual cluster {TARGET} is running" not in html, html

        # an admin acting on the attacker's row finds no vCluster to act on
        admin = await hub.login(ADMIN)
        sessions.append(admin)
        for action in ("sleep", "delete"):
            status, body = await fetch(admin, f"{page}users/{quote(ATTACKER)}/{action}")
            assert status == 404, (action, status, body)

        # the operator CLI, for the attacker's name
        env = {**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig)}
        for command in ("sleep", "delete"):
            done = subprocess.run([sys.executable, "-m", "vcluster_spawner", "-f", str(hub.workdir / "jupyterhub_config.py"),
                                   command, ATTACKER], env=env, cwd=hub.workdir, capture_output=True, text=True)
            assert done.returncode != 0 and "has no virtual cluster" in done.stderr, done.stdout + done.stderr

        # the lifecycle service: the attacker has no server, and nothing of theirs runs; passes
        # every second with a 2 s grace period would have put a vCluster "of theirs" to sleep
        await asyncio.sleep(12)
        sts = await apps.read_namespaced_stateful_set(TARGET, TARGET)
        assert sts.spec.replicas == 1 and "loft.sh/paused" not in (sts.metadata.annotations or {}), \
            sts.metadata.annotations
        url = (await hub.user_model(VICTIM))["servers"][""]["url"]
        status, _ = await hub.request("GET", f"{hub.url}{url}api/status")
        assert status == 200

        # wake-ahead: the victim's vCluster asleep, the attacker opens the spawn page
        await hub.stop_server(VICTIM)

        async def asleep():
            sts = await apps.read_namespaced_stateful_set(TARGET, TARGET)
            return sts.spec.replicas == 0 and sts
        await wait_for(asleep, timeout=120, what="the victim's vCluster asleep after the stop")
        status, _ = await fetch(attacker, f"{hub.url}/hub/spawn")
        assert status == 200
        await asyncio.sleep(8)
        sts = await apps.read_namespaced_stateful_set(TARGET, TARGET)
        assert sts.spec.replicas == 0 and "hub.jupyter.org/woken-ahead-at" not in (sts.metadata.annotations or {})

        # the attacker's removal from the hub takes nothing of the victim's
        status, body = await hub.api("DELETE", f"/users/{quote(ATTACKER)}", timeout=300)
        assert status == 204, body
        namespace = await core.read_namespace(TARGET)
        assert namespace.metadata.annotations.get("hub.jupyter.org/owner") == VICTIM, namespace.metadata.annotations
        await apps.read_namespaced_stateful_set(TARGET, TARGET)   # still there
    finally:
        for session in sessions:
            await session.close()
        for user in (VICTIM, ATTACKER, ADMIN):
            await hub.api("DELETE", f"/users/{quote(user)}", timeout=300)
        await hub.stop()


NEWCOMER, KEPT = f"olaf{RUN}", f"quinn{RUN}"
KEEP_NAMESPACES = 'c.VClusterSpawner.stop_action = "sleep"\nc.VClusterSpawner.delete_namespace_on_delete_forever = False\n'


async def test_a_newcomer_with_a_removed_users_name_inherits_nothing_of_theirs(cluster, kube, tmp_path):
    """The removal keeps the namespace (``delete_namespace_on_delete_forever = False``), or its
    clean-up failed: it is retired before anything else happens, so the next hub user with the
    name (another person, another creation time) is refused it rather than handed its Secrets
    and home. Seen to get through before (66247bb: owners were compared by name only, and the
    home retired only after a successful delete): the newcomer's start used the old namespace."""
    hub = await Hub(tmp_path / "hub", cluster, KEEP_NAMESPACES).start()
    core = client.CoreV1Api(kube)
    namespace = f"vc-{NEWCOMER}"
    try:
        await hub.add_user(NEWCOMER)
        assert (await hub.start_server(NEWCOMER))[-1].get("ready"), hub.log_tail()
        await hub.stop_server(NEWCOMER)
        status, body = await hub.api("DELETE", f"/users/{quote(NEWCOMER)}", timeout=300)
        assert status == 204, body
        retired = (await core.read_namespace(namespace)).metadata.annotations
        assert "hub.jupyter.org/owner" not in retired and NEWCOMER in retired["hub.jupyter.org/removed-owner"]

        await hub.add_user(NEWCOMER)   # another person with the name
        status, body = await hub.api("POST", hub.server_path(NEWCOMER), {}, timeout=300)
        if status < 400:
            events = await hub.wait_progress(NEWCOMER)
            assert not events[-1].get("ready"), events[-3:]
            message = events[-1]["message"]
        else:
            message = body["message"]
        assert f"the host namespace {namespace} meant for your virtual cluster already exists and does not belong " \
               "to you" in message, message

        # the administrator sees it, and decides
        env = {**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig), "JUPYTERHUB_API_URL": f"{hub.url}/hub/api",
               "JUPYTERHUB_API_TOKEN": hub.token}
        done = subprocess.run([sys.executable, "-m", "vcluster_spawner", "-f", str(hub.workdir / "jupyterhub_config.py"),
                               "orphans"], env=env, cwd=hub.workdir, capture_output=True, text=True)
        assert done.returncode == 0 and f"{namespace}: retired: {NEWCOMER!r}" in done.stdout, done.stdout + done.stderr

        # a removed user's namespace that no removal retired (an earlier version's removal kept it
        # as it was): it records the name, and the hub's creation time of someone else
        await core.create_namespace({"metadata": {"name": f"vc-{KEPT}", "labels": {
            "app.kubernetes.io/managed-by": "vcluster-spawner", "hub.jupyter.org/username": KEPT,
            "pod-security.kubernetes.io/enforce": "restricted"}, "annotations": {
            "hub.jupyter.org/owner": KEPT, "hub.jupyter.org/owner-created": "2020-01-01T00:00:00.000000Z"}}})
        await hub.add_user(KEPT)
        status, body = await hub.api("POST", hub.server_path(KEPT), {}, timeout=300)
        message = body["message"] if status >= 400 else (await hub.wait_progress(KEPT))[-1]["message"]
        assert "does not belong to you" in message, message
    finally:
        for user in (NEWCOMER, KEPT):
            await hub.api("DELETE", f"/users/{quote(user)}", timeout=300)
        await hub.stop()
        for name in (namespace, f"vc-{KEPT}"):
            try:
                await core.delete_namespace(name)
            except client.ApiException:
                pass

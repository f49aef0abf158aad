"""The status page (jupyterhub_config.d/50, hub OAuth): a user sees only their own vCluster, an
admin everyone's and can sleep, wake and delete after confirming; the kubeconfig download
(pytest -m hub)."""

from __future__ import annotations

import base64
import re

import aiohttp
import pytest
from kubernetes_asyncio import client

from localcluster.processes import free_port, wait_for

from .helpers import gone
from .hub import Hub
from .test_lifecycle import assert_asleep, vcluster_state

pytestmark = pytest.mark.hub


def rows(html: str) -> dict[str, str]:
    """user -> the HTML of their table row."""
    return dict(re.findall(r"<tr data-user='([^']+)'>(.*?)</tr>", html, re.S))


async def get(http, url: str) -> tuple[int, str]:
    async with http.get(url) as r:
        return r.status, await r.text()


async def test_status_page_access_and_admin_actions(cluster, kube, tmp_path):
    # stop action none: after the server stops the vCluster keeps running for the admin to act on
    config = f'''
c.VClusterSpawner.stop_action = "none"
c.Authenticator.admin_users = {{"ana"}}
c.VClusterHub.status_port = {free_port()}
'''
    hub = Hub(tmp_path / "hub", cluster, config, snippets=("10-vcluster-spawner.py", "50-status-service.py"))
    await hub.start()
    page = f"{hub.url}/services/vcluster-status/"
    core = client.CoreV1Api(kube)
    sessions = []
    try:
        for user in ("ana", "ben", "cid"):
            await hub.add_user(user)
        assert (await hub.start_server("ben"))[-1].get("ready"), hub.log_tail()

        # anonymous: sent to the hub's login
        anonymous = aiohttp.ClientSession()
        sessions.append(anonymous)
        async with anonymous.get(page, allow_redirects=False) as r:
            assert r.status == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]

        ben = await hub.login("ben")
        sessions.append(ben)
        status, html = await get(ben, page)
        assert status == 200, html
        assert list(rows(html)) == ["ben"], html           # only his own
        assert "class='state running'" in rows(html)["ben"]
        assert "ben: ready" not in html and "default: ready" in rows(html)["ben"]
        assert "kubectl in the notebook's terminal" in rows(html)["ben"]
        # and his own cluster in sentences (guidance.py): where it stands and what to do now
        assert "Your virtual cluster vc-ben is running." in html and "Use it from your notebook&#x27;s terminal" in html
        assert "Actions" not in html                         # no admin actions for users
        for path in ("users/cid/kubeconfig", "users/ben/sleep", "users/cid/delete"):
            status, body = await get(ben, page + path)
            assert status == 403, (path, status, body)
        status, body = await get(ben, page + "users/ben/kubeconfig")
        assert status == 404 and "not available" in body

        # the external kubeconfig appears (vCluster exports it into this host Secret)
        kubeconfig = b"apiVersion: v1\nkind: Config\nclusters: []\n"
        await core.create_namespaced_secret("vc-ben", {"metadata": {"name": "vc-vc-ben-external"},
                                                       "data": {"config": base64.b64encode(kubeconfig).decode()}})
        async with ben.get(page + "users/ben/kubeconfig") as r:
            assert r.status == 200 and await r.read() == kubeconfig
            assert "attachment" in r.headers["Content-Disposition"]

        # the admin sees everyone, with their states
        ana = await hub.login("ana")
        sessions.append(ana)
        status, html = await get(ana, page)
        assert status == 200 and sorted(rows(html)) == ["ana", "ben", "cid"], html
        assert "class='state running'" in rows(html)["ben"] and "class='state absent'" in rows(html)["cid"]
        assert "CPU" in rows(html)["ben"]

        # sleep: confirmation page, then refused while ben's server runs
        status, confirm = await get(ana, page + "users/ben/sleep")
        assert status == 200 and "Yes, sleep" in confirm
        xsrf = re.search(r"name=_xsrf value='([^']+)'", confirm).group(1)

        def form(confirm_page: str) -> dict:
            # what the confirmation page posts: the vCluster's claim as the admin saw it
            return {"_xsrf": xsrf, "claimed": re.search(r"name=claimed value='([^']*)'", confirm_page).group(1)}
        async with ana.post(page + "users/ben/sleep", data=form(confirm)) as r:
            html = await r.text()
        assert "has active servers" in html
        assert (await vcluster_state(kube, "ben"))[0].spec.replicas == 1

        await hub.stop_server("ben")
        async with ana.post(page + "users/ben/sleep", data=form(confirm)) as r:
            html = await r.text()
        assert "sleep: done" in html and "class='state asleep'" in rows(html)["ben"], html
        await assert_asleep(kube, "ben")

        _, confirm_delete = await get(ana, page + "users/ben/delete")   # seen asleep
        async with ana.post(page + "users/ben/wake", data={"_xsrf": xsrf}) as r:
            assert "wake: done" in await r.text()

        async def running():
            return (await vcluster_state(kube, "ben"))[0].status.ready_replicas == 1
        await wait_for(running, timeout=120, what="woken from the status page")

        # confirmed on the state before the wake: the wake claimed it since, nothing is deleted
        async with ana.post(page + "users/ben/delete", data=form(confirm_delete)) as r:
            html = await r.text()
        assert "not done, the virtual cluster changed since you looked" in html, html
        assert (await vcluster_state(kube, "ben"))[0].status.ready_replicas == 1

        _, confirm_delete = await get(ana, page + "users/ben/delete")
        async with ana.post(page + "users/ben/delete", data=form(confirm_delete)) as r:
            html = await r.text()
        assert "delete: done" in html and "class='state absent'" in rows(html)["ben"], html
        await gone(client.AppsV1Api(kube).read_namespaced_stateful_set, "vc-ben", "vc-ben", what="deleted")
        # a POST without the form's token is refused
        async with ana.post(page + "users/cid/delete", data={}) as r:
            assert r.status == 403
    finally:
        for s in sessions:
            await s.close()
        await hub.api("DELETE", "/users/ben")
        await hub.stop()

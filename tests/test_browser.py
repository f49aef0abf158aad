"""The whole hub experience in headless Chromium (Debian's, driven by Playwright), on the real
vCluster 0.36.1: the home page before the first start (no cluster yet), the spawn page with the
notice of what survives a stop (dynamic mode: only the home directory), the progress page
reporting the vCluster's phases, a working JupyterLab, the home page while it runs, an admin's
stop from the admin panel (the cluster is deleted), the home page after, and the status page
for the admin and for the user (pytest -m browser). Screenshots of each page:
test-artifacts/browser/ (docs/hub.md shows them)."""

from __future__ import annotations

import re
import shutil

import pytest
from kubernetes_asyncio import client
from playwright.async_api import async_playwright, expect

from localcluster.processes import free_port

from .conftest import ARTIFACTS
from .helpers import gone
from .hub import Hub
from .test_lifecycle import ref, vcluster_state

pytestmark = [pytest.mark.browser, pytest.mark.hub]

SHOTS = ARTIFACTS / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 300_000   # a cold spawn of the real vCluster on a busy 2-core machine; Playwright waits for events
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
async def browser():
    async with async_playwright() as p:
        # root in a container: Chromium's sandbox needs user namespaces it may not have
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        await b.close()


async def test_a_users_walk_through_the_hub_says_where_their_cluster_stands(cluster, kube, tmp_path,
                                                                           browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    config = f'''
c.VClusterSpawner.stop_action = "delete"
c.Authenticator.admin_users = {{"alice"}}
c.VClusterHub.status_port = {free_port()}
'''
    hub = Hub(tmp_path / "hub", cluster, config,
              snippets=("10-vcluster-spawner.py", "20-profiles.py", "30-idle-culler.py", "50-status-service.py"))
    await hub.start()
    page = None
    try:
        page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        await flow(hub, kube, browser, page)
    except Exception:
        if page is not None:
            await page.screenshot(path=SHOTS / "failure.png", full_page=True)
        raise
    finally:
        await hub.api("DELETE", "/users/bea", timeout=300)
        await hub.stop()


async def log_in(page, hub, name: str) -> None:
    """DummyAuthenticator: any password."""
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", name)
    await page.fill("#password_input", "anything")
    await page.click("#login_submit")


async def panel_says(page, name: str, *texts: str) -> None:
    """The vCluster panel of the page says each of ``texts``; then a full-page screenshot."""
    panel = page.locator("#vcluster-state")
    for text in texts:
        await expect(panel).to_contain_text(text)
    await page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


SURVIVES = "Only your home directory (/home/jovyan) survives a stop: everything else you create in vc-bea"


async def flow(hub, kube, browser, page):
    """The user's and the admin's way through the hub; screenshots on the way."""
    await log_in(page, hub, "bea")
    await page.wait_for_url("**/hub/spawn")

    # before the first start: no cluster yet, and what a start and a stop will do
    await page.goto(f"{hub.url}/hub/home")
    await panel_says(page, "1-home-before-first-start", "absent",
                     "You have no virtual cluster at the moment: starting your server creates vc-bea.",
                     "Stopping your server deletes your virtual cluster and everything in it.", SURVIVES)
    await expect(page.locator("#vcluster-state")).to_have_attribute("data-state", "absent")

    # the spawn page offers the example profiles and says what survives before it matters
    await page.click("#start")
    await page.wait_for_url("**/hub/spawn**")
    await expect(page.get_by_text("Large virtual cluster")).to_be_visible()
    await page.check("input[name=profile][value=small]")
    await page.select_option("select[name='profile-option-small--kubernetes']", "1.35")
    await panel_says(page, "2-spawn-page", "Stopping your server deletes your virtual cluster", SURVIVES)
    await page.click("form [type=submit]")

    # the progress page reports the vCluster's phases as they happen, under the same notice
    await page.wait_for_url("**/spawn-pending/**")
    await page.click("#progress-details summary")
    log = page.locator("#progress-log")
    await expect(log).to_contain_text(re.compile(r"(Creating|Updating) your virtual cluster vc-bea"))
    await expect(log).to_contain_text("Waiting for the virtual cluster's control plane")
    await expect(log).to_contain_text("Control plane is up; waiting for its API")
    await panel_says(page, "3-progress", SURVIVES)

    # JupyterLab, served from inside the vCluster, works: a console runs Python in a kernel
    # (a console, not a notebook: it writes no file; ?reset: no workspace of an earlier run)
    await page.wait_for_url("**/user/bea/lab**")
    await page.goto(f"{hub.url}/user/bea/lab?reset")
    await page.locator(".jp-LauncherCard[data-category='Console']").first.click()
    # the kernel is up (status bar) and the prompt holds the code before it is run
    await expect(page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle")).to_be_visible()
    prompt = page.locator(".jp-CodeConsole-promptCell .cm-content")
    await prompt.click()
    await page.keyboard.type("6 * 7")
    await expect(prompt).to_have_text("6 * 7")
    await page.keyboard.press("Shift+Enter")
    await expect(page.locator(".jp-Console-cell .jp-OutputArea-output").first).to_have_text("42")
    await page.screenshot(path=SHOTS / "4-notebook.png")
    sts, pods = await vcluster_state(kube, "bea")
    assert sts.spec.replicas == 1 and any(p.metadata.name.startswith("jupyter-bea") for p in pods)

    # the home page while it runs: and when the idle culler (--timeout=3600) will stop it
    await page.goto(f"{hub.url}/hub/home")
    await panel_says(page, "5-home-running", "running", "Your virtual cluster vc-bea is running.",
                     "If your server stays idle, it is stopped at about", "and your virtual cluster is deleted.")

    # an admin stops bea's server from the admin panel: the vCluster is deleted
    admin = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    admin.set_default_timeout(TIMEOUT_MS)
    await log_in(admin, hub, "alice")
    await admin.goto(f"{hub.url}/hub/admin")
    row = admin.locator("tr", has_text="bea").filter(has=admin.get_by_role("button", name="Stop Server"))
    await row.get_by_role("button", name="Stop Server").click()
    await expect(admin.locator("tr", has_text="bea").get_by_role("button", name="Start Server")).to_be_visible()
    await admin.screenshot(path=SHOTS / "6-admin-stopped.png", full_page=True)
    ns, name = ref("bea")
    await gone(client.AppsV1Api(kube).read_namespaced_stateful_set, name, ns, timeout=240,
               what="bea's vCluster deleted after the admin's stop")

    # bea's home page: no cluster again, and the next start creates one
    await page.goto(f"{hub.url}/hub/home")
    await panel_says(page, "7-home-after-stop", "absent", "starting your server creates vc-bea.")

    # the status page: the admin sees bea's vCluster absent (nothing to act on)
    await admin.goto(f"{hub.url}/services/vcluster-status/")
    bea = admin.locator("tr[data-user='bea']")
    await expect(bea.locator(".state")).to_have_text("absent")
    await expect(bea.get_by_role("link", name="delete")).to_have_count(0)
    await admin.screenshot(path=SHOTS / "8-status-admin.png", full_page=True)
    # bea sees her own, in sentences: what to do now, kubectl from the notebook, what survives
    await page.goto(f"{hub.url}/services/vcluster-status/")
    await expect(page.locator("tr[data-user='bea'] .state")).to_have_text("absent")
    assert await page.locator("tr[data-user]").count() == 1
    guide = page.locator("section.guide")
    await expect(guide).to_have_attribute("data-state", "absent")
    for text in ("Start your server to create it", "kubectl", "(KUBECONFIG is set; its context is vc-bea)",
                 "Only your home directory (/home/jovyan) survives a stop"):
        await expect(guide).to_contain_text(text)
    await expect(guide.get_by_role("link", name="Start your server")).to_have_attribute("href", "/hub/spawn")
    await page.screenshot(path=SHOTS / "9-status-user.png", full_page=True)

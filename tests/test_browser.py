"""The whole hub experience in headless Chromium (Debian's, driven by Playwright): log in, pick
a profile, watch the progress page report the vCluster's phases, land in a working JupyterLab,
stop the server from the admin panel, open the status page (pytest -m browser).
Screenshots: test-artifacts/browser/."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.async_api import async_playwright, expect

from localcluster.processes import free_port, wait_for

from .conftest import ARTIFACTS
from .hub import Hub
from .test_lifecycle import assert_asleep, vcluster_state

pytestmark = [pytest.mark.browser, pytest.mark.hub]

SHOTS = ARTIFACTS / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 180_000   # a spawn on a busy 2-core machine; Playwright waits for events, not for time
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
async def browser():
    async with async_playwright() as p:
        # root in a container: Chromium's sandbox needs user namespaces it may not have
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        await b.close()


async def test_login_profile_progress_notebook_admin_stop_status_page(cluster, kube, tmp_path, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    config = f'''
c.VClusterSpawner.stop_action = "sleep"
c.Authenticator.admin_users = {{"alice"}}
c.VClusterHub.status_port = {free_port()}
'''
    hub = Hub(tmp_path / "hub", cluster, config,
              snippets=("10-vcluster-spawner.py", "20-profiles.py", "50-status-service.py"))
    await hub.start()
    page = None
    try:
        page = await (await browser.new_context(viewport={"width": 1280, "height": 860})).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        await flow(hub, kube, browser, page)
    except Exception:
        if page is not None:
            await page.screenshot(path=SHOTS / "failure.png", full_page=True)
        raise
    finally:
        await hub.api("DELETE", "/users/bea")
        await hub.stop()


async def flow(hub, kube, browser, page):
    """The user's and the admin's way through the hub; screenshots on the way."""

    # log in: DummyAuthenticator, any password
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", "bea")
    await page.fill("#password_input", "anything")
    await page.click("#login_submit")

    # the spawn page offers the example profiles; pick the small one with Kubernetes 1.35
    await page.wait_for_url("**/hub/spawn")
    await expect(page.get_by_text("Large virtual cluster")).to_be_visible()
    await page.check("input[name=profile][value=small]")
    await page.select_option("select[name='profile-option-small--kubernetes']", "1.35")
    await page.screenshot(path=SHOTS / "1-spawn-page.png", full_page=True)
    await page.click("form [type=submit]")

    # the progress page reports the vCluster's phases as they happen
    await page.wait_for_url("**/spawn-pending/**")
    await page.click("#progress-details summary")
    log = page.locator("#progress-log")
    # (Creating on a fresh cluster; Updating/Waking when a reused cluster still has it)
    await expect(log).to_contain_text(re.compile(r"(Creating|Updating|Waking) your virtual cluster vc-bea"))
    await expect(log).to_contain_text("Waiting for the virtual cluster's control plane")
    await expect(log).to_contain_text("Control plane is up; waiting for its API")
    await page.screenshot(path=SHOTS / "2-progress.png", full_page=True)

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
    await page.screenshot(path=SHOTS / "3-notebook.png")
    sts, pods = await vcluster_state(kube, "bea")
    assert sts.spec.replicas == 1 and any(p.metadata.name.startswith("jupyter-bea") for p in pods)

    # an admin stops bea's server from the admin panel: the vCluster goes to sleep
    admin = await (await browser.new_context(viewport={"width": 1280, "height": 860})).new_page()
    admin.set_default_timeout(TIMEOUT_MS)
    await admin.goto(f"{hub.url}/hub/login")
    await admin.fill("#username_input", "alice")
    await admin.fill("#password_input", "anything")
    await admin.click("#login_submit")
    await admin.goto(f"{hub.url}/hub/admin")
    row = admin.locator("tr", has_text="bea").filter(has=admin.get_by_role("button", name="Stop Server"))
    await row.get_by_role("button", name="Stop Server").click()
    await expect(admin.locator("tr", has_text="bea").get_by_role("button", name="Start Server")).to_be_visible()
    await admin.screenshot(path=SHOTS / "4-admin-stopped.png", full_page=True)

    async def asleep():
        sts, pods = await vcluster_state(kube, "bea")
        return sts.spec.replicas == 0 and not pods
    await wait_for(asleep, timeout=120, what="bea's vCluster asleep after the admin's stop")
    await assert_asleep(kube, "bea")

    # the status page: the admin sees bea's vCluster asleep, with the admin actions
    await admin.goto(f"{hub.url}/services/vcluster-status/")
    bea = admin.locator("tr[data-user='bea']")
    await expect(bea.locator(".state")).to_have_text("asleep")
    await expect(bea.get_by_role("link", name="wake")).to_be_visible()
    await admin.screenshot(path=SHOTS / "5-status-admin.png", full_page=True)
    # and bea sees her own, without actions
    await page.goto(f"{hub.url}/services/vcluster-status/")
    await expect(page.locator("tr[data-user='bea'] .state")).to_have_text("asleep")
    assert await page.locator("tr[data-user]").count() == 1
    await page.screenshot(path=SHOTS / "6-status-user.png", full_page=True)

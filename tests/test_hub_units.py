"""Pure logic of the hub services (no cluster): the lifecycle policy's decisions, quantities,
the status page's rendering and escaping, the config.d loader."""

from __future__ import annotations

import datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from vcluster_spawner.guidance import Policy, guidance
from vcluster_spawner.hubconfig import load_config_d
from vcluster_spawner.services import pages
from vcluster_spawner.services.inspect import VClusterView, quantity
from vcluster_spawner.services.lifecycle import LifecycleService
from vcluster_spawner.services.pages import guide
from vcluster_spawner.vcluster import Ref, State, Status

from .hub import CONFIG_D


def before(seconds: float) -> datetime.datetime:
    # computed when called: the module is imported at collection, long before a test runs
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)


def ago(seconds: float) -> str:
    return before(seconds).isoformat().replace("+00:00", "Z")


def spawner(mode="dynamic", action="sleep", grace=60.0):
    return SimpleNamespace(vcluster_mode=mode, effective_stop_action=action, sleep_grace_period=grace)


def decide(user, status, started_ago=None, **kwargs):
    service = LifecycleService(interval=10, delete_asleep_after=3600, **kwargs)
    started = before(started_ago) if started_ago is not None else None
    return service._decide(user, spawner(), status, started)


def test_an_active_server_always_keeps_the_vcluster():
    user = {"name": "u", "servers": {"": {"ready": True}}, "last_activity": ago(10 ** 6)}
    assert decide(user, Status(State.RUNNING), 10 ** 6)[0] == "keep"
    user = {"name": "u", "servers": {"": {"pending": "spawn"}}}
    assert decide(user, Status(State.ASLEEP, ago(10 ** 6)))[0] == "keep"


def test_running_without_a_server_gets_the_stop_action_after_the_grace_period():
    user = {"name": "u", "servers": {}, "last_activity": ago(1000)}
    action, reason = decide(user, Status(State.RUNNING), started_ago=1000)
    assert action == "sleep" and "no active server" in reason
    # within the grace period (the spawner's 60 s + one interval) counted from the later of
    # the user's activity and the control plane's start
    assert decide(user, Status(State.RUNNING), started_ago=30)[0] == "keep"
    assert decide({**user, "last_activity": ago(5)}, Status(State.RUNNING), started_ago=1000)[0] == "keep"
    assert decide(user, Status(State.STARTING), started_ago=None)[0] == "keep"


def test_stop_action_delete_applies_in_dynamic_mode_only():
    user = {"name": "u", "servers": {}, "last_activity": ago(1000)}
    service = LifecycleService(interval=10)
    started = before(1000)
    assert service._decide(user, spawner(action="delete"), Status(State.RUNNING), started)[0] == "delete"
    assert service._decide(user, spawner("static", "delete"), Status(State.RUNNING), started)[0] == "sleep"
    assert service._decide(user, spawner(action="none"), Status(State.RUNNING), started)[0] == "keep"


def test_long_asleep_is_deleted_in_dynamic_mode_or_when_opted_in():
    user = {"name": "u", "servers": {}}
    service = LifecycleService(interval=10, delete_asleep_after=3600)
    old, recent = Status(State.ASLEEP, ago(7200)), Status(State.ASLEEP, ago(60))
    action, reason = service._decide(user, spawner(), old, None)
    assert action == "delete" and reason.startswith("asleep for 7") and reason.endswith("> 3600 s")
    assert service._decide(user, spawner(), recent, None)[0] == "keep"
    assert service._decide(user, spawner("static"), old, None)[0] == "keep"
    opted = LifecycleService(interval=10, delete_asleep_after=3600, delete_asleep_in_static_mode=True)
    assert opted._decide(user, spawner("static"), old, None)[0] == "delete"
    never = LifecycleService(interval=10, delete_asleep_after=0)
    assert never._decide(user, spawner(), old, None)[0] == "keep"


@pytest.mark.parametrize("text,value", [("250m", Decimal("0.25")), ("2", 2), ("1Gi", 2 ** 30), ("512Mi", 2 ** 29),
                                        ("1k", 1000), ("0", 0), ("1e3", 1000), ("5E-2", Decimal("0.05")),
                                        ("500n", Decimal("0.0000005")), ("1Pi", 2 ** 50), ("1.5", Decimal("1.5")),
                                        ("2u", Decimal("0.000002")), ("1Ei", 2 ** 60)])
def test_quantity(text, value):
    assert quantity(text) == value


def test_one_tenants_odd_quantity_does_not_break_the_page():
    """Every form the API server accepts is read; the row of a tenant whose pods carry odd
    values renders (each of these once turned the whole admin page into a 500)."""
    for text in ("1e3", "500n", "1Pi"):
        view = VClusterView(Ref("vc-x", "vc-x"), "running", cpu_requests=quantity(text), memory_requests=quantity(text))
        assert "vc-x" in pages.row("x", view, {}, "/services/s/", True, kubeconfig=False)
    with pytest.raises(ValueError):
        quantity("lots")


def test_status_rows_escape_and_offer_actions_by_state():
    view = VClusterView(Ref("vc-x", "vc-x"), "asleep", since=before(0), created=before(0), cpu_requests=Decimal("0.2"),
                        memory_requests=Decimal(256 * 2 ** 20), pods=1)
    row = pages.row("<b>x</b>", view, {"": {"ready": False}}, "/services/s/", True, kubeconfig=False)
    assert "&lt;b&gt;x&lt;/b&gt;" in row and "<b>x</b>" not in row
    assert ">wake<" in row and ">sleep<" not in row and ">delete<" in row
    assert "0.2 CPU" in row and "256 Mi" in row and "kubectl in the notebook's terminal" in row
    user_row = pages.row("x", view, {}, "/services/s/", False, kubeconfig=True)
    assert ">wake<" not in user_row and "/services/s/users/x/kubeconfig" in user_row
    woken = VClusterView(Ref("vc-x", "vc-x"), "running", woken_ahead="2026-12-02T10:00:00Z")
    assert "woken ahead of a start (spawn page opened at 2026-12-02T10:00:00Z)" in pages.row(
        "x", woken, {}, "/services/s/", True, kubeconfig=False)


def test_the_status_page_shows_the_warm_pools_to_admins():
    from vcluster_spawner.services.warmpool import PoolView
    assert pages.pools([]) == ""
    html = pages.pools([PoolView("<gpu>", "k1", 3, ready=2, starting=1, oldest_ready_age=95.4), PoolView("", "k2", 1)])
    assert "&lt;gpu&gt;" in html and "<gpu>" not in html
    assert "<td class=ready>2</td><td>1</td><td>95 s</td>" in html and "(no profile)" in html


def test_config_d_snippets_extend_what_was_configured_before():
    c = Config()
    c.JupyterHub.services = [{"name": "mine", "api_token": "x"}]
    c.VClusterSpawner.sleep_grace_period = 5.0
    c.VClusterHub.cull_timeout = 42
    load_config_d(c, CONFIG_D)
    names = [s["name"] for s in c.JupyterHub.services]
    assert names == ["mine", "idle-culler", "vcluster-lifecycle", "vcluster-status"]
    culler = c.JupyterHub.services[1]["command"]
    assert "--timeout=42" in culler
    assert c.VClusterSpawner.sleep_grace_period == 5.0          # set before: kept
    assert c.VClusterSpawner.stop_action == "sleep"             # unset: the snippet's default
    assert [p["slug"] for p in c.VClusterSpawner.profile_list] == ["small", "large"]
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert "access:services!service=vcluster-status" in user_role["scopes"]


def test_the_users_guide_offers_the_action_of_the_state_and_escapes_everything():
    policy = Policy("dynamic", "delete", "/home/<jovyan>")
    asleep = guide(guidance("vc-x", "asleep", policy, now=before(0), since=before(60)), "/hub/spawn", None)
    assert "Start your server (wakes it)" in asleep and "href='/hub/spawn'" in asleep
    assert "/home/&lt;jovyan&gt;" in asleep and "<jovyan>" not in asleep
    assert "download its kubeconfig" not in asleep and "class='box guide ephemeral'" in asleep
    starting = guide(guidance("vc-x", "provisioning", policy, now=before(0)), "/hub/spawn", "/s/users/x/kubeconfig")
    assert "Look again" in starting and "Start your server" not in starting
    assert "href='/s/users/x/kubeconfig'" in starting
    working = guide(guidance("vc-x", "running", policy, now=before(0), server_active=True), "/hub/spawn", None)
    assert "<a class=button" not in working and "Use it from your notebook&#x27;s terminal" in working


async def test_the_services_act_on_the_profile_the_user_last_started_with(monkeypatch):
    """A profile's stop_action (and warm pool) is the one the lifecycle service applies: the
    hub's REST API gives each server's user_options; the most recently active server's win."""
    import kubespawner.spawner

    from vcluster_spawner.services.common import Spawners, last_options
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    config = Config()
    config.VClusterSpawner.profile_list = [
        {"display_name": "Kept", "slug": "kept", "default": True, "kubespawner_override": {"stop_action": "none"}},
        {"display_name": "Pooled", "slug": "pooled", "kubespawner_override": {"warm_pool_size": 2}}]
    user = {"name": "ann", "servers": {
        "": {"last_activity": ago(600), "user_options": {"profile": "pooled"}},
        "b": {"last_activity": ago(5), "user_options": {"profile": "kept"}},
        "c": {"last_activity": ago(1), "user_options": {}}}}
    assert last_options(user) == {"profile": "kept"}
    spawners = Spawners(config)
    kept = await spawners(user)
    assert kept.effective_stop_action == "none" and await spawners(user) is kept
    user["servers"]["b"]["last_activity"] = ago(900)
    pooled = await spawners(user)
    assert pooled.warm_pool_size == 2 and pooled.effective_stop_action == "delete"
    gone = await spawners({"name": "bob", "servers": {"": {"user_options": {"profile": "removed"}}}})
    assert gone.effective_stop_action == "delete" and gone.warm_pool_size == 0

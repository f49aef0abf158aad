"""What users are told about their vCluster, for every state and mode (vcluster_spawner/guidance.py)."""

from __future__ import annotations

import datetime

import pytest

from vcluster_spawner.guidance import STATES, Policy, duration, guidance, survival, when
from vcluster_spawner.hubpages import idle_policy

NOW = datetime.datetime(2026, 12, 2, 14, 0, tzinfo=datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)
DYNAMIC = Policy("dynamic", "delete", home_mount_path="/home/jovyan", s3=True, cull_timeout=3600,
                 delete_asleep_after=None)
STATIC = Policy("static", "sleep", home_mount_path="/home/jovyan", s3=False, cull_timeout=3600,
                delete_asleep_after=7 * 86400)
POLICIES = {"dynamic": DYNAMIC, "static": STATIC, "dynamic-sleeping": Policy("dynamic", "sleep", "/home/jovyan")}


@pytest.mark.parametrize("mode", sorted(POLICIES))
@pytest.mark.parametrize("state", STATES)
def test_every_state_and_mode_has_a_headline_a_next_step_and_the_same_survival_sentence(state, mode):
    policy = POLICIES[mode]
    told = guidance("vc-bea", state, policy, now=NOW, since=NOW - HOUR, detail="control plane: CrashLoopBackOff")
    assert "vc-bea" in told.headline and told.headline.endswith(".")
    assert told.next_step and told.on_stop
    assert told.action == {"asleep": "wake", "provisioning": "wait", "absent": "" if mode == "static" else "start",
                           "running": "start", "error": ""}[state]
    assert told.survival == survival(policy, "vc-bea")   # the same wherever it is shown
    assert told.ephemeral == (policy.stop_action == "delete")


def test_dynamic_mode_says_only_the_home_and_s3_survive_and_everything_else_is_deleted():
    told = guidance("vc-bea", "running", DYNAMIC, now=NOW)
    assert told.on_stop == "Stopping your server deletes your virtual cluster and everything in it."
    assert told.survival == ("Only your home directory (/home/jovyan) and your S3 storage survive a stop: everything "
                             "else you create in vc-bea (pods, services, secrets, installed charts, files outside "
                             "your home) is deleted.")
    no_home = Policy("dynamic", "delete")
    assert survival(no_home, "vc-bea").startswith("Nothing in vc-bea survives a stop")


def test_static_mode_says_the_cluster_sleeps_and_keeps_its_state_until_the_asleep_limit():
    told = guidance("vc-bea", "asleep", STATIC, now=NOW, since=NOW - HOUR)
    assert told.headline == "Your virtual cluster vc-bea is asleep since 2 Dec 13:00 UTC."
    assert told.on_stop.startswith("Stopping your server puts your virtual cluster to sleep")
    assert told.survival == ("Your virtual cluster keeps everything in it while it is stopped or asleep, until it has "
                             "been asleep for 7 days: then it is deleted and only your home directory (/home/jovyan) "
                             "remains.")
    assert told.next_policy == "Unless you start your server before, your virtual cluster is deleted at about 9 Dec 13:00 UTC."
    assert told.next_step == "Start your server to wake it."


def test_the_idle_policy_names_the_moment_from_the_last_activity():
    told = guidance("vc-bea", "running", DYNAMIC, now=NOW, last_activity=NOW - datetime.timedelta(minutes=20),
                    server_active=True)
    assert told.next_policy == ("If your server stays idle, it is stopped at about 2 Dec 14:40 UTC and your virtual "
                                "cluster is deleted.")
    without = guidance("vc-bea", "running", STATIC, now=NOW, server_active=True)
    assert without.next_policy == ("After 1 h without activity your server is stopped and your virtual cluster is "
                                   "put to sleep.")
    # no server, no culler: nothing will act
    assert guidance("vc-bea", "running", DYNAMIC, now=NOW).next_policy == ""
    assert guidance("vc-bea", "asleep", DYNAMIC, now=NOW).next_policy == ""


def test_absent_means_created_on_start_in_dynamic_mode_and_an_administrators_job_in_static_mode():
    assert guidance("vc-bea", "absent", DYNAMIC, now=NOW).next_step.startswith("Start your server to create it")
    static = guidance("vc-bea", "absent", STATIC, now=NOW)
    assert static.headline == "Your virtual cluster vc-bea has not been set up yet."
    assert static.next_step.startswith("Ask the administrators")


def test_the_operators_wording_replaces_the_survival_sentence():
    policy = Policy("dynamic", "delete", "/home/jovyan",
                    survival_notice="Save your work in {home}: {cluster} is wiped at every stop.")
    told = guidance("vc-bea", "absent", policy, now=NOW)
    assert told.survival == "Save your work in /home/jovyan: vc-bea is wiped at every stop."


def test_an_unknown_state_is_an_error_not_a_blank_page():
    with pytest.raises(ValueError, match="unknown vCluster state 'sleeping'"):
        guidance("vc-bea", "sleeping", DYNAMIC, now=NOW)


@pytest.mark.parametrize("seconds, text", [(30, "30 s"), (1800, "30 min"), (3600, "1 h"), (5400, "90 min"),
                                           (7200, "2 h"), (86400, "1 day"), (7 * 86400, "7 days")])
def test_durations_read_naturally(seconds, text):
    assert duration(seconds) == text


def test_moments_are_in_utc():
    cet = datetime.timezone(datetime.timedelta(hours=1))
    assert when(datetime.datetime(2026, 12, 2, 15, 5, tzinfo=cet)) == "2 Dec 14:05 UTC"


def hub_services(*snippets: str, **settings) -> list[dict]:
    """The services the given jupyterhub_config.d snippets configure, with c.VClusterHub settings."""
    from traitlets.config import Config

    from vcluster_spawner.hubconfig import load_config_d

    from .hub import CONFIG_D
    c = Config()
    for key, value in settings.items():
        setattr(c.VClusterHub, key, value)
    load_config_d(c, CONFIG_D, snippets)
    return list(c.JupyterHub.services)


def test_the_pages_promise_what_the_configured_culler_and_lifecycle_service_will_do():
    services = hub_services("30-idle-culler.py", "40-lifecycle-service.py", cull_timeout=1800,
                            lifecycle_delete_asleep_after=86400)
    assert idle_policy(services, "dynamic") == (1800.0, 86400.0)
    assert idle_policy(services, "static") == (1800.0, None), "static vClusters are deleted only when opted in"
    opted_in = hub_services("40-lifecycle-service.py", lifecycle_delete_in_static_mode=True)
    assert idle_policy(opted_in, "static") == (None, 7 * 86400.0)
    off = hub_services("40-lifecycle-service.py", lifecycle_delete_asleep_after=0)
    assert idle_policy(off, "dynamic") == (None, None)
    # a culler configured elsewhere (Zero to JupyterHub's), with its own default timeout
    z2jh = [{"name": "idle-culler", "command": ["python3", "-m", "jupyterhub_idle_culler", "--cull-every", "60"]}]
    assert idle_policy(z2jh, "dynamic") == (600.0, None)
    assert idle_policy([], "dynamic") == (None, None)

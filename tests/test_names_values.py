"""Unit tests: names, values, chart references, spawner state (no cluster)."""

import re

import pytest

from vcluster_spawner import names
from vcluster_spawner.helm import ChartRef
from vcluster_spawner.values import computed_values, deep_merge, values_hash, vcluster_values

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("username", [
    "alice", "Alice", "ÜNÏCØDÉ-ユーザー", "-leading-dash", "x" * 200, "a.b@example.org", "1234", "a--b", "",
])
def test_names_are_valid_for_namespace_and_helm(username):
    fields = names.user_fields(username, 7)
    ns = names.expand("vc-{username}", fields, names.NAMESPACE_MAX)
    name = names.expand("vc-{username}", fields, names.VCLUSTER_NAME_MAX)
    assert DNS1035.match(ns) and len(ns) <= 63
    assert DNS1035.match(name) and len(name) <= 52
    assert DNS1035.match(f"{name}-headless")


def test_near_collisions_stay_distinct():
    users = ["alice", "Alice", "ALICE", "alice.", "alice-", "a.lice", "a-lice", "x" * 200, "x" * 199 + "y"]
    for template, limit in (("vc-{username}", names.VCLUSTER_NAME_MAX), ("{username}", names.VCLUSTER_NAME_MAX)):
        expanded = [names.expand(template, names.user_fields(u, 1), limit) for u in users]
        assert len(set(expanded)) == len(users), expanded


def test_valid_names_are_kept_and_bad_templates_explained():
    assert names.expand("vc-{username}", names.user_fields("alice", 1), 53) == "vc-alice"
    assert names.dns1035_label("9lives", 53).startswith("x-9lives-")
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        names.expand("{nope}", names.user_fields("a", 1), 53)


def test_deep_merge_semantics():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1, "e": {"f": 1}}
    merged = deep_merge(base, {"a": {"c": [3]}, "d": None, "e": {"g": 2}})
    assert merged == {"a": {"b": 1, "c": [3]}, "e": {"f": 1, "g": 2}}
    assert base["a"]["c"] == [1, 2]  # inputs untouched


def test_spawner_values_win_over_operator_values():
    operator = {"controlPlane": {"distro": {"k8s": {"enabled": False}},
                                 "statefulSet": {"resources": {"limits": {"memory": "2Gi"}}}},
                "telemetry": {"enabled": True}}
    values = vcluster_values(operator, computed_values("vc-alice", "vc-alice"))
    assert values["controlPlane"]["distro"]["k8s"]["enabled"] is True
    assert values["controlPlane"]["statefulSet"]["resources"]["limits"]["memory"] == "2Gi"
    assert values["telemetry"]["enabled"] is False
    assert values["exportKubeConfig"] == {"context": "vc-alice", "server": "https://vc-alice.vc-alice.svc:443"}
    assert "vc-alice.vc-alice.svc" in values["controlPlane"]["proxy"]["extraSANs"]


def test_values_hash_changes_with_values_or_chart_only():
    v = computed_values("n", "ns")
    assert values_hash(v, "vcluster 0.36.1") == values_hash(dict(reversed(list(v.items()))), "vcluster 0.36.1")
    assert values_hash(v, "vcluster 0.36.1") != values_hash(v, "vcluster 0.36.2")
    assert values_hash(v, "c") != values_hash(deep_merge(v, {"x": 1}), "c")


def test_chart_reference_forms():
    assert ChartRef("vcluster", "https://charts.loft.sh", "0.36.1").args() == \
        ["vcluster", "--repo", "https://charts.loft.sh", "--version", "0.36.1"]
    assert ChartRef("/charts/vcluster", "https://charts.loft.sh").args() == ["/charts/vcluster"]
    assert ChartRef("oci://ghcr.io/loft-sh/vcluster", "x", "0.36.1").args() == \
        ["oci://ghcr.io/loft-sh/vcluster", "--version", "0.36.1"]


@pytest.fixture
def offline_kubeconfig(monkeypatch):
    """KubeSpawner loads the cluster configuration when constructed; skip that offline."""
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **kwargs: None)


async def test_state_holds_identities_only_and_round_trips(offline_kubeconfig):
    from types import SimpleNamespace

    from vcluster_spawner.spawner import VClusterSpawner

    user = SimpleNamespace(name="Ünïcødé User", id=3, url="/user/x/", spawners={})
    spawner = VClusterSpawner(user=user, _mock=True)
    assert spawner.api is None                      # no pod call may reach the host by mistake
    assert spawner.namespace == "default"           # pods run in the vCluster's namespace
    state = spawner.get_state()
    # the values hash, owner and claim are the cluster's (lifecycle.py), not per-server state
    assert set(state["vcluster"]) == {"namespace", "name"}
    flat = repr(state)
    assert "token" not in flat.lower() and "BEGIN" not in flat   # no credentials
    restored = VClusterSpawner(user=user, _mock=True)
    restored.load_state(state)
    assert restored.vcluster == spawner.vcluster
    assert spawner.effective_stop_action == "delete"
    spawner.vcluster_mode = "static"
    assert spawner.effective_stop_action == "sleep"


def test_configuration_reference_is_up_to_date():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "tools/config_reference.py", "--check"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


async def test_a_profile_gives_static_s3_credentials_and_bad_ones_are_refused(offline_kubeconfig):
    """S3 credentials from the third source of issue 5: static values per profile, through
    KubeSpawner's kubespawner_override like any other trait."""
    from types import SimpleNamespace

    from vcluster_spawner.spawner import VClusterSpawner
    from vcluster_spawner.vcluster import VClusterError

    team = {"AWS_ACCESS_KEY_ID": "team-key", "AWS_SECRET_ACCESS_KEY": "team-secret",
            "AWS_ENDPOINT_URL": "https://s3.example.org", "S3_BUCKET": "team-data"}
    profiles = [{"display_name": "Personal", "slug": "personal", "default": True},
                {"display_name": "Team data", "slug": "team", "kubespawner_override": {"s3_credentials": team}},
                {"display_name": "Broken", "slug": "broken",
                 "kubespawner_override": {"s3_credentials": {"AWS ACCESS KEY": "x", "S3_PORT": 9000}}}]

    async def spawner_with(profile):
        user = SimpleNamespace(name="ada", id=1, url="/user/ada/", spawners={})
        spawner = VClusterSpawner(user=user, _mock=True, profile_list=profiles)
        spawner.user_options = {"profile": profile}
        await spawner.load_user_options()
        return spawner

    assert await (await spawner_with("personal"))._s3_values() is None
    assert await (await spawner_with("team"))._s3_values() == team
    with pytest.raises(VClusterError) as refused:
        await (await spawner_with("broken"))._s3_values()
    assert "refused: AWS ACCESS KEY" in str(refused.value) and "9000" not in str(refused.value)

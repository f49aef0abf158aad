"""Host-name translation matches upstream vCluster (SafeConcatName, HostName)."""

import hashlib

from vcluster_spawner.translate import host_cluster_scoped_name, host_name, safe_concat_name


def test_short_names_are_joined():
    assert host_name("home", "default", "alice") == "home-x-default-x-alice"
    assert host_cluster_scoped_name("home", "user-alice", "alice") == "vcluster-home-x-user-alice-x-alice"


def test_long_names_match_the_upstream_example():
    # vcluster.md §3.6: pod jupyter-firstname-lastname-university in jupyter-users, vCluster
    # vc-firstname-lastname.
    assert host_name("jupyter-firstname-lastname-university", "jupyter-users", "vc-firstname-lastname") \
        == "jupyter-firstname-lastname-university-x-jupyter-user-e2509c0a3f"


def test_hash_rule_and_dot_dash_collapse():
    full = "a" * 51 + "." + "b" * 20
    expected = ("a" * 51 + ".-" + hashlib.sha256(full.encode()).hexdigest()[:10]).replace(".-", "-")
    assert safe_concat_name(full) == expected
    assert len(safe_concat_name("x" * 63)) == 63 and safe_concat_name("x" * 63) == "x" * 63
    assert len(safe_concat_name("x" * 64)) == 63

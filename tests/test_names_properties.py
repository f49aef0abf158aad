"""The naming and ownership rules for any name the hub may accept (hypothesis; no cluster)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from vcluster_spawner import names, pool
from vcluster_spawner.ownership import VCLUSTER_ANNOTATION, Owner, namespace_labels, namespace_repair

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# user names as people and authenticators make them: e-mail addresses, unicode, punctuation,
# upper case, very long, and names built to look like another's (hashed) name
usernames = st.one_of(
    st.text(min_size=1, max_size=120),
    st.emails(),
    st.from_regex(r"[a-z][a-z0-9-]{0,60}(--[0-9a-f]{16})?", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9]{0,20}-pool-?[0-9a-f]{12}(--pool)?", fullmatch=True),   # pool-member look-alikes
    st.from_regex(r"[a-z][a-z0-9.\-_@+']{0,80}", fullmatch=True),
)


def namespace(user: str, template: str = "vc-{username}") -> str:
    return names.expand(template, names.user_fields(user, 1), names.NAMESPACE_MAX)


def vcluster(user: str, template: str = "vc-{username}") -> str:
    return names.expand(template, names.user_fields(user, 1), names.VCLUSTER_NAME_MAX)


@settings(max_examples=400, deadline=None)
@given(usernames)
def test_every_name_gives_valid_kubernetes_names_and_label(user):
    assert DNS1035.match(namespace(user)) and len(namespace(user)) <= 63
    assert DNS1035.match(vcluster(user)) and len(vcluster(user)) <= 52
    assert len(f"{vcluster(user)}-headless") <= 63
    # the StatefulSet controller's revision label: "<name>-" and a hash of up to 10 characters
    assert len(f"{vcluster(user)}-{'x' * 10}") <= 63
    label = names.label_value(user)
    assert LABEL_VALUE.match(label) and len(label) <= 63


@settings(max_examples=400, deadline=None)
@given(usernames, usernames, st.sampled_from(["vc-{username}", "{username}", "{raw_username}", "jh-{raw_username}-x"]))
def test_different_names_never_share_a_namespace_a_vcluster_or_a_label(a, b, template):
    if a == b:
        return
    assert namespace(a, template) != namespace(b, template)
    assert vcluster(a, template) != vcluster(b, template)
    assert names.label_value(a) != names.label_value(b)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=200), st.integers(min_value=20, max_value=63))
def test_a_name_has_no_double_dash_but_its_final_hash_mark(text, limit):
    out = names.dns1035_label(text, limit)
    hashed = names.HASH_MARK.search(out)
    assert out == text or hashed, (text, out)
    # a kept or made name has no "--" but its final hash mark: pool members' "--pool" never comes out
    assert "--" not in (out[:hashed.start()] if hashed else out), (text, out)


def test_a_hashed_name_keeps_64_bits_of_its_digest():
    hashed = names.dns1035_label("Bob", 52)
    assert re.fullmatch(r"bob--[0-9a-f]{16}", hashed)
    assert re.fullmatch(r"bob-example-org--[0-9a-f]{16}", names.user_slug("Bob@example.org"))
    # a name already shaped like a hashed one is kept only if it is one: the digest of what it was made from
    assert names.dns1035_label(hashed, 52) == hashed
    assert names.dns1035_label("a--b--" + "0" * 16, 52) != "a--b--" + "0" * 16


@settings(max_examples=400, deadline=None)
@given(usernames, st.sampled_from(["vc-{username}", "{username}", "{raw_username}", "vc-{raw_username}-x"]),
       st.sampled_from(["vc-pool-", "pool-", "vc-"]))
def test_no_name_template_produces_a_warm_pool_members_name(user, template, prefix):
    """Pool members are nobody's until claimed: no user's name may map onto one (pool.py)."""
    member = pool.member_ref(prefix).name
    for limit in (names.NAMESPACE_MAX, names.VCLUSTER_NAME_MAX):
        produced = names.expand(template, names.user_fields(user, 1), limit)
        assert pool.MEMBER_MARK not in produced
    assert pool.MEMBER_MARK in member and names.dns1035_label(member, 63) != member


def test_ownership_compares_the_hubs_creation_time_where_both_know_it():
    alice = Owner("alice", "2026-01-01T10:00:00.123456Z")
    assert alice.owns(Owner("alice", "2026-01-01T10:00:00.123456+00:00").annotations())   # the same instant
    newcomer = Owner("alice", "2026-06-01T09:00:00Z")   # a new user with a removed user's name
    assert not newcomer.owns(alice.annotations()) and not alice.owns(newcomer.annotations())
    assert newcomer.owns(Owner("alice").annotations())   # recorded without a time (the provision CLI)
    assert Owner("alice").owns(alice.annotations())      # asked without a time (the CLI without the hub)


@given(usernames, st.text(max_size=30))
def test_ownership_needs_the_same_name(user, created):
    me = Owner(user, created)
    assert me.owns(me.annotations())
    assert not me.owns(Owner(user + "x", created).annotations())
    assert not me.owns({}) and not me.owns(None)
    assert me.owns(Owner(user).annotations())   # recorded by the provision CLI: name only


def test_namespace_labels_enforce_pod_security_and_win_over_the_operators():
    labels = namespace_labels(Owner("alice@example.org"), "restricted",
                              {"pod-security.kubernetes.io/enforce": "privileged", "team": "a"})
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert labels["team"] == "a" and labels["app.kubernetes.io/managed-by"] == "vcluster-spawner"
    assert LABEL_VALUE.match(labels["hub.jupyter.org/username"])


def test_a_namespace_is_repaired_only_where_it_differs():
    owner = Owner("alice", "2026-01-01T00:00:00Z")
    labels = namespace_labels(owner, "restricted")
    good = {"labels": labels, "annotations": {**owner.annotations(), VCLUSTER_ANNOTATION: "vc-alice"}}
    assert namespace_repair(good, owner, labels, "vc-alice") is None
    drifted = {"labels": {**labels, "pod-security.kubernetes.io/enforce": "privileged"},
               "annotations": Owner("alice").annotations()}
    assert namespace_repair(drifted, owner, labels, "vc-alice") == {"metadata": {
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        "annotations": {VCLUSTER_ANNOTATION: "vc-alice", "hub.jupyter.org/owner-created": "2026-01-01T00:00:00Z"}}}

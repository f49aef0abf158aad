"""The naming and ownership rules for any name the hub may accept (hypothesis; no cluster)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from vcluster_spawner import names
from vcluster_spawner.ownership import Owner, namespace_labels, namespace_repair

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# user names as people and authenticators make them: e-mail addresses, unicode, punctuation,
# upper case, very long, and names built to look like another's (hashed) name
usernames = st.one_of(
    st.text(min_size=1, max_size=120),
    st.emails(),
    st.from_regex(r"[a-z][a-z0-9-]{0,60}(--[0-9a-f]{10})?", fullmatch=True),
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
    assert DNS1035.match(vcluster(user)) and len(vcluster(user)) <= 53
    assert len(f"{vcluster(user)}-headless") <= 63
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
def test_a_hashed_name_never_equals_a_name_kept_as_it_is(text, limit):
    out = names.dns1035_label(text, limit)
    kept = out == text
    assert kept != bool(names.HASH_MARK.search(out)), (text, out)


def test_a_name_built_like_a_hashed_one_is_hashed_again():
    hashed = names.dns1035_label("Bob", 53)
    assert names.HASH_MARK.search(hashed)
    assert names.dns1035_label(hashed, 53) != hashed


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
    good = {"labels": labels, "annotations": owner.annotations()}
    assert namespace_repair(good, owner, labels) is None
    drifted = {"labels": {**labels, "pod-security.kubernetes.io/enforce": "privileged"},
               "annotations": Owner("alice").annotations()}
    assert namespace_repair(drifted, owner, labels) == {"metadata": {
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        "annotations": {"hub.jupyter.org/owner-created": "2026-01-01T00:00:00Z"}}}

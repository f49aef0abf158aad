"""The ownership gate (gate.py) without a cluster: which namespace is a user's, whatever names
the templates give; every caller asks it (tests/test_security.py attacks it end to end)."""

from __future__ import annotations

import pytest

from vcluster_spawner.gate import Directory, Found, choose
from vcluster_spawner.names import label_value
from vcluster_spawner.ownership import USERNAME_LABEL, VCLUSTER_ANNOTATION, Owner
from vcluster_spawner.pool import CLAIMED_AT, POOL_MEMBER
from vcluster_spawner.vcluster import NotOwned, Ref

ALICE = Owner("alice", "2026-01-01T00:00:00Z")
TEMPLATE = Ref("vc-alice", "vc-alice")


def ns(name: str, owner: Owner | None = ALICE, *, pool_member=False, claimed="", vcluster="", created="2026"):
    annotations = dict(owner.annotations()) if owner else {}
    labels = {USERNAME_LABEL: label_value(owner.name if owner else "x")}
    if pool_member:
        labels[POOL_MEMBER] = "true"
        annotations[CLAIMED_AT] = claimed
    if vcluster:
        annotations[VCLUSTER_ANNOTATION] = vcluster
    return {"name": name, "labels": labels, "annotations": annotations, "creationTimestamp": created}


def test_a_namespace_the_template_gives_is_not_the_users_unless_it_records_them():
    for other in (Owner("mallory"), Owner("alice", "2026-06-01T00:00:00Z"), None):   # someone, a newcomer, no one
        found = choose(ALICE, [ns("vc-alice", other)], None, TEMPLATE)
        assert found == Found(TEMPLATE, False)
        with pytest.raises(NotOwned):
            found.required(ALICE)
    assert choose(ALICE, [], None, TEMPLATE) == Found(TEMPLATE, False)   # nothing yet: a start may create it
    assert choose(ALICE, [ns("vc-alice")], None, TEMPLATE).required(ALICE) == TEMPLATE


def test_the_users_namespace_is_found_by_its_owner_whatever_its_name():
    # named by an earlier version's template (a 32-bit hash), the template now gives another name
    legacy = ns("vc-alice---1a2b3c4d", vcluster="vc-alice---1a2b3c4d")
    assert choose(ALICE, [legacy], None, TEMPLATE) == Found(Ref("vc-alice---1a2b3c4d", "vc-alice---1a2b3c4d"), True)
    # a claimed pool member wins over the template's (its vCluster is the user's), the newest claim first
    members = [ns("vc-pool-aa--pool", pool_member=True, claimed="2026-02-01T00:00:00Z"),
               ns("vc-pool-bb--pool", pool_member=True, claimed="2026-03-01T00:00:00Z")]
    assert choose(ALICE, [ns("vc-alice"), *members], None, TEMPLATE).ref.namespace == "vc-pool-bb--pool"
    # the one a caller already uses (saved state) wins, if it still records the user
    saved = Ref("vc-pool-aa--pool", "vc-pool-aa--pool")
    assert choose(ALICE, [ns("vc-alice"), *members], saved, TEMPLATE).ref == saved
    assert choose(ALICE, [ns("vc-alice")], saved, TEMPLATE).ref == TEMPLATE   # saved, no longer theirs


def test_a_pool_member_a_name_maps_onto_is_not_the_newcomers():
    """A hub user whose name gives a claimed member's name (the old naming: vc-{username} for a
    user called pool-3f9a0c21be) finds nothing of theirs; the lifecycle service, wake-ahead,
    the status page and the admin row act on nothing."""
    victim = ns("vc-pool-3f9a0c21be", Owner("bob"), pool_member=True, claimed="2026-02-01T00:00:00Z")
    newcomer = Owner("pool-3f9a0c21be")
    directory = Directory([victim])
    assert directory.find(newcomer, None, Ref("vc-pool-3f9a0c21be", "vc-pool-3f9a0c21be")).owned is False
    assert directory.find(Owner("bob"), None, None) == Found(Ref("vc-pool-3f9a0c21be", "vc-pool-3f9a0c21be"), True)


def test_a_template_that_needs_a_user_id_is_resolved_by_the_owner():
    assert choose(ALICE, [ns("jh-17")], None, None) == Found(Ref("jh-17", "jh-17"), True)
    assert choose(ALICE, [], None, None) == Found(None, False)

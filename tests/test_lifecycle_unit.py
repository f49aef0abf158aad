"""The lifecycle object's decisions, with a fake operations layer (no cluster): what each caller
gets from the one path in lifecycle.py. End to end, the same paths run in test_lifecycle.py,
test_hub_*.py and test_chart_rbac.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vcluster_spawner.lifecycle import VClusterLifecycle
from vcluster_spawner.ownership import OWNER_ANNOTATION, Owner
from vcluster_spawner.values import with_hash
from vcluster_spawner.vcluster import (
    DELETING,
    PAUSED,
    STARTING_AT,
    VALUES_HASH,
    NotOwned,
    Ref,
    State,
    Status,
    Superseded,
    VClusterError,
    status_of,
    values_hash_of,
)

REF = Ref("vc-ann", "vc-ann")


class FakeOps:
    """Records every operation; the StatefulSet's state is ``self.state``."""

    def __init__(self, state: Status, owned: bool | None = True):
        self.state, self.owned, self.calls = state, owned, []
        self.core = SimpleNamespace(delete_namespace=self._delete_namespace, patch_namespace=self._patch_namespace)
        self.current_claim: str | None = None   # the claim now (a start's or a wake's)

    async def _delete_namespace(self, name):
        self.calls.append(("delete_namespace", name))

    async def _patch_namespace(self, name, patch):
        if OWNER_ANNOTATION in patch["metadata"].get("annotations", {}):
            self.calls.append(("retire_namespace", name))

    async def namespaces_of(self, label):
        """What the ownership gate sees: the namespace, if it records ann."""
        return [{"name": REF.namespace, "annotations": Owner("ann").annotations()}] if self.owned else []

    async def ensure_namespace(self, ref, owner, labels, *, create, hub_binding):
        self.calls.append(("ensure_namespace", create))

    async def owns_namespace(self, ref, owner):
        return self.owned

    async def claim(self, ref):
        self.calls.append(("claim",))
        return self.state

    async def status(self, ref):
        return self.state

    async def install(self, ref, chart, values, report):
        self.calls.append(("install", values_hash_of(values)))
        self.state = Status(State.STARTING, version="9", values_hash=values_hash_of(values))
        return self.state

    async def apply_namespace_objects(self, ref, objects):
        self.calls.append(("apply", len(objects)))

    async def wake(self, ref):
        self.calls.append(("wake",))

    def _conditional(self, decided_on):
        if decided_on is not None and decided_on.claimed != self.current_claim:
            raise Superseded("claimed since")
        return decided_on and decided_on.claimed

    async def sleep(self, ref, timeout=180, *, decided_on=None):
        self.calls.append(("sleep", self._conditional(decided_on)))

    async def delete(self, ref, *, decided_on=None):
        self.calls.append(("delete", self._conditional(decided_on)))

    async def finish_delete(self, ref, timeout):
        self.calls.append(("finish_delete",))
        self.state = Status(State.ABSENT)


def settings(ops: FakeOps, *, mode="dynamic", values=None, home=True):
    homes = SimpleNamespace(calls=[])

    async def retire(ref, owner):
        homes.calls.append("retire")

    async def delete(spec, ref, owner, timeout):
        homes.calls.append("delete")
        return "pv-1"
    homes.retire, homes.delete = retire, delete
    s = SimpleNamespace(
        vcluster=REF, template_vcluster=REF, ops=ops, owner=Owner("ann"), hub_binding=None, vcluster_mode=mode,
        namespace_labels=lambda: {}, chart="vcluster 0.36.1",
        effective_values=lambda: with_hash(values or {"a": 1}, "vcluster 0.36.1"),
        rendered_namespace_objects=lambda: [], helm_timeout=60, vcluster_ready_timeout=60,
        home_enabled=home, homes=homes, home_spec=None, home_bind_timeout=60, warm_pool_size=0)
    s.use_vcluster = lambda ref: setattr(s, "vcluster", ref)
    return s


def reports():
    told = []
    return told, lambda progress, message: told.append(message)


async def test_an_absent_vcluster_is_created_and_its_values_hash_lands_on_it():
    ops = FakeOps(Status(State.ABSENT))
    told, report = reports()
    status = await VClusterLifecycle(settings(ops)).bring_up(report)
    wanted = values_hash_of(with_hash({"a": 1}, "vcluster 0.36.1"))
    assert ops.calls[:3] == [("ensure_namespace", True), ("claim",), ("install", wanted)]
    assert status.values_hash == wanted and "Creating your virtual cluster vc-ann" in told


async def test_the_hash_on_the_cluster_decides_an_upgrade_not_the_callers_memory():
    """Two named servers (two spawners, no shared memory) with the same values: the second
    start finds the hash on the StatefulSet and installs nothing; other values upgrade."""
    wanted = values_hash_of(with_hash({"a": 1}, "vcluster 0.36.1"))
    ops = FakeOps(Status(State.RUNNING, version="5", values_hash=wanted))
    for _ in range(2):
        await VClusterLifecycle(settings(ops)).bring_up()
    assert not [c for c in ops.calls if c[0] == "install"]

    told, report = reports()
    await VClusterLifecycle(settings(ops, values={"a": 2})).bring_up(report)
    assert [c[0] for c in ops.calls if c[0] == "install"] == ["install"]
    assert "Updating your virtual cluster vc-ann" in told


async def test_an_asleep_vcluster_is_woken_and_says_since_when():
    wanted = values_hash_of(with_hash({"a": 1}, "vcluster 0.36.1"))
    ops = FakeOps(Status(State.ASLEEP, since="2026-12-01T10:00:00.000Z", version="3", values_hash=wanted))
    told, report = reports()
    await VClusterLifecycle(settings(ops)).bring_up(report)
    assert ("wake",) in ops.calls
    assert any("asleep since 2026-12-01T10:00:00.000Z" in m for m in told)


async def test_a_start_that_finds_a_delete_under_way_finishes_it_then_creates_anew():
    ops = FakeOps(Status(State.ASLEEP, version="7", deleting=True))
    told, report = reports()
    await VClusterLifecycle(settings(ops)).bring_up(report)
    names = [c[0] for c in ops.calls]
    assert names.index("finish_delete") < names.index("install")
    assert ("wake",) not in ops.calls
    assert any("deletion of your previous virtual cluster" in m for m in told)


async def test_static_mode_never_creates_and_says_what_is_missing():
    ops = FakeOps(Status(State.ABSENT))
    with pytest.raises(VClusterError, match="no virtual cluster was provisioned for you"):
        await VClusterLifecycle(settings(ops, mode="static")).bring_up()
    assert ("ensure_namespace", False) in ops.calls
    assert not [c for c in ops.calls if c[0] == "install"]


async def test_sleep_and_delete_are_conditional_on_the_claim_decided_on():
    ops = FakeOps(Status(State.RUNNING, claimed="t1"))
    ops.current_claim = "t1"
    lifecycle = VClusterLifecycle(settings(ops))
    assert await lifecycle.sleep()                     # decided on the state now
    await lifecycle.delete(decided_on=Status(State.ASLEEP, claimed="t1"))
    assert ops.calls == [("sleep", "t1"), ("delete", "t1")]
    with pytest.raises(NotOwned):   # the gate finds no vCluster of ann's: nothing is done
        await VClusterLifecycle(settings(FakeOps(Status(State.RUNNING), owned=False))).sleep()

    ops.current_claim = "t2"   # a start claimed it after the decision
    with pytest.raises(Superseded):
        await lifecycle.delete(decided_on=Status(State.ASLEEP, claimed="t1"))
    assert ops.calls[-1] == ("delete", "t1")   # nothing more was done
    assert not await VClusterLifecycle(settings(FakeOps(Status(State.ABSENT)))).sleep()


RETIRED_THEN_DELETED = [("retire_namespace", "vc-ann"), ("delete", "t0"), ("delete_namespace", "vc-ann")]


@pytest.mark.parametrize("owned, delete_home, expected_ops, expected_home", [
    (False, True, [], []),                                              # not theirs: untouched
    (False, False, [], ["retire"]),                                     # their volumes only, retired
    (True, False, RETIRED_THEN_DELETED, ["retire"]),                    # retired first, then deleted
    (True, True, RETIRED_THEN_DELETED, ["delete"]),
])
async def test_removing_a_user_never_touches_what_is_not_theirs(owned, delete_home, expected_ops, expected_home):
    ops = FakeOps(Status(State.RUNNING, claimed="t0"), owned=owned)
    ops.current_claim = "t0"
    s = settings(ops)
    deleted = await VClusterLifecycle(s).remove_user(delete_home=delete_home, delete_namespace=True)
    assert ops.calls == expected_ops and s.homes.calls == expected_home
    assert deleted == ("pv-1" if expected_home == ["delete"] else None)


def test_status_is_read_from_the_statefulset_alone():
    sts = {"metadata": {"resourceVersion": "12", "annotations": {VALUES_HASH: "abc", PAUSED: "true",
                                                                 DELETING: "{}", STARTING_AT: "t"}},
           "spec": {"replicas": 0}, "status": {}}
    assert status_of(sts) == Status(State.ASLEEP, version="12", claimed="t", values_hash="abc", deleting=True)
    running = {"metadata": {"resourceVersion": "13"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    assert status_of(running).state == State.RUNNING and not status_of(running).deleting
    assert status_of(None) == Status(State.ABSENT)


def test_values_carry_their_hash_which_changes_with_them():
    a, b = with_hash({"x": 1}, "c"), with_hash({"x": 2}, "c")
    assert values_hash_of(a) and values_hash_of(a) != values_hash_of(b)
    assert with_hash({"x": 1}, "c") == a and values_hash_of({"x": 1}) is None

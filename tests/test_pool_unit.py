"""The warm pool and the wake ahead of a start, without a cluster: the pure names, labels and
writes (pool.py), the pool key, the lifecycle's choice between a member, the user's own and a
cold create (with a fake host API that enforces resourceVersion preconditions as the API server
does), the keeper's arithmetic and the wake-ahead's fence. End to end on the real vCluster:
test_hub_pool.py."""

from __future__ import annotations

import asyncio
import datetime
from types import SimpleNamespace

import kubespawner.spawner
import pytest
from kubernetes_asyncio.client.rest import ApiException

from vcluster_spawner import pool
from vcluster_spawner.gate import Found
from vcluster_spawner.lifecycle import VClusterLifecycle
from vcluster_spawner.ownership import OWNER_ANNOTATION, USERNAME_LABEL, Owner
from vcluster_spawner.services.warmpool import PoolSpec, PoolView, pool_views, prometheus_text
from vcluster_spawner.spawner import VClusterSpawner
from vcluster_spawner.vcluster import Ref, State, Status, Superseded


def now() -> datetime.datetime:
    # at the time of the call: the module is imported at collection, maybe an hour before a test runs
    return datetime.datetime.now(datetime.timezone.utc)


# ---- pure ---------------------------------------------------------------------------------------

def test_a_member_has_an_opaque_dns_name_and_no_user():
    refs = {pool.member_ref("vc-pool-") for _ in range(50)}
    assert len(refs) == 50
    for ref in refs:
        assert ref.namespace == ref.name and len(ref.name) == 26 and ref.name.startswith("vc-pool-")
        assert ref.name.endswith(pool.MEMBER_MARK)
    labels = pool.member_labels("k1", {USERNAME_LABEL: "ann", "pod-security.kubernetes.io/enforce": "restricted"})
    assert USERNAME_LABEL not in labels
    assert labels[pool.POOL_LABEL] == "k1" and labels[pool.POOL_MEMBER] == "true"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_claim_and_a_discard_are_conditional_writes_that_take_the_member_out_of_the_pool():
    claim = pool.claim_patch("41", Owner("ann@example.org", "2026-01-01"), {USERNAME_LABEL: "ann-40example-2eorg"})
    metadata = claim["metadata"]
    assert metadata["resourceVersion"] == "41"
    assert metadata["labels"][pool.POOL_LABEL] is None and metadata["labels"][pool.POOL_READY] is None
    assert metadata["annotations"][OWNER_ANNOTATION] == "ann@example.org"
    discard = pool.discard_patch("42", "x" * 500)["metadata"]
    assert discard["resourceVersion"] == "42" and discard["labels"][pool.POOL_LABEL] is None
    assert len(discard["annotations"][pool.DISCARDED]) == 200


@pytest.fixture
def make_spawner(monkeypatch):
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)

    def make(name="ann", **traits) -> VClusterSpawner:
        user = SimpleNamespace(name=name, id=1, url=f"/user/{name}/", spawners={}, created=None)
        spawner = VClusterSpawner(_mock=True, user=user, **traits)
        user.spawners[""] = spawner
        return spawner
    yield make
    VClusterSpawner._wake_aheads.clear()
    VClusterSpawner._woken_ahead.clear()
    VClusterSpawner._wake_ahead_at.clear()


async def test_the_pool_key_depends_on_the_values_not_on_the_user_and_the_claim_needs_no_helm(make_spawner):
    ann, bob = make_spawner("ann", warm_pool_size=2), make_spawner("bob", warm_pool_size=2)
    assert ann.pool_key() == bob.pool_key()
    gpu = make_spawner("ann", warm_pool_size=2, vcluster_values={"controlPlane": {"statefulSet": {
        "resources": {"limits": {"memory": "2Gi"}}}}})
    assert gpu.pool_key() != ann.pool_key()
    # a member is installed with values_for(member); after the claim the user's start computes
    # the same values hash for it, so bring_up runs no helm
    member = pool.member_ref("vc-pool-")
    installed = bob.values_for(member)
    ann.use_vcluster(member)
    assert ann.effective_values() == installed


async def test_settings_a_member_cannot_have_make_the_start_create_its_own(make_spawner):
    assert make_spawner(warm_pool_size=0).pool_refusal() == "no warm pool is configured for this profile"
    assert "public address" in make_spawner(warm_pool_size=1,
                                            external_api_host_template="{username}.k8s.example").pool_refusal()
    assert make_spawner(warm_pool_size=1).pool_refusal() is None
    with pytest.raises(Exception, match="warm_pool_prefix"):
        make_spawner(warm_pool_prefix="Bad_Prefix")


def test_pool_views_and_their_metrics():
    spec = SimpleNamespace(profile="gpu", key="k1", size=3)
    at = now()
    members = [pool.Member(Ref(f"m{i}", f"m{i}"), key, ready, at - datetime.timedelta(seconds=age), "1")
               for i, (key, ready, age) in enumerate([("k1", True, 30), ("k1", True, 90), ("k1", False, 5),
                                                      ("other", True, 999)])]
    [view] = pool_views([spec], members, at)
    assert (view.ready, view.starting, view.oldest_ready_age) == (2, 1, 90.0)
    text = prometheus_text([view, PoolView("", "k2", 1)])
    assert 'vcluster_spawner_warm_pool_members{pool="gpu",key="k1",state="ready"} 2' in text
    assert 'vcluster_spawner_warm_pool_oldest_ready_seconds{pool="gpu",key="k1"} 90' in text
    assert 'vcluster_spawner_warm_pool_size{pool="default",key="k2"} 1' in text


# ---- the lifecycle's choice, on a fake host that checks preconditions -------------------------------

class FakeHost:
    """Namespaces with labels, annotations and a resourceVersion; a patch that names an older
    resourceVersion is refused with 409, as the API server refuses it."""

    def __init__(self):
        self.namespaces: dict[str, dict] = {}
        self.version = 0
        self.states: dict[Ref, Status] = {}
        self.calls: list[tuple] = []
        self.before_patch = None   # a hook: another writer between a list and a patch

    def add(self, name, labels, annotations=None, age=0):
        self.version += 1
        self.namespaces[name] = {"labels": dict(labels), "annotations": dict(annotations or {}),
                                 "rv": str(self.version), "created": now() - datetime.timedelta(seconds=age)}

    def _object(self, name):
        ns = self.namespaces[name]
        return SimpleNamespace(metadata=SimpleNamespace(
            name=name, labels=ns["labels"], annotations=ns["annotations"], resource_version=ns["rv"],
            creation_timestamp=ns["created"], deletion_timestamp=None))

    async def list_namespace(self, label_selector):
        wanted = [term.split("=") if "=" in term else (term, None) for term in label_selector.split(",")]
        items = [self._object(n) for n, ns in self.namespaces.items()
                 if all(k in ns["labels"] and (v is None or ns["labels"][k] == v) for k, v in wanted)]
        return SimpleNamespace(items=items)

    async def patch_namespace(self, name, body):
        if self.before_patch:
            hook, self.before_patch = self.before_patch, None
            await hook()
        ns = self.namespaces.get(name)
        if ns is None:
            raise ApiException(status=404)
        metadata = body["metadata"]
        if metadata.get("resourceVersion") not in (None, ns["rv"]):
            raise ApiException(status=409)
        for field in ("labels", "annotations"):
            for k, v in (metadata.get(field) or {}).items():
                if v is None:
                    ns[field].pop(k, None)
                else:
                    ns[field][k] = v
        self.version += 1
        ns["rv"] = str(self.version)
        self.calls.append(("patch", name))

    async def delete_namespace(self, name):
        self.calls.append(("delete_namespace", name))
        self.namespaces.pop(name, None)


class PoolOps:
    def __init__(self, host: FakeHost):
        self.core, self.host = host, host

    async def status(self, ref):
        return self.host.states.get(ref, Status(State.ABSENT))

    async def observed(self, ref):
        return await self.status(ref), None

    async def owns_namespace(self, ref, owner):
        ns = self.host.namespaces.get(ref.namespace)
        return None if ns is None else owner.owns(ns["annotations"])

    async def namespaces_of(self, label):
        """What the ownership gate is shown: the namespaces labelled for the user."""
        return [{"name": name, "labels": ns["labels"], "annotations": ns["annotations"]}
                for name, ns in self.host.namespaces.items() if ns["labels"].get(USERNAME_LABEL) == label]


class Settings(SimpleNamespace):
    def use_vcluster(self, ref):
        self.vcluster = ref


def settings(host: FakeHost, *, user="ann", ref=Ref("vc-ann", "vc-ann"), size=2, refusal=None):
    moves = []

    async def move(spec, source, target, owner, timeout):
        moves.append((source.namespace, target.namespace))
    return Settings(vcluster=ref, template_vcluster=ref, ops=PoolOps(host), owner=Owner(user), warm_pool_size=size,
                    pool_refusal=lambda: refusal, pool_key=lambda: "k1",
                    namespace_labels=lambda: {USERNAME_LABEL: user}, home_enabled=True, home_spec=None,
                    home_bind_timeout=1, homes=SimpleNamespace(move=move, moves=moves))


def member(host: FakeHost, name, key="k1", ready=True, age=60, running=True):
    labels = {pool.POOL_LABEL: key, pool.POOL_MEMBER: "true"}
    if ready:
        labels[pool.POOL_READY] = "true"
    host.add(name, labels, age=age)
    if running:
        host.states[Ref(name, name)] = Status(State.RUNNING)


def told():
    messages = []
    return messages, lambda progress, message: messages.append(message)


async def test_a_first_start_claims_the_oldest_ready_member_and_makes_it_the_users():
    host = FakeHost()
    member(host, "vc-pool-young", age=10)
    member(host, "vc-pool-old", age=100)
    member(host, "vc-pool-starting", ready=False, age=500, running=False)
    member(host, "vc-pool-otherkey", key="k2", age=900)
    s = settings(host)
    messages, report = told()
    await VClusterLifecycle(s).take_from_pool(report)
    assert s.vcluster == Ref("vc-pool-old", "vc-pool-old")
    claimed = host.namespaces["vc-pool-old"]
    assert claimed["annotations"][OWNER_ANNOTATION] == "ann" and claimed["labels"][USERNAME_LABEL] == "ann"
    assert pool.POOL_LABEL not in claimed["labels"] and claimed["labels"][pool.POOL_MEMBER] == "true"
    assert any("comes ready from the warm pool" in m for m in messages)
    # the user's template namespace did not exist: nothing moved, nothing deleted
    assert s.homes.moves == [] and ("delete_namespace", "vc-ann") not in host.calls


async def test_two_starts_picking_the_same_last_member_one_wins_the_other_creates():
    host = FakeHost()
    member(host, "vc-pool-last")
    ann, bob = settings(host), settings(host, user="bob", ref=Ref("vc-bob", "vc-bob"))

    async def bob_claims_first():   # between ann's list and ann's conditional write
        await VClusterLifecycle(bob).take_from_pool()
    host.before_patch = bob_claims_first
    messages, report = told()
    await VClusterLifecycle(ann).take_from_pool(report)
    assert bob.vcluster == Ref("vc-pool-last", "vc-pool-last")
    assert ann.vcluster == Ref("vc-ann", "vc-ann")   # not claimed: it creates its own
    assert host.namespaces["vc-pool-last"]["annotations"][OWNER_ANNOTATION] == "bob"
    assert any("No warm virtual cluster is free" in m for m in messages)


async def test_a_dead_member_is_not_handed_out_and_a_mismatched_profile_gets_none():
    host = FakeHost()
    member(host, "vc-pool-dead", running=False)
    member(host, "vc-pool-k2", key="k2")
    s = settings(host)
    await VClusterLifecycle(s).take_from_pool()
    assert s.vcluster == Ref("vc-ann", "vc-ann")
    assert all(pool.POOL_LABEL in ns["labels"] for ns in host.namespaces.values())


async def test_a_start_after_the_users_vcluster_was_deleted_moves_the_home_and_drops_the_old_namespace():
    host = FakeHost()
    host.add("vc-pool-used", {pool.POOL_MEMBER: "true", USERNAME_LABEL: "ann"}, {OWNER_ANNOTATION: "ann"})
    member(host, "vc-pool-fresh")
    s = settings(host, ref=Ref("vc-pool-used", "vc-pool-used"))   # saved state; its vCluster was deleted
    await VClusterLifecycle(s).take_from_pool()
    assert s.vcluster == Ref("vc-pool-fresh", "vc-pool-fresh")
    assert s.homes.moves == [("vc-pool-used", "vc-pool-fresh")]
    assert "vc-pool-used" not in host.namespaces


async def test_a_start_interrupted_after_its_claim_is_found_again_and_no_second_member_is_taken():
    host = FakeHost()
    host.add("vc-pool-mine", {pool.POOL_MEMBER: "true", USERNAME_LABEL: "ann"}, {OWNER_ANNOTATION: "ann"})
    host.states[Ref("vc-pool-mine", "vc-pool-mine")] = Status(State.RUNNING)
    member(host, "vc-pool-free")
    s = settings(host)   # the hub restarted: no saved state, the template's name
    messages, report = told()
    await VClusterLifecycle(s).take_from_pool(report)
    assert s.vcluster == Ref("vc-pool-mine", "vc-pool-mine")
    assert pool.POOL_LABEL in host.namespaces["vc-pool-free"]["labels"]   # still free
    assert any("Found your virtual cluster vc-pool-mine" in m for m in messages)


async def test_an_existing_vcluster_is_used_and_a_refused_setting_is_said():
    host = FakeHost()
    member(host, "vc-pool-free")
    host.states[Ref("vc-ann", "vc-ann")] = Status(State.ASLEEP)
    s = settings(host)
    await VClusterLifecycle(s).take_from_pool()
    assert s.vcluster == Ref("vc-ann", "vc-ann")
    del host.states[Ref("vc-ann", "vc-ann")]
    s = settings(host, refusal="your virtual cluster has its own public address")
    messages, report = told()
    await VClusterLifecycle(s).take_from_pool(report)
    assert s.vcluster == Ref("vc-ann", "vc-ann")
    assert messages == ["Creating your virtual cluster: your virtual cluster has its own public address"]


async def test_the_whole_start_acts_on_the_claimed_member_and_runs_no_helm():
    host = FakeHost()
    member(host, "vc-pool-m")
    member_ref = Ref("vc-pool-m", "vc-pool-m")
    host.states[member_ref] = Status(State.RUNNING, values_hash="h")
    acted_on = []

    class StartOps(PoolOps):
        async def ensure_namespace(self, ref, owner, labels, *, create, hub_binding):
            acted_on.append(("ensure_namespace", ref))

        async def claim(self, ref):
            acted_on.append(("claim", ref))
            return await self.status(ref)

        async def install(self, ref, chart, values, report):
            acted_on.append(("install", ref))

        async def apply_namespace_objects(self, ref, objects):
            acted_on.append(("apply", ref))
    s = settings(host)
    s.ops = StartOps(host)
    s.vcluster_mode, s.hub_binding, s.chart = "dynamic", None, "c"
    s.effective_values = lambda: {"controlPlane": {"statefulSet": {"annotations": {"hub.jupyter.org/values-hash": "h"}}}}
    s.rendered_namespace_objects = lambda: []
    status = await VClusterLifecycle(s).bring_up()
    assert status.state == State.RUNNING
    assert acted_on == [("ensure_namespace", member_ref), ("claim", member_ref), ("apply", member_ref)]


# ---- the keeper ------------------------------------------------------------------------------------

async def test_the_keeper_fills_replaces_and_never_exceeds_size_plus_replacements(monkeypatch):
    from vcluster_spawner.services import warmpool

    host = FakeHost()
    member(host, "vc-pool-ok")
    member(host, "vc-pool-broken", running=False)
    member(host, "vc-pool-stale", key="old")
    member(host, "vc-pool-stuck", ready=False, age=1000, running=False)
    member(host, "vc-pool-young", ready=False, age=20, running=False)   # left starting by a restart
    created, discarded, resumed = [], [], []

    class Keeper(warmpool.PoolKeeper):
        async def _create(self, warm, spec, ref):
            created.append(ref)

        async def _build(self, warm, spec, m):
            resumed.append(m.ref.name)

    async def discard(self, m, reason):
        discarded.append((m.ref.name, reason))
        return True
    monkeypatch.setattr(pool.WarmPool, "discard", discard)
    ops = PoolOps(host)
    spec_settings = SimpleNamespace(ops=ops, pool_key=lambda: "k1", vcluster_ready_timeout=300,
                                    warm_pool_prefix="vc-pool-")
    keeper = Keeper(ops, [PoolSpec("", spec_settings, 3)])
    [view] = await keeper.keep()
    await keeper.settle()
    assert sorted(discarded) == [("vc-pool-broken", "its control plane stopped running"),
                                 ("vc-pool-stale", "its pool is no longer configured"),
                                 ("vc-pool-stuck", "not ready in time")]
    # one ready, one resumed, the stuck one counted as starting while it is replaced: 3 - 1 - 2 = 0 new
    assert resumed == ["vc-pool-young"]
    assert (view.ready, view.starting, created) == (1, 2, [])
    # next pass (the stuck one gone, the young one still building): one more is made
    del host.namespaces["vc-pool-stuck"]
    keeper._building[Ref("vc-pool-young", "vc-pool-young")] = asyncio.ensure_future(asyncio.sleep(0))
    [view] = await keeper.keep()
    await keeper.settle()
    assert (view.ready, view.starting, len(created)) == (1, 2, 1)

    # the pools are switched off (no specs): every unclaimed member is discarded
    discarded.clear()
    off = Keeper(ops, [])
    assert await off.keep() == []
    await off.settle()
    assert {name for name, _ in discarded} == {"vc-pool-ok", "vc-pool-broken", "vc-pool-stale", "vc-pool-young"}


# ---- waking ahead ---------------------------------------------------------------------------------

async def test_the_spawn_page_wakes_an_asleep_vcluster_and_it_sleeps_again_unless_started(make_spawner, monkeypatch):
    calls = []

    class Ops:
        state = Status(State.ASLEEP, claimed="t0")

        async def status(self, ref):
            return self.state

        async def wake(self, ref, ahead=False):
            calls.append(("wake", ahead))
            self.state = Status(State.STARTING, claimed="t1")
            return self.state

    ops = Ops()

    class Lifecycle:
        owned = True

        async def resolve(self):   # the ownership gate
            return Found(Ref("vc-ann", "vc-ann"), self.owned)

        async def wake(self, ahead=False):
            return await ops.wake(None, ahead=ahead)

        async def sleep(self, decided_on=None):
            if ops.state.claimed != decided_on.claimed:
                raise Superseded("claimed since")
            calls.append(("sleep", decided_on.claimed))
    lifecycle = Lifecycle()
    monkeypatch.setattr(VClusterSpawner, "ops", property(lambda self: ops))
    monkeypatch.setattr(VClusterSpawner, "lifecycle", property(lambda self: lifecycle))
    spawner = make_spawner(wake_ahead_timeout=0.2, wake_ahead_min_interval=0,
                           profile_list=[{"display_name": "A", "slug": "a"}])
    assert await spawner.get_options_form()
    task = VClusterSpawner._wake_aheads[spawner.vcluster]
    await spawner.get_options_form()   # the page again: no second wake
    await task
    assert calls == [("wake", True), ("sleep", "t1")]

    # woken, then a start elsewhere claims it (a second hub): the sleep is superseded
    calls.clear()
    ops.state = Status(State.ASLEEP, claimed="t1")
    await spawner.get_options_form()
    task = VClusterSpawner._wake_aheads[spawner.vcluster]
    await asyncio.sleep(0.05)
    ops.state = Status(State.RUNNING, claimed="t2")
    await task
    assert calls == [("wake", True)]

    # not the user's (the gate finds no namespace recording them), or being deleted: not woken
    for owned, state in ((False, Status(State.ASLEEP)), (True, Status(State.ASLEEP, deleting=True))):
        calls.clear()
        lifecycle.owned, ops.state = owned, state
        await spawner.get_options_form()
        await VClusterSpawner._wake_aheads[spawner.vcluster]
        assert calls == []
    lifecycle.owned = True

    # the page reloaded again and again: one wake per wake_ahead_min_interval
    calls.clear()
    ops.state = Status(State.ASLEEP, claimed="t1")
    limited = make_spawner("cy", wake_ahead_timeout=0.05, wake_ahead_min_interval=60,
                           profile_list=[{"display_name": "A", "slug": "a"}])
    for _ in range(3):
        await limited.get_options_form()
        task = VClusterSpawner._wake_aheads.get(limited.vcluster)
        if task:
            await task
        ops.state = Status(State.ASLEEP, claimed="t1")
    assert calls == [("wake", True), ("sleep", "t1")]

    # no form (no profiles): nothing is woken; a running vCluster: nothing either
    plain = make_spawner("bob", wake_ahead_timeout=0.2)
    await plain.get_options_form()
    assert plain.vcluster not in VClusterSpawner._wake_aheads


async def test_the_pools_come_from_the_profiles_and_profiles_with_the_same_values_share_one(monkeypatch):
    from traitlets.config import Config

    from vcluster_spawner.services.warmpool import pool_specs
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    config = Config()
    quota = {"policies": {"resourceQuota": {"enabled": True}}}
    config.VClusterSpawner.profile_list = [
        {"display_name": "Small", "slug": "small", "default": True, "kubespawner_override": {"warm_pool_size": 1}},
        {"display_name": "Also small", "slug": "also", "kubespawner_override": {"warm_pool_size": 3}},
        {"display_name": "Quota", "slug": "quota", "kubespawner_override": {"warm_pool_size": 2,
                                                                           "vcluster_values": quota}},
        {"display_name": "None", "slug": "none"},
        {"display_name": "Public", "slug": "public", "kubespawner_override": {
            "warm_pool_size": 2, "external_api_host_template": "{username}.k8s.example"}},
    ]
    specs = {spec.profile: spec for spec in await pool_specs(config)}
    assert sorted(specs) == ["also", "quota"]   # "small" shares "also"'s pool, the larger size wins
    assert specs["also"].size == 3 and specs["quota"].size == 2
    assert specs["also"].key != specs["quota"].key
    config.VClusterSpawner.vcluster_mode = "static"
    assert await pool_specs(config) == []

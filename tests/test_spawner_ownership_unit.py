"""The spawner's removal path against a fake operations layer (no cluster): what it deletes
depends on ownership and on the user's other servers, never on names alone."""

from __future__ import annotations

from types import SimpleNamespace

import kubespawner.spawner
import pytest
from traitlets import TraitError

from vcluster_spawner.ownership import REMOVED_OWNER_ANNOTATION, Owner
from vcluster_spawner.spawner import VClusterSpawner
from vcluster_spawner.vcluster import State, Status


class FakeOps:
    def __init__(self, owned: bool | None):
        self.owned = owned
        self.calls: list[str] = []

        self.core = SimpleNamespace(patch_namespace=self._patch_namespace)

    async def namespaces_of(self, label):
        """What the ownership gate is shown: alice's namespace, if it records her."""
        self.calls.append(f"gate {label}")
        return [{"name": "vc-alice", "annotations": Owner("alice").annotations()}] if self.owned else []

    async def _patch_namespace(self, name, patch):
        if patch["metadata"]["annotations"].get(REMOVED_OWNER_ANNOTATION):
            self.calls.append(f"retire {name}")

    async def status(self, ref):
        return Status(State.RUNNING, claimed="t0")

    async def delete(self, ref, **kwargs):
        self.calls.append(f"delete {ref}")


class FakeHomes:
    def __init__(self):
        self.calls: list[str] = []

    async def retire(self, ref, owner):
        self.calls.append(f"retire {ref.namespace}")

    async def delete(self, spec, ref, owner, timeout, pv=None):
        self.calls.append(f"delete-home {ref.namespace}")


def spawner(monkeypatch, *, name: str = "", servers=("",), owned: bool | None = True) -> VClusterSpawner:
    # KubeSpawner loads a kubeconfig when constructed; nothing here talks to a cluster
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    user = SimpleNamespace(name="alice", id=1, url="/user/alice/", spawners={}, created=None,
                           orm_user=SimpleNamespace(orm_spawners={s: object() for s in servers}))
    s = VClusterSpawner(_mock=True, user=user, orm_spawner=SimpleNamespace(name=name, server=None),
                        delete_namespace_on_delete_forever=False)
    ops, homes = FakeOps(owned), FakeHomes()
    monkeypatch.setattr(VClusterSpawner, "ops", property(lambda self: ops))
    monkeypatch.setattr(VClusterSpawner, "homes", property(lambda self: homes))
    return s


async def test_removing_a_named_server_keeps_the_vcluster_while_another_server_exists(monkeypatch):
    # after a hub restart only started servers are loaded: the hub's database is asked
    s = spawner(monkeypatch, name="gpu", servers=("", "gpu"))
    await s.delete_forever()
    assert s.ops.calls == [] and s.homes.calls == []


async def test_removing_the_user_deletes_only_what_the_user_owns(monkeypatch):
    s = spawner(monkeypatch, owned=True)
    await s.delete_forever()
    # retired before anything is deleted: a failure after it hands nothing to a newcomer
    assert s.ops.calls == ["gate alice", "retire vc-alice", "delete vc-alice/vc-alice"]
    assert s.homes.calls == ["retire vc-alice"]   # kept, out of a newcomer's reach


@pytest.mark.parametrize("owned", [False])
async def test_a_namespace_of_someone_else_is_left_alone_on_removal(monkeypatch, owned):
    s = spawner(monkeypatch, owned=owned)
    await s.delete_forever()
    assert s.ops.calls == ["gate alice"]
    assert s.homes.calls == ["retire vc-alice"]   # volumes that record alice only (home.py)


async def test_home_data_is_deleted_on_removal_only_when_configured(monkeypatch):
    s = spawner(monkeypatch, owned=True)
    s.delete_home_on_delete_forever = True
    await s.delete_forever()
    assert s.homes.calls == ["delete-home vc-alice"]


@pytest.mark.parametrize("setting", [{"enable_user_namespaces": True}, {"storage_pvc_ensure": True},
                                     {"namespace": "jhub"}, {"internal_ssl": True}, {"services_enabled": True}])
async def test_kubespawner_settings_that_cannot_work_are_refused_by_name(monkeypatch, setting):
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    user = SimpleNamespace(name="alice", id=1, url="/user/alice/", spawners={})
    with pytest.raises(TraitError, match=next(iter(setting))):
        VClusterSpawner(_mock=True, user=user, **setting)


async def test_a_survival_notice_with_an_unknown_field_is_refused_at_start_up(monkeypatch):
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    user = SimpleNamespace(name="alice", id=1, url="/user/alice/", spawners={})
    with pytest.raises(TraitError, match=r"survival_notice may use the fields \{home\} and \{cluster\} only"):
        VClusterSpawner(_mock=True, user=user, survival_notice="Save your work in {homedir}.")
    ok = VClusterSpawner(_mock=True, user=user, survival_notice="Save your work in {home}; {cluster} is wiped.")
    assert ok.survival_notice.endswith("is wiped.")


@pytest.mark.parametrize("action", ["sleep", "delete"])
async def test_the_stop_action_of_a_refused_start_touches_nothing_that_is_not_the_users(monkeypatch, action):
    """A start refused because the namespace its name maps onto is someone else's is cleaned up
    with the stop action: the gate finds nothing of the user's, so nothing is slept or deleted
    (before the gate, the clean-up uninstalled whatever vCluster that namespace held)."""
    s = spawner(monkeypatch, owned=False)
    s.stop_action = action
    await s._apply_stop_action()
    assert s.ops.calls == ["gate alice"]

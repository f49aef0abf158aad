"""The spawner's orchestration around the lifecycle object, with a fake lifecycle (no cluster):
the stop action after the grace period, its cancellation by a start, and the stop action of a
server that ended on its own (found by poll)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import kubespawner.spawner
import pytest

from vcluster_spawner.spawner import VClusterSpawner, host_refused


class FakeLifecycle:
    def __init__(self):
        self.calls: list[str] = []

    async def resolve(self, directory=None):
        from vcluster_spawner.gate import Found
        from vcluster_spawner.vcluster import Ref
        return Found(Ref("vc-alice", "vc-alice"), True)

    async def bring_up(self, report, found=None):
        self.calls.append("bring_up")

    async def wait_ready(self, virtual, report):
        self.calls.append("wait_ready")

    async def sleep(self, decided_on=None):
        self.calls.append("sleep")
        return True

    async def delete(self, decided_on=None):
        self.calls.append("delete")


@pytest.fixture
def make_spawner(monkeypatch):
    # KubeSpawner loads a kubeconfig when constructed; nothing here talks to a cluster
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    lifecycle = FakeLifecycle()
    monkeypatch.setattr(VClusterSpawner, "lifecycle", property(lambda self: lifecycle))

    def make(**traits) -> VClusterSpawner:
        user = SimpleNamespace(name="alice", id=1, url="/user/alice/", spawners={}, created=None)
        spawner = VClusterSpawner(_mock=True, user=user, stop_action="sleep", **traits)
        user.spawners[""] = spawner

        async def host_side():
            return None
        spawner._prepare_host_side = host_side
        spawner._prepare_notebook_access = lambda host: asyncio.sleep(0)
        return spawner
    yield make, lifecycle
    VClusterSpawner._stop_actions.clear()


async def test_the_stop_action_waits_the_grace_period_and_a_start_cancels_it(make_spawner):
    make, lifecycle = make_spawner
    spawner = make(sleep_grace_period=0.3)
    await spawner._release_vcluster()
    pending = VClusterSpawner._stop_actions[spawner.vcluster]
    await spawner._prepare_vcluster()            # a start within the grace period
    await asyncio.gather(pending, return_exceptions=True)
    assert pending.cancelled()
    assert "sleep" not in lifecycle.calls and lifecycle.calls == ["bring_up", "wait_ready"]

    await spawner._release_vcluster()            # a stop, and no start this time
    await VClusterSpawner._stop_actions[spawner.vcluster]
    assert lifecycle.calls[-1] == "sleep"


async def test_no_stop_action_while_another_server_of_the_user_runs(make_spawner):
    make, lifecycle = make_spawner
    spawner = make(sleep_grace_period=0)
    spawner.user.spawners["gpu"] = SimpleNamespace(active=True)
    await spawner._release_vcluster()
    assert lifecycle.calls == []


async def test_a_server_that_ended_on_its_own_gets_the_stop_action_from_poll(make_spawner, monkeypatch):
    """JupyterHub calls no stop() for a server whose pod went away (culled by an admin, say):
    the first poll that sees it gone applies the stop action, once."""
    make, lifecycle = make_spawner
    spawner = make(sleep_grace_period=0)

    async def pod_gone(self):
        return 1
    monkeypatch.setattr(kubespawner.spawner.KubeSpawner, "poll", pod_gone)
    spawner._running = True
    assert await spawner.poll() == 1
    assert await spawner.poll() == 1
    await asyncio.gather(*VClusterSpawner._background)
    assert lifecycle.calls == ["sleep"]


@pytest.mark.parametrize("message,refused", [
    # what the real syncer 0.36.1 reported while 20 vClusters started at once; it retries this
    ('Error syncing: patch host object: update object status: Operation cannot be fulfilled on pods '
     '"jupyter-c20u6": the object has been modified; please apply your changes to the latest version and try again',
     False),
    ("Error syncing: create object: Post \"https://10.0.0.1:443/api/v1/namespaces/vc-a/pods\": context deadline exceeded",
     False),
    ('Error syncing to physical cluster: pods "jupyter-amy-x-default-x-vc-amy" is forbidden: violates PodSecurity '
     '"restricted:latest": privileged', True),
    ('Error syncing: create object: pods "x" is forbidden: ValidatingAdmissionPolicy "vcs-tenant-workloads" with binding '
     '"vcs-tenant-workloads" denied request: volume type not allowed', True),
    ('Error syncing: admission webhook "policy.example.org" denied the request: no', True),
    ('Error syncing: Pod "x" is invalid: spec.containers[0].image: Required value', True),
])
def test_only_the_hosts_refusals_fail_a_start_not_the_syncers_retried_errors(message, refused):
    assert host_refused(message) is refused

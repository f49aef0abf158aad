"""The private parts of the pinned KubeSpawner (jupyterhub-kubespawner 7.1) and JupyterHub that
VClusterSpawner and watches.py rely on, gathered here: an upgrade that changes one fails this
file, not a user's start. Also the watches' own behaviour, without a cluster."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from jupyterhub.utils import exponential_backoff
from kubespawner import KubeSpawner
from kubespawner.reflector import ResourceReflector

from vcluster_spawner.watches import ANY, ControlPlanes, WatchLost

# (object, attribute) pairs VClusterSpawner overrides or calls
SPAWNER_SEAMS = ["_start", "_start_reflector", "_get_reflector_key", "_start_watching_pods", "_start_watching_events",
                 "is_pod_running", "_get_pod_url", "_validate_user_options", "_get_profile", "load_user_options",
                 "_make_create_pod_request", "reflectors"]


@pytest.mark.parametrize("name", SPAWNER_SEAMS)
def test_kubespawner_still_has_each_seam(name):
    assert hasattr(KubeSpawner, name), f"KubeSpawner.{name} is gone: see vcluster_spawner/spawner.py"


def test_kubespawner_waits_for_the_pod_through_is_pod_running_in_a_backoff():
    # VClusterSpawner.is_pod_running answers with an awaitable during a start (woken by the watch)
    source = inspect.getsource(KubeSpawner._start)
    assert "exponential_backoff(" in source and "self.is_pod_running(self.pod_reflector.pods.get(ref_key" in source
    assert list(inspect.signature(KubeSpawner._start_reflector).parameters)[:4] == [
        "self", "kind", "reflector_class", "replace"]


async def test_exponential_backoff_awaits_an_awaitable_answer():
    woken = asyncio.Event()

    async def until_woken():
        await woken.wait()
        return True
    asyncio.get_running_loop().call_later(0.05, woken.set)
    assert await exponential_backoff(until_woken, "never", timeout=5) is True


def test_the_reflector_stores_events_the_way_watches_py_observes():
    watch = inspect.getsource(ResourceReflector._watch_and_update)
    assert "self.resources.pop(ref_key, None)" in watch and "self.resources[ref_key] = resource" in watch
    assert "self.resources = {" in inspect.getsource(ResourceReflector._list_and_update)
    for name in ("first_load_future", "watch_task", "_stopping"):
        assert name in inspect.getsource(ResourceReflector.__init__) + inspect.getsource(ResourceReflector)


def _reflector() -> ControlPlanes:
    reflector = ControlPlanes()
    reflector.first_load_future.set_result(None)
    return reflector


async def test_a_waiter_is_woken_by_the_event_on_its_object_only():
    reflector = _reflector()
    woken = []

    def ready(resources):
        woken.append(1)
        return resources.get("ns/a", {}).get("ready")
    waiting = asyncio.ensure_future(reflector.until(ready, "ns/a", timeout=5))
    await asyncio.sleep(0)
    reflector.resources["ns/b"] = {"ready": True}      # another object: not re-checked
    await asyncio.sleep(0)
    assert len(woken) == 1
    reflector.resources["ns/a"] = {"ready": False}
    while len(woken) < 2:      # re-checked on its own object's event
        await asyncio.sleep(0)
    reflector.resources["ns/a"] = {"ready": True}
    assert await waiting is True and len(woken) == 3


async def test_a_relist_wakes_everyone_and_a_removal_is_an_event():
    reflector = _reflector()
    reflector.resources["ns/a"] = {}
    gone = asyncio.ensure_future(reflector.until(lambda r: "ns/a" not in r, "ns/a", timeout=5))
    anything = asyncio.ensure_future(reflector.until(lambda r: "ns/c" in r, ANY, timeout=5))
    await asyncio.sleep(0)
    reflector.resources.pop("ns/a", None)
    assert await gone
    reflector.resources = {"ns/c": {}}
    assert await anything


async def test_a_waiter_times_out_and_a_dead_watch_is_not_waited_on():
    reflector = _reflector()
    with pytest.raises(asyncio.TimeoutError):
        await reflector.until(lambda r: False, "ns/a", timeout=0.05)
    reflector.watch_task = asyncio.ensure_future(asyncio.sleep(0))
    await reflector.watch_task                           # the watch gave up
    with pytest.raises(WatchLost, match="statefulsets"):
        await reflector.until(lambda r: False, "ns/a", timeout=5)

"""Shared host watches whose events wake the coroutines waiting on them.

One watch per kind serves every user (KubeSpawner's ``ResourceReflector``: a list, then a watch
that keeps ``resources`` current). The mixin here adds what the reflector lacks: a waiter is
woken by the event that changes the object it waits for, instead of polling the cache or the
API server. KubeSpawner's reflector stores each event with ``resources[key] = obj`` or
``resources.pop(key)`` and each re-list with ``resources = {...}``
(kubespawner/reflector.py, jupyterhub-kubespawner 7.1; pinned in tests/test_kubespawner_seams.py),
so ``resources`` is made a dict that tells its reflector about every change.

Watches here are cluster-wide: the hub may list and watch StatefulSets, Pods, events and
PersistentVolumeClaims (read-only, docs/install.md "RBAC"); it may not list Secrets
cluster-wide, so Secrets are not watched.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client
from kubespawner.reflector import MultiNamespaceResourceReflector, ResourceReflector
from kubespawner.spawner import EventReflector, PodReflector

from .ownership import MANAGED_BY, MANAGED_BY_VALUE

T = TypeVar("T")
log = logging.getLogger("vcluster_spawner.watches")
ANY = object()   # the key of a waiter woken by a change to any object


class WatchLost(RuntimeError):
    """The watch a waiter relied on has stopped (its first list failed, or it gave up)."""


class _Resources(dict):
    """The reflector's store; item changes are reported to ``changed(key)``."""

    def __init__(self, items, changed: Callable[[Any], None]):
        super().__init__(items)
        self._changed = changed

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._changed(key)

    def pop(self, key, *default):
        value = super().pop(key, *default)
        self._changed(key)
        return value


class Watched:
    """Mixin for a ``ResourceReflector``: waiters woken by the watch's events."""

    @property
    def resources(self) -> dict:
        store = self.__dict__.get("_store")
        if store is None:
            store = self.__dict__["_store"] = _Resources({}, self._changed)
        return store

    @resources.setter
    def resources(self, items: dict) -> None:
        self.__dict__["_store"] = _Resources(items, self._changed)
        self._changed(ANY)   # a re-list: anything may have changed

    @property
    def _waiters(self) -> dict[Any, set[asyncio.Future]]:
        return self.__dict__.setdefault("_waiting", {})

    def _changed(self, key) -> None:
        keys = list(self._waiters) if key is ANY else [key, ANY]
        for k in keys:
            for future in self._waiters.pop(k, ()):
                if not future.done():
                    future.set_result(None)

    async def start(self):
        await super().start()
        # a watch that gives up wakes its waiters, which then see gave_up()
        self.watch_task.add_done_callback(lambda _: self._changed(ANY))

    def gave_up(self) -> bool:
        """Is this watch dead (kubespawner/reflector.py 7.1)? Its first list failed
        (``first_load_future`` holds the error; it never watched), or its watch task ended, which
        happens when it gives up after ~1 min of failures, not while it is reconnecting."""
        if self._stopping:
            return False
        first = self.first_load_future
        if first.done() and (first.cancelled() or first.exception() is not None):
            return True
        return self.watch_task is not None and self.watch_task.done()

    async def until(self, check: Callable[[dict], T], key=ANY, timeout: float | None = None) -> T:
        """``check(resources)`` once it is true (returned), re-evaluated on every change of
        ``key`` (any object's by default). ``asyncio.TimeoutError`` after ``timeout`` seconds;
        ``WatchLost`` if the watch stops; exceptions from ``check`` propagate."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            result = check(self.resources)
            if result:
                return result
            if self.gave_up():
                raise WatchLost(f"the hub's watch of {self.kind} on the host cluster has stopped")
            change = loop.create_future()
            self._waiters.setdefault(key, set()).add(change)
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(change, remaining)
            finally:
                self._waiters.get(key, set()).discard(change)


class WatchedPods(Watched, PodReflector):
    """Host pods (KubeSpawner's pod watch: notebook pods, by their ``component`` label)."""


class WatchedEvents(Watched, EventReflector):
    """Host events (KubeSpawner's event watch)."""


class ControlPlanePods(Watched, MultiNamespaceResourceReflector):
    """Every vCluster's control plane pod (label ``app: vcluster``, upstream
    chart/templates/statefulset.yaml v0.36.1)."""
    kind = "pods"
    list_method_name = "list_pod_for_all_namespaces"


class ControlPlanes(Watched, MultiNamespaceResourceReflector):
    """Every vCluster's StatefulSet (label ``app: vcluster``)."""
    kind = "statefulsets"
    api_group_name = "AppsV1Api"
    list_method_name = "list_stateful_set_for_all_namespaces"


class FailedCreates(Watched, EventReflector):
    """``FailedCreate`` events of StatefulSets: the host refused a control plane pod
    (Pod Security admission, a quota), which otherwise looks like a slow start."""
    omit_namespace = True   # as MultiNamespaceResourceReflector


class SpawnerClaims(Watched, MultiNamespaceResourceReflector):
    """The claims the spawner makes on the host (label ``app.kubernetes.io/managed-by:
    vcluster-spawner``): a first home volume's provisioning claim, waited for until bound."""
    kind = "persistentvolumeclaims"
    list_method_name = "list_persistent_volume_claim_for_all_namespaces"


# reflector class → constructor keyword arguments; one watch of each per process
HOST_WATCHES: dict[type[ResourceReflector], dict] = {
    ControlPlanes: {"labels": {"app": "vcluster"}},
    ControlPlanePods: {"labels": {"app": "vcluster"}},
    FailedCreates: {"fields": {"involvedObject.kind": "StatefulSet", "reason": "FailedCreate"}},
    SpawnerClaims: {"labels": {MANAGED_BY: MANAGED_BY_VALUE}},
}


# event loop → {(class, API server): reflector}, and the lock of each key
_watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_starting: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def host_watch(kind: type[Watched], api_client=None) -> Watched:
    """This process's watch of ``kind`` (one of ``HOST_WATCHES``) on the API server
    ``api_client`` talks to (default: KubeSpawner's shared client), started on first use and
    started again when it has given up, so no caller waits on a stale cache. One per API
    server: a process that talks to two clusters (the test suite does) watches each."""
    loop = asyncio.get_running_loop()
    running = _watches.setdefault(loop, {})
    key = (kind, api_client.configuration.host if api_client is not None else None)
    async with _starting.setdefault(loop, {}).setdefault(key, asyncio.Lock()):
        current = running.get(key)
        if current is not None and not current.gave_up():
            return current
        if current is not None:
            log.warning("the shared host watch of %s had stopped; starting it again", kind.__name__)
            asyncio.ensure_future(current.stop())
        reflector = kind(**HOST_WATCHES[kind])
        if api_client is not None:
            reflector.api = getattr(client, reflector.api_group_name)(api_client)
        running[key] = reflector
        await reflector.start()
        return reflector


async def stop_host_watches() -> None:
    """Stop this loop's watches (a short-lived process before it exits)."""
    for reflector in _watches.pop(asyncio.get_running_loop(), {}).values():
        await reflector.stop()

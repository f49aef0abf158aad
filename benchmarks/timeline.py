"""When each step of a spawn happened: from the hub's log, and from an independent observer.

The hub log (``--debug``) has millisecond timestamps for the spawner's progress phases
(``VClusterSpawner._phase``), KubeSpawner's pod creation, JupyterHub's readiness check and
the proxy's route. The observer sees what the spawner cannot report: when the control plane
was *actually* ready (polled every 0.1 s with the spawner's own readiness criteria, so the
spawner's detection lag is measurable) and when the host pod was created, running and Ready
(a watch on the user's host namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import time
from pathlib import Path

from kubernetes_asyncio import client, watch

from vcluster_spawner.vcluster import Ref, State, VClusterOps, VirtualClient

_HUB_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) JupyterHub \S+\] (.*)$")
_CHP_ROUTE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \[ConfigProxy\] .*Route added (\S+) ->")

# the spawner's progress messages (vcluster_spawner/spawner.py) -> instant names
_PHASES = (
    ("Creating your virtual cluster", "provision_begin"),
    ("Updating your virtual cluster", "provision_begin"),
    ("Waking your virtual cluster", "wake_begin"),
    ("Your virtual cluster", "running_seen"),
    ("Waiting for the virtual cluster's control plane", "cp_wait_begin"),
    ("Control plane is up", "cp_seen"),
    ("API is up", "api_seen"),
    ("Virtual cluster ready", "vc_ready_seen"),
    ("Starting your notebook server", "notebook_begin"),
    ("putting vCluster", "sleep_begin"),
    ("deleting vCluster", "delete_begin"),
)


def _local(ts: str) -> float:
    # JupyterHub logs local time without a zone; naive datetimes are local, like time.time()
    return datetime.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def _utc(ts: str) -> float:
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()


def _match(user: str, message: str) -> tuple[str, float | None] | None:
    """The instant name a hub log message marks for ``user`` (and a duration it carries)."""
    if message.startswith(f"{user}: "):
        text = message[len(user) + 2:]
        for prefix, name in _PHASES:
            if text.startswith(prefix):
                return name, None
        return None
    if message == f"Calling Spawner.start for {user}":
        return "start_called", None
    if message.startswith(f"Attempting to create pod jupyter-{user},"):
        return "pod_create_request", None
    if message.startswith("Server at ") and f"/user/{user}/" in message and " responded in " in message:
        return "server_responded", None
    if message.startswith(f"User {user} took ") and message.endswith("seconds to start"):
        return "spawn_done", None
    if message.startswith(f"User {user} server took ") and message.endswith("seconds to stop"):
        return "stop_done", float(message.split(" took ")[1].split()[0])
    if message == f"Stopping {user}":
        return "stop_called", None
    return None


def hub_instants(log: Path, user: str, since: float) -> tuple[dict[str, float], dict[str, float]]:
    """First occurrence after ``since`` of every marked instant for ``user`` (absolute times),
    plus durations logged by the hub itself (``stop_done``)."""
    instants: dict[str, float] = {}
    durations: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _HUB_LINE.match(line)
        if m:
            at = _local(m[1])
            hit = _match(user, m[2])
        else:
            c = _CHP_ROUTE.match(line)
            if not c or c[2] != f"/user/{user}":
                continue
            at, hit = _utc(c[1]), ("route_added", None)
        if hit is None or at < since - 0.001 or hit[0] in instants:
            continue
        instants[hit[0]] = at
        if hit[1] is not None:
            durations[hit[0]] = hit[1]
    return instants, durations


class Observer:
    """Watches one user's host namespace during one spawn.

    ``vcluster``: also poll the control plane's readiness the way the spawner judges it
    (StatefulSet ready and not paused, then ServiceAccount default/default through the virtual
    API), every 0.1 s instead of the spawner's back-off. An already-ready control plane
    records nothing (warm start: no wait).
    """

    def __init__(self, kube: client.ApiClient, namespace: str, pod_prefix: str, vcluster: Ref | None):
        self.core = client.CoreV1Api(kube)
        self.apps = client.AppsV1Api(kube)
        self.namespace = namespace
        self.pod_prefix = pod_prefix
        self.vcluster = vcluster
        self.instants: dict[str, float] = {}
        self._tasks: list[asyncio.Task] = []
        self._watching = asyncio.Event()

    async def __aenter__(self) -> Observer:
        self._tasks.append(asyncio.create_task(self._watch_pods()))
        await asyncio.wait_for(self._watching.wait(), 30)
        if self.vcluster:
            self._tasks.append(asyncio.create_task(self._poll_control_plane()))
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _mark(self, name: str) -> None:
        self.instants.setdefault(name, time.time())

    def _see_pod(self, pod) -> None:
        if not pod.metadata.name.startswith(self.pod_prefix) or pod.metadata.deletion_timestamp:
            return
        self._mark("host_pod_created")
        if pod.status.phase == "Running":
            self._mark("host_pod_running")
        if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
            self._mark("host_pod_ready")

    async def _watch_pods(self) -> None:
        listing = await self.core.list_namespaced_pod(self.namespace)
        # pods of an earlier run (terminating or not) must not count as this run's pod
        old = {p.metadata.uid for p in listing.items}
        self._watching.set()
        async with watch.Watch().stream(self.core.list_namespaced_pod, self.namespace,
                                        resource_version=listing.metadata.resource_version) as stream:
            async for event in stream:
                pod = event["object"]
                if event["type"] in ("ADDED", "MODIFIED") and pod.metadata.uid not in old:
                    self._see_pod(pod)

    async def _poll_control_plane(self) -> None:
        ops = VClusterOps(self.core, self.apps, helm=None)
        virtual = VirtualClient(self.vcluster, self.core, "https://{cluster_ip}:443")
        first = True
        try:
            while True:
                ready = False
                with contextlib.suppress(Exception):   # not yet: no Secret, API down, no SA
                    if (await ops.status(self.vcluster)).state == State.RUNNING:
                        await client.CoreV1Api(await virtual.api()).read_namespaced_service_account(
                            "default", "default", _request_timeout=2)
                        ready = True
                if ready:
                    if not first:
                        self._mark("cp_ready_actual")
                    return
                first = False
                await asyncio.sleep(0.1)
        finally:
            await virtual.close()

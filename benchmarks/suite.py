"""The benchmark scenarios, against one running local cluster.

Each scenario gets its own hub (same configuration as the lifecycle tests, ``tests/hub.py``),
running under its own client identity so the API server can count its requests
(``apimetrics.py``). Scenarios use distinct users, hence distinct vClusters.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from localcluster import ClusterState
from localcluster.processes import wait_for
from tests.hub import NOTEBOOK_IMAGE, Hub
from vcluster_spawner.pool import POOL_MEMBER, POOL_READY
from vcluster_spawner.vcluster import Ref

from . import stats
from .apimetrics import ApiServerMetrics, hub_identity
from .procstats import ProcessStats
from .settings import Settings
from .spawns import HUB_SEEN_PHASES, PHASES, Spawn, spawn, stop
from .timeline import Observer, hub_instants

# The local node advertises this machine's cores (2); upstream's default CPU request of the
# control plane (200m) fits ten vClusters on it and the 11th stays Pending (Insufficient cpu).
# Operators size this for their nodes; the benchmark asks 50m so twenty fit.
VCLUSTER_VALUES = ('c.VClusterSpawner.vcluster_values = {"controlPlane": {"statefulSet": {"resources": '
                   '{"requests": {"cpu": "50m"}}}}}\n')


def stop_action(action: str) -> str:
    return VCLUSTER_VALUES + f'c.VClusterSpawner.stop_action = "{action}"\n'


# twenty control planes starting at once on two cores can take longer than the tests' 240 s
CONCURRENT = stop_action("sleep") + "c.VClusterSpawner.start_timeout = 600\n"
PLAIN_NAMESPACE = "bench-plain"
# Plain KubeSpawner, same notebook image, command and timeouts as the VClusterSpawner hubs;
# its pods run in one host namespace, as in a usual Zero to JupyterHub deployment.
KUBESPAWNER = f"""
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = {PLAIN_NAMESPACE!r}
c.KubeSpawner.image = {NOTEBOOK_IMAGE!r}
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.start_timeout = 240
c.KubeSpawner.http_timeout = 90
"""

# kind -> (hub configuration, what a stop does, needs a first unmeasured spawn)
SEQUENTIAL = {
    # vCluster absent at every start: created with helm; deleted on stop (helm uninstall + PVC)
    "cold": (stop_action("delete"), "delete", False),
    # vCluster asleep at every start: woken; put to sleep on stop
    "wake": (stop_action("sleep"), "sleep", True),
    # vCluster running at every start; a stop deletes only the notebook pod
    "warm": (stop_action("none"), "pod only", True),
    "kubespawner": (KUBESPAWNER, "pod only", True),
}


# First starts with a warm pool, starts after the spawn page woke the vCluster, and warm starts,
# interleaved run by run in one hub (profiles set the stop action), so that the machine's load
# drift hits all three alike; the hub runs the lifecycle service, which keeps the pool
FIRST_STARTS = VCLUSTER_VALUES + """
c.VClusterSpawner.profile_list = [
    {"display_name": "Warm", "slug": "warm", "default": True, "kubespawner_override": {"stop_action": "none"}},
    {"display_name": "Pool", "slug": "pool", "kubespawner_override": {"stop_action": "delete", "warm_pool_size": 1}},
    {"display_name": "Wake-ahead", "slug": "wake-ahead", "kubespawner_override": {"stop_action": "sleep"}},
]
c.VClusterSpawner.wake_ahead_timeout = 300
c.VClusterSpawner.wake_ahead_min_interval = 0   # each run wakes the same user ahead again
c.VClusterHub.lifecycle_pool_interval = 2
"""
FIRST_START_KINDS = {"pool": "delete", "wake-ahead": "sleep", "warm-interleaved": "pod only"}
SPAWN_PAGE_SECONDS = 10   # the user reads the spawn page this long before starting


def vcluster_of(user: str) -> Ref:
    return Ref(f"vc-{user}", f"vc-{user}")   # the default templates, for simple usernames


@dataclass
class Bench:
    cluster: ClusterState        # admin identity: observers, metrics
    hub_cluster: ClusterState    # the hubs' own identity
    helm_binary: Path            # helm under an identity of its own (apimetrics.py)
    kube: client.ApiClient
    metrics: ApiServerMetrics
    settings: Settings
    workdir: Path
    cleanup: bool                # remove users (and their vClusters) afterwards: shared clusters

    @classmethod
    async def create(cls, cluster: ClusterState, kube: client.ApiClient, settings: Settings, workdir: Path,
                     cleanup: bool) -> Bench:
        hub_cluster, helm_kubeconfig = await hub_identity(cluster, kube)
        workdir.mkdir(parents=True, exist_ok=True)
        wrapper = workdir / "helm-as-its-own-identity"
        wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(str(cluster.binaries / 'helm'))} "
                           f"--kubeconfig {shlex.quote(str(helm_kubeconfig))} \"$@\"\n")
        wrapper.chmod(0o755)
        return cls(cluster, hub_cluster, wrapper, kube, ApiServerMetrics(cluster), settings, workdir, cleanup)

    @property
    def api_port(self) -> int:
        return urlparse(self.cluster.server).port

    async def hub(self, name: str, config: str, snippets: tuple[str, ...] = ()) -> Hub:
        config += f"\nc.VClusterSpawner.helm_binary = {str(self.helm_binary)!r}\n"
        return await Hub(self.workdir / name, self.hub_cluster, config, snippets=snippets).start()

    async def remove_users(self, hub: Hub, users: list[str], always: bool = False) -> None:
        """``always``: a vCluster left running (warm) would take CPU from later scenarios."""
        if self.cleanup or always:
            # delete_forever removes each vCluster and its namespace; not measured
            await asyncio.gather(*(hub.api("DELETE", f"/users/{u}", timeout=300) for u in users),
                                 return_exceptions=True)


async def measured_spawn(bench: Bench, hub: Hub, user: str, kind: str, options: dict | None = None,
                         vcluster: Ref | None = None) -> dict:
    """``vcluster``: where the user's vCluster will be (a warm pool member), if not the template's."""
    vcluster = vcluster or vcluster_of(user)
    ns, prefix = ((PLAIN_NAMESPACE, f"jupyter-{user}") if kind == "kubespawner"
                  else (vcluster.namespace, f"jupyter-{user}-x-default-x-"))
    before = await bench.metrics.snapshot()
    async with Observer(bench.kube, ns, prefix, None if kind == "kubespawner" else vcluster) as observer:
        result = await spawn(hub, user, bench.settings.spawn_timeout, options)
    after = await bench.metrics.snapshot()
    result.instants = {**hub_instants(hub.log_path, user, result.requested)[0], **observer.instants}
    return {**result.as_dict(PHASES), "api": after.minus(before)}


async def measured_stop(bench: Bench, hub: Hub, user: str) -> dict:
    before = await bench.metrics.snapshot()
    result = await stop(hub, user)
    after = await bench.metrics.snapshot()
    _, durations = hub_instants(hub.log_path, user, result["requested"])
    result["hub_seconds"] = durations.get("stop_done")
    result["api"] = after.minus(before)
    del result["requested"]
    return result


async def sequential(bench: Bench, kind: str, log=print) -> dict:
    config, stop_does, warm_up = SEQUENTIAL[kind]
    user = f"b{kind[:4]}"
    if kind == "kubespawner":
        try:
            await client.CoreV1Api(bench.kube).create_namespace({"metadata": {"name": PLAIN_NAMESPACE}})
        except ApiException as e:
            if e.status != 409:
                raise
    hub = await bench.hub(kind, config)
    spawns, stops = [], []
    try:
        await hub.add_user(user)
        if warm_up:   # the state every measured start begins from (and imports warmed up)
            first = await spawn(hub, user, bench.settings.spawn_timeout)
            if not first.ok:
                raise RuntimeError(f"{kind}: first spawn failed: {first.error}\n{hub.log_tail()}")
            await stop(hub, user)
        if kind == "warm":
            spawns_idle = await idle_cost(bench, hub)
        for i in range(bench.settings.runs):
            s = await measured_spawn(bench, hub, user, kind)
            spawns.append(s)
            log(f"  {kind} {i + 1}/{bench.settings.runs}: {format(s['total'], '.2f') + ' s' if s['ok'] else s['error']}")
            stops.append(await measured_stop(bench, hub, user))
        await bench.remove_users(hub, [user], always=True)
    finally:
        await hub.stop()
    out = {"stop_action": stop_does, "spawns": spawns, "stops": stops, "summary": summarize(spawns, stops)}
    if kind == "warm":
        out["hub_idle"] = spawns_idle
    return out


async def first_starts(bench: Bench, log=print) -> dict:
    """Per run: a new user's first start with a warm pool (claims the oldest ready member), a
    start of an asleep vCluster ``SPAWN_PAGE_SECONDS`` after the user opened the spawn page
    (woken ahead), and a warm start; each stopped after its measurement."""
    hub = await bench.hub("first-starts", FIRST_STARTS, ("10-vcluster-spawner.py", "40-lifecycle-service.py"))
    core = client.CoreV1Api(bench.kube)
    out = {kind: {"stop_action": does, "spawns": [], "stops": []} for kind, does in FIRST_START_KINDS.items()}
    browser = None
    try:
        for user, profile in (("bfwarm", "warm"), ("bfwake", "wake-ahead")):   # their first spawns, unmeasured
            await hub.add_user(user)
            first = await spawn(hub, user, bench.settings.spawn_timeout, {"profile": profile})
            if not first.ok:
                raise RuntimeError(f"first spawn of {user} failed: {first.error}\n{hub.log_tail()}")
            await stop(hub, user)
        browser = await hub.login("bfwake")
        for i in range(bench.settings.first_start_runs):
            member = await ready_member(core, bench.settings.spawn_timeout)
            user = f"bfpool{i}"
            await hub.add_user(user)
            runs = {"pool": (user, {"profile": "pool"}, member), "warm-interleaved": ("bfwarm", {"profile": "warm"}, None)}
            for kind in ("pool", "wake-ahead", "warm-interleaved"):
                if kind == "wake-ahead":
                    await vcluster_asleep(bench, vcluster_of("bfwake"))
                    async with browser.get(f"{hub.url}/hub/spawn") as r:   # the form: the spawner wakes it
                        assert r.status == 200, r.status
                    await asyncio.sleep(SPAWN_PAGE_SECONDS)
                    target = ("bfwake", {"profile": "wake-ahead"}, None)
                else:
                    target = runs[kind]
                s = await measured_spawn(bench, hub, target[0], kind, target[1], target[2])
                out[kind]["spawns"].append(s)
                log(f"  {kind} {i + 1}/{bench.settings.first_start_runs}: "
                    f"{format(s['total'], '.2f') + ' s' if s['ok'] else s['error']}")
                out[kind]["stops"].append(await measured_stop(bench, hub, target[0]))
            await hub.api("DELETE", f"/users/{user}", timeout=300)
        await bench.remove_users(hub, ["bfwarm", "bfwake"], always=True)
    finally:
        if browser is not None:
            await browser.close()
        await hub.stop()
        await remove_pool(bench)
    for kind in out.values():
        kind["summary"] = summarize(kind["spawns"], kind["stops"])
    return out


async def ready_member(core: client.CoreV1Api, timeout: float) -> Ref:
    """The warm pool member the next claim takes: the oldest ready one."""
    async def oldest():
        namespaces = (await core.list_namespace(label_selector=f"{POOL_MEMBER}=true,{POOL_READY}=true")).items
        live = sorted((ns for ns in namespaces if not ns.metadata.deletion_timestamp),
                      key=lambda ns: ns.metadata.creation_timestamp)
        return live and Ref(live[0].metadata.name, live[0].metadata.name)
    return await wait_for(oldest, timeout=timeout, interval=0.5, what="a ready warm pool member")


async def vcluster_asleep(bench: Bench, ref: Ref) -> None:
    apps = client.AppsV1Api(bench.kube)

    async def asleep():
        sts = await apps.read_namespaced_stateful_set(ref.name, ref.namespace)
        return sts.spec.replicas == 0 and not (sts.status.replicas or 0)
    await wait_for(asleep, timeout=300, interval=0.5, what=f"{ref} asleep")


async def remove_pool(bench: Bench) -> None:
    """The members left unclaimed when the hub (and its lifecycle service) stopped."""
    core = client.CoreV1Api(bench.kube)
    for ns in (await core.list_namespace(label_selector=f"{POOL_MEMBER}=true")).items:
        proc = await asyncio.create_subprocess_exec(str(bench.helm_binary), "uninstall", ns.metadata.name, "-n",
                                                    ns.metadata.name, "--wait", stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
        try:
            await core.delete_namespace(ns.metadata.name)
        except ApiException as e:
            if e.status != 404:
                raise


async def idle_cost(bench: Bench, hub: Hub) -> dict:
    """What a hub with one (stopped) user asks of the API server while nothing happens: the
    background the per-spawn numbers include (reflector watches restart every few seconds)."""
    seconds = bench.settings.settle
    before = await bench.metrics.snapshot()
    await asyncio.sleep(seconds)
    after = await bench.metrics.snapshot()
    per_minute = {v: round(n * 60 / seconds, 1) for v, n in after.minus(before)["hub"].items()} if seconds else {}
    return {"seconds": seconds, "hub_requests_per_minute": per_minute,
            "connections": ProcessStats(hub.proc.pid).tcp_connections(bench.api_port)}


async def concurrency_level(bench: Bench, n: int, log=print) -> dict:
    hub = await bench.hub(f"concurrency-{n}", CONCURRENT)
    users = [f"c{n}u{i}" for i in range(n)]
    try:
        for user in users:
            await hub.add_user(user)
        proc = ProcessStats(hub.proc.pid)
        proc.reset_peak_rss()
        cpu0, before = proc.cpu(), await bench.metrics.snapshot()
        started = time.time()
        results: list[Spawn] = await asyncio.gather(*(spawn(hub, u, bench.settings.spawn_timeout) for u in users))
        wall = time.time() - started
        cpu1, peak, after = proc.cpu(), proc.peak_rss(), await bench.metrics.snapshot()
        # while the servers run and nothing else happens: does the hub watch more with more users?
        await asyncio.sleep(bench.settings.settle)
        settled = await bench.metrics.snapshot()
        window = bench.settings.settle
        await asyncio.sleep(window)
        steady = (await bench.metrics.snapshot()).minus(settled)
        connections = proc.tcp_connections(bench.api_port)
        open_watches = steady["open_watches_all_clients"]
        for r in results:
            r.instants = hub_instants(hub.log_path, r.user, r.requested)[0]
        ok = [r for r in results if r.ok]
        log(f"  {n} users: {len(ok)}/{n} ok in {wall:.1f} s")
        before_stop = await bench.metrics.snapshot()
        stop_results = await asyncio.gather(*(stop(hub, r.user) for r in ok))
        after_stop = await bench.metrics.snapshot()
        for r, s in zip(ok, stop_results, strict=True):
            s["hub_seconds"] = hub_instants(hub.log_path, r.user, s.pop("requested"))[1].get("stop_done")
        await bench.remove_users(hub, users)
    finally:
        await hub.stop()
    spawn_api, stop_api = after.minus(before), after_stop.minus(before_stop)
    totals = [r.total for r in ok]
    spawns = [r.as_dict(HUB_SEEN_PHASES) for r in results]
    return {
        "users": n,
        "success_rate": len(ok) / n,
        "wall_seconds": round(wall, 3),
        "total": stats.summary(totals),
        "phases_median": stats.median_phases([s for s in spawns if s["ok"]]),
        "hub_cpu_seconds": round(cpu1.own - cpu0.own, 2),
        "helm_cpu_seconds": round(cpu1.children - cpu0.children, 2),
        "hub_peak_rss_bytes": peak,
        "hub_connections_after_settle": connections,
        "hub_steady_per_minute": {v: round(steady["hub"][v] * 60 / window, 1) if window else None
                                  for v in ("get", "list", "watch")},
        "open_watches_all_clients": open_watches,
        "api_per_spawn": stats.per_item(spawn_api, n),
        "api_per_stop": stats.per_item(stop_api, len(ok)),
        "stop_hub_seconds": stats.summary([s["hub_seconds"] for s in stop_results if s.get("hub_seconds") is not None]),
        "spawns": spawns,
        "stops": stop_results,
    }


def summarize(spawns: list[dict], stops: list[dict]) -> dict:
    ok = [s for s in spawns if s["ok"]]
    return {
        "runs": len(spawns),
        "success_rate": len(ok) / len(spawns) if spawns else 0,
        "total": stats.summary([s["total"] for s in ok]),
        "control_plane": stats.summary([s["control_plane"] for s in ok]),
        "spawner_overhead": stats.summary([s["spawner_overhead"] for s in ok]),
        "own_overhead": stats.summary([s["own_overhead"] for s in ok]),
        "phases_median": stats.median_phases(ok),
        "api_per_spawn_median": stats.median_api([s["api"] for s in ok]),
        "stop_hub_seconds": stats.summary([s["hub_seconds"] for s in stops if s.get("hub_seconds") is not None]),
        "stop_client_seconds": stats.summary([s["client_seconds"] for s in stops if s.get("ok")]),
        "api_per_stop_median": stats.median_api([s["api"] for s in stops if s.get("ok")]),
    }

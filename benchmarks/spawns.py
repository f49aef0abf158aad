"""One spawn or stop through the hub's REST API, timed the way a user waits for it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from localcluster.processes import wait_for
from tests.hub import Hub

# Phases of a spawn, each from the first instant to the second; named in the report. An
# instant missing from a run (warm start: no provisioning) makes its phase zero-length.
PHASES = (
    ("hub to spawner", "requested", "start_called"),
    ("helm / wake", "start_called", "cp_wait_begin"),
    ("control plane start", "cp_wait_begin", "cp_ready_actual"),
    ("readiness detection", "cp_ready_actual", "vc_ready_seen"),
    ("pod created", "vc_ready_seen", "host_pod_created"),
    ("host pod running", "host_pod_created", "host_pod_running"),
    ("single-user server up", "host_pod_running", "host_pod_ready"),
    # KubeSpawner polls its pod watch with exponential back-off (up to 5 s) before returning,
    # then the hub checks the server's HTTP API: the same code path for both spawners
    ("spawner notices the server", "host_pod_ready", "server_responded"),
    ("route added", "server_responded", "route_added"),
    ("answer through proxy", "route_added", "answered"),
)
CONTROL_PLANE = ("control plane start",)   # vCluster's own time, not the spawner's
# What only the spawner does, measured within one run (no cross-run subtraction): install or
# wake, noticing the ready control plane, and getting the pod created through the virtual API
# and the syncer. Plain KubeSpawner has only "pod created" here.
OWN = ("helm / wake", "readiness detection", "pod created")
# Without an observer (concurrency: twenty observers polling would load the machine they
# measure) only the hub's own instants exist, so the control plane's wait is as the spawner
# saw it, detection lag included.
HUB_SEEN_PHASES = (
    ("hub to spawner", "requested", "start_called"),
    ("helm / wake", "start_called", "cp_wait_begin"),
    ("control plane (as seen by the spawner)", "cp_wait_begin", "vc_ready_seen"),
    ("notebook pod until the server answers", "vc_ready_seen", "server_responded"),
    ("route added", "server_responded", "route_added"),
    ("answer through proxy", "route_added", "answered"),
)


@dataclass
class Spawn:
    user: str
    ok: bool
    requested: float                      # time.time() when the start request was sent
    total: float | None = None            # seconds until the notebook answered through the proxy
    error: str = ""
    instants: dict[str, float] = field(default_factory=dict)   # absolute times

    def phases(self, table=PHASES) -> dict[str, float]:
        """Durations of PHASES; instants the run lacks collapse onto the previous one, so the
        phases always add up to the total."""
        at = {"requested": self.requested, **self.instants}
        if self.total is not None:
            at["answered"] = self.requested + self.total
        # Warm starts report no control-plane wait: it starts and ends where helm/wake ended.
        # KubeSpawner has none of the vCluster instants.
        out, previous = {}, self.requested
        for name, _, end in table:
            t = at.get(end)
            t = previous if t is None else max(t, previous)
            out[name] = round(t - previous, 3)
            previous = t
        return out

    def as_dict(self, table=PHASES) -> dict:
        total = None if self.total is None else round(self.total, 3)
        d = {"user": self.user, "ok": self.ok, "total": total, "error": self.error,
             "instants": {k: round(v - self.requested, 3) for k, v in sorted(self.instants.items(), key=lambda i: i[1])}}
        if self.ok:
            d["phases"] = self.phases(table)
            if table is PHASES:
                d["control_plane"] = round(sum(d["phases"][p] for p in CONTROL_PLANE), 3)
                d["spawner_overhead"] = round(total - d["control_plane"], 3)
                d["own_overhead"] = round(sum(d["phases"][p] for p in OWN), 3)
        return d


async def spawn(hub: Hub, user: str, timeout: float, options: dict | None = None) -> Spawn:
    """Start ``user``'s server as the spawn page does (POST with the form's ``options``, then
    the progress event stream), then wait until the notebook itself answers through the proxy."""
    requested = time.time()
    result = Spawn(user, False, requested)
    try:
        await asyncio.wait_for(_start_and_answer(hub, user, timeout, options or {}), timeout)
        result.ok, result.total = True, time.time() - requested
    except Exception as e:  # a failed spawn is a result, counted in the success rate
        result.error = f"{type(e).__name__}: {e}"[:500]
    return result


async def _start_and_answer(hub: Hub, user: str, timeout: float, options: dict) -> None:
    post = asyncio.ensure_future(hub.api("POST", f"/users/{user}/server", options, timeout=timeout))

    async def pending_or_done():
        if post.done():
            return True
        model = await hub.user_model(user)
        return (model.get("servers") or {}).get("", {}).get("pending") == "spawn"
    await wait_for(pending_or_done, timeout=timeout, interval=0.1, what=f"spawn of {user} pending")
    events = await hub.wait_progress(user, timeout=timeout)
    status, body = await post
    if status not in (201, 202):
        raise RuntimeError(f"start refused: {status} {body}")
    if not events or not events[-1].get("ready"):
        raise RuntimeError(f"spawn failed: {events[-1] if events else 'no progress events'}")

    async def answers():
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{hub.url}/user/{user}/api/status", allow_redirects=False,
                                headers={"Authorization": f"token {hub.token}"}) as r:
                return r.status == 200
    await wait_for(answers, timeout=30, interval=0.05, what=f"{user}'s notebook through the proxy")


async def stop(hub: Hub, user: str, timeout: float = 300) -> dict:
    """Stop ``user``'s server; the hub's own "took N seconds to stop" is read from its log by
    the caller, this is the client's view (request until the server is gone)."""
    started = time.time()
    try:
        await hub.stop_server(user, timeout=timeout)
        return {"ok": True, "requested": started, "client_seconds": round(time.time() - started, 3)}
    except Exception as e:
        return {"ok": False, "requested": started, "error": f"{type(e).__name__}: {e}"[:500]}

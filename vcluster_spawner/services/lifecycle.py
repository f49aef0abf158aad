"""Lifecycle service: the vCluster policy the idle culler cannot apply (a hub-managed service).

The culler stops idle *servers*; the spawner then applies its stop action. This service looks at
the *vClusters* every ``interval`` seconds and:

- applies the stop action (sleep, or delete in dynamic mode) to a vCluster that runs with no
  active server for longer than the grace period: a stop action lost with a hub restart, a
  vCluster woken by hand, a drift of any kind;
- deletes vClusters asleep for longer than ``delete_asleep_after`` (dynamic mode, or static
  mode when ``delete_asleep_in_static_mode`` opts in);
- never touches home storage: it deletes no namespace and no PersistentVolume; deleting a
  vCluster is ``VClusterOps.delete`` (the release and its own control-plane data volume);
- logs every decision (one line per vCluster whenever its decision changes, every action);
- keeps the warm pools (services/warmpool.py) every ``pool_interval`` seconds, when the hub's
  configuration asks for one (``warm_pool_size``).

Run by the hub (see jupyterhub_config.d/40-lifecycle-service.py)::

    python -m vcluster_spawner.services.lifecycle --hub-config=/etc/jupyterhub/jupyterhub_config.py
"""

from __future__ import annotations

import asyncio
import datetime
import re
import sys

from traitlets import Bool, Float

from ..gate import Directory
from ..vcluster import Ref, State, Superseded
from ..watches import stop_host_watches
from .common import (
    HubAPI,
    HubService,
    Spawners,
    active_servers,
    load_hub_config,
    parse_time,
    spawner_for,
    stop_signal,
)
from .warmpool import POOL_USER, PoolKeeper, pool_specs


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LifecycleService(HubService):
    name = "vcluster-lifecycle"
    description = __doc__

    interval = Float(
        60.0, config=True, help="Seconds between two passes over all vClusters. Default: 60.")
    grace_period = Float(
        None, allow_none=True, config=True,
        help="""Seconds a vCluster may run with no active server before the stop action is applied.
        Default: None, the spawner's ``sleep_grace_period`` plus ``interval`` (the spawner acts
        first; this service only repairs what it missed).""")
    delete_asleep_after = Float(
        7 * 24 * 3600.0, config=True,
        help="""Seconds a vCluster may stay asleep before it is deleted (its home storage stays).
        0 disables deletion. Default: 604800 (7 days).""")
    delete_asleep_in_static_mode = Bool(
        False, config=True,
        help="""Also delete long-asleep vClusters in static mode, where an operator provisioned them.
        Default: False.""")
    dry_run = Bool(False, config=True, help="Log decisions without acting on them. Default: False.")
    pool_interval = Float(
        10.0, config=True,
        help="""Seconds between two passes over the warm pools (a claimed member is replaced at the
        next pass). Default: 10.""")

    aliases = {
        "hub-config": "LifecycleService.hub_config",
        "interval": "LifecycleService.interval",
        "grace-period": "LifecycleService.grace_period",
        "delete-asleep-after": "LifecycleService.delete_asleep_after",
        "pool-interval": "LifecycleService.pool_interval",
        "log-level": "Application.log_level",
    }
    flags = {
        "dry-run": ({"LifecycleService": {"dry_run": True}}, "log decisions, act on none"),
        "delete-asleep-in-static-mode": ({"LifecycleService": {"delete_asleep_in_static_mode": True}},
                                         "delete long-asleep vClusters in static mode too"),
    }

    def initialize(self, argv=None):
        super().initialize(argv)
        self.hub = HubAPI()
        self._last_decision: dict[Ref, str] = {}
        self._config = load_hub_config(self.hub_config)
        self._spawner = Spawners(self._config)

    def _decide(self, user: dict, spawner, status, started: datetime.datetime | None) -> tuple[str, str]:
        """(action, reason) for one user's vCluster; action is keep, sleep or delete.
        ``started``: when its control plane pod was created (None: no pod)."""
        if active_servers(user):
            return "keep", f"{len(active_servers(user))} server(s) active"
        dynamic = spawner.vcluster_mode == "dynamic"
        if status.state in (State.RUNNING, State.STARTING):
            if started is None:
                return "keep", f"{status.state.value}, control plane not created yet"
            grace = self.grace_period if self.grace_period is not None else spawner.sleep_grace_period + self.interval
            # idle since the later of the user's last activity and the control plane's start, so
            # that a vCluster being provisioned or woken (by the CLI, say) is not put back to sleep
            last = max(filter(None, [started, parse_time(user.get("last_activity"))]
                              + [parse_time(s.get("last_activity")) for s in (user.get("servers") or {}).values()]))
            idle = (now() - last).total_seconds()
            if idle < grace:
                return "keep", f"{status.state.value}, no server, within the grace period ({idle:.0f}/{grace:.0f} s)"
            action = spawner.effective_stop_action
            if action == "delete" and not dynamic:
                action = "sleep"   # static vClusters are the operator's: never deleted on stop
            if action == "none":
                return "keep", f"{status.state.value} with no server; stop_action is none"
            return action, f"{status.state.value} with no active server for {idle:.0f} s (grace {grace:.0f} s)"
        if status.state == State.ASLEEP:
            since = parse_time(status.since)
            asleep = (now() - since).total_seconds() if since else None
            if not self.delete_asleep_after or asleep is None:
                return "keep", "asleep"
            if not (dynamic or self.delete_asleep_in_static_mode):
                return "keep", "asleep (static mode: deletion not opted in)"
            if asleep > self.delete_asleep_after:
                return "delete", f"asleep for {asleep:.0f} s > {self.delete_asleep_after:.0f} s"
            return "keep", f"asleep for {asleep:.0f}/{self.delete_asleep_after:.0f} s"
        return "keep", status.state.value

    def _log_decision(self, username: str, ref: Ref, action: str, reason: str) -> None:
        """Actions always; a keep when it differs from the last one for this vCluster other than
        by its numbers (not one line a second for a vCluster counting its asleep time)."""
        key = re.sub(r"[0-9]+", "#", f"{action}: {reason}")
        if action != "keep" or self._last_decision.get(ref) != key:
            self.log.info("decision user=%s vcluster=%s %s: %s", username, ref, action, reason)
        self._last_decision[ref] = key

    async def reconcile_user(self, user: dict, directory: Directory | None = None) -> str:
        """Decide and act for one user; ``directory``: the pass's one list of namespaces."""
        spawner = await self._spawner(user)
        lifecycle = spawner.lifecycle
        try:
            found = await lifecycle.resolve(directory)
            if not found.owned:   # nothing of theirs: whatever their name maps onto is not acted on
                return "keep"
            ref = found.ref
            # from the shared watches: a pass costs the host API no request per user
            status, started = await lifecycle.ops.observed(ref)
            action, reason = self._decide(user, spawner, status, parse_time(started))
            if action != "keep":
                # the hub may have started a server since the listing: look again right before acting
                fresh = await self.hub.user(user["name"])
                if fresh is None or active_servers(fresh):
                    action, reason = "keep", "a server became active"
            self._log_decision(user["name"], ref, action, reason)
            if action == "keep" or self.dry_run:
                return action
            # conditional on the StatefulSet as read for the decision: a start that claimed the
            # vCluster since (VClusterOps.claim) wins
            try:
                if action == "sleep":
                    await lifecycle.sleep(decided_on=status)
                elif action == "delete":
                    await lifecycle.delete(decided_on=status)
            except Superseded as e:
                self.log.info("decision user=%s vcluster=%s keep: %s", user["name"], ref, e)
                return "keep"
            self.log.info("done user=%s vcluster=%s %s", user["name"], ref, action)
            return action
        finally:
            await spawner._close_virtual()

    async def reconcile(self) -> None:
        """One pass over every hub user's vCluster; one user's failure does not stop the pass."""
        users = await self.hub.users()
        directory = await Directory.read((await self._spawner(POOL_USER)).ops)
        for user in users:
            try:
                await self.reconcile_user(user, directory)
            except Exception as e:
                self.log.error("decision user=%s failed: %s", user["name"], e)

    async def run(self) -> None:
        stop = stop_signal()
        self.log.info("lifecycle service: every %.0f s, delete asleep after %.0f s%s", self.interval,
                      self.delete_asleep_after, " (dry run)" if self.dry_run else "")
        stopping = asyncio.ensure_future(stop.wait())
        pools = asyncio.ensure_future(self.keep_pools(stop))
        try:
            while not stop.is_set():
                # a pass may be long (a sleep waits for the control plane to stop): the hub stops
                # its services with SIGINT and a short timeout, so a pass is cancelled, not awaited
                one_pass = asyncio.ensure_future(self.reconcile())
                await asyncio.wait({one_pass, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not one_pass.done():
                    one_pass.cancel()
                    self.log.warning("stopping in the middle of a pass; the next start repeats it")
                    break
                if one_pass.exception():   # the hub restarting, say: try again next pass
                    self.log.error("pass failed: %s", one_pass.exception())
                await asyncio.wait({stopping}, timeout=self.interval)
        finally:
            stopping.cancel()
            pools.cancel()
            await asyncio.gather(pools, return_exceptions=True)
            await self.hub.close()
            await stop_host_watches()

    async def keep_pools(self, stop: asyncio.Event) -> None:
        """The warm pools' passes, beside the vClusters' (a pass that fails is logged and the
        next one tries again); when no pool is configured, one pass discards what is left of
        pools configured before."""
        specs = await pool_specs(self._config)
        keeper = PoolKeeper(spawner_for(self._config, POOL_USER).ops, specs)
        if not specs:   # members of pools configured before are discarded once; nothing else to do
            if not self.dry_run:
                await keeper.keep()
                await keeper.settle()
            return
        self.log.info("warm pools: %s", ", ".join(f"{s.profile or '(default)'}={s.size} (key {s.key})" for s in specs))
        last = None
        try:
            while not stop.is_set():
                if not self.dry_run:
                    try:
                        views = await keeper.keep()
                        line = "; ".join(f"{v.profile or '(default)'}: {v.ready}/{v.size} ready, {v.starting} starting"
                                         for v in views)
                        if line != last:
                            self.log.info("warm pools: %s", line)
                            last = line
                    except Exception as e:
                        self.log.error("warm pool pass failed: %s", e)
                try:
                    await asyncio.wait_for(stop.wait(), self.pool_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            await keeper.close()


if __name__ == "__main__":
    sys.exit(LifecycleService.main())

"""The warm pool's keeper, run by the lifecycle service (vcluster_spawner/pool.py says what a
member is and how it is claimed; docs/hub.md "Warm pool and wake-ahead" how to use it).

Every pass it reads the members from the host (one namespace list) and, for each pool (a
profile's settings, or the spawner's without a profile, whose ``warm_pool_size`` is > 0):

- creates members until the pool has its size (counting members still starting), each one
  started as a user's start would start it (namespace, hub RoleBinding, helm, ready);
- resumes members a restarted service left starting, and replaces (discards) members not ready
  within ``vcluster_ready_timeout`` or whose control plane stopped running;
- discards members of pools no longer configured (a profile changed its values).

A member is discarded by the same conditional write a claim uses, so it is never both handed
to a user and deleted. The pool never exceeds its size plus the members being discarded.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from dataclasses import dataclass, field

from traitlets.config import Config

from ..pool import Member, WarmPool, member_labels, member_ref
from ..vcluster import Ref, State, VirtualClient, values_hash_of
from .common import spawner_for

log = logging.getLogger("vcluster_spawner.warmpool")
POOL_USER = {"name": "warm-pool"}   # the settings' user: a member has no user until claimed


@dataclass
class PoolSpec:
    """One pool: the settings its members are made with (a never-started spawner with the
    profile applied) and how many to keep."""
    profile: str          # the profile's slug, "" for the spawner's settings without a profile
    settings: object      # VClusterSpawner
    size: int
    key: str = field(init=False)

    def __post_init__(self):
        self.key = self.settings.pool_key()


async def pool_specs(config: Config) -> list[PoolSpec]:
    """The pools the hub's configuration asks for: one per profile with ``warm_pool_size`` > 0
    (profiles with the same values share one: the largest size wins), or the spawner's own."""
    base = spawner_for(config, POOL_USER)
    profiles = base.profile_list
    if callable(profiles):   # evaluated for the pool's own user, "warm-pool" (docs/hub.md)
        profiles = profiles(base)
        if inspect.isawaitable(profiles):
            profiles = await profiles
    specs: dict[str, PoolSpec] = {}
    for profile in profiles or [None]:
        settings = spawner_for(config, POOL_USER)
        if profile is not None:
            slug = profile.get("slug") or profile.get("display_name", "")
            settings.user_options = {"profile": slug}
            await settings.load_user_options()
        if settings.vcluster_mode != "dynamic" or settings.warm_pool_size <= 0 or settings.pool_refusal():
            continue
        spec = PoolSpec(profile["slug"] if profile else "", settings, settings.warm_pool_size)
        if spec.key not in specs or specs[spec.key].size < spec.size:
            specs[spec.key] = spec
    return list(specs.values())


@dataclass
class PoolView:
    """A pool as one pass saw it (for the log, the status page and its metrics)."""
    profile: str
    key: str
    size: int
    ready: int = 0
    starting: int = 0
    oldest_ready_age: float | None = None   # seconds


def pool_views(specs: list[PoolSpec], members: list[Member], now: datetime.datetime) -> list[PoolView]:
    """The pools as their members' labels show them (the status page and its metrics)."""
    views = []
    for spec in specs:
        view = PoolView(spec.profile, spec.key, spec.size)
        for member in (m for m in members if m.key == spec.key):
            if member.ready:
                view.ready += 1
                view.oldest_ready_age = max(view.oldest_ready_age or 0.0, member.age(now))
            else:
                view.starting += 1
        views.append(view)
    return views


def prometheus_text(views: list[PoolView]) -> str:
    """The pools as Prometheus gauges (text exposition format)."""
    lines = ["# HELP vcluster_spawner_warm_pool_size Members a warm pool keeps (warm_pool_size)",
             "# TYPE vcluster_spawner_warm_pool_size gauge",
             "# HELP vcluster_spawner_warm_pool_members Unclaimed members of a warm pool, by state (ready, starting)",
             "# TYPE vcluster_spawner_warm_pool_members gauge",
             "# HELP vcluster_spawner_warm_pool_oldest_ready_seconds Age of the oldest ready member",
             "# TYPE vcluster_spawner_warm_pool_oldest_ready_seconds gauge"]
    for v in views:
        labels = f'pool="{v.profile or "default"}",key="{v.key}"'
        lines.append(f"vcluster_spawner_warm_pool_size{{{labels}}} {v.size}")
        lines.append(f'vcluster_spawner_warm_pool_members{{{labels},state="ready"}} {v.ready}')
        lines.append(f'vcluster_spawner_warm_pool_members{{{labels},state="starting"}} {v.starting}')
        if v.oldest_ready_age is not None:
            lines.append(f"vcluster_spawner_warm_pool_oldest_ready_seconds{{{labels}}} {v.oldest_ready_age:.0f}")
    return "\n".join(lines) + "\n"


class PoolKeeper:
    """``ops``: the host operations (any spawner's); ``specs``: the pools to keep (none: the
    pass only discards what is left of pools no longer configured)."""

    def __init__(self, ops, specs: list[PoolSpec]):
        self.ops = ops
        self.specs = specs
        self._building: dict[Ref, asyncio.Task] = {}

    async def keep(self) -> list[PoolView]:
        """One pass; returns what it saw."""
        warm = WarmPool(self.ops)
        members, discarded = await warm.inventory()
        for ref in discarded:   # a discard a restart interrupted
            if ref not in self._building:
                self._start(ref, warm.remove(ref))
        wanted = {spec.key: spec for spec in self.specs}
        for member in members:
            if member.key not in wanted:
                self._start(member.ref, warm.discard(member, "its pool is no longer configured"))
        views = []
        now = datetime.datetime.now(datetime.timezone.utc)
        for spec in self.specs:
            mine = [m for m in members if m.key == spec.key]
            view = PoolView(spec.profile, spec.key, spec.size)
            for member in mine:
                if member.ref in self._building:
                    view.starting += 1
                elif not member.ready:   # left starting by a restarted service: finish it, or replace it
                    view.starting += 1
                    if member.age(now) > spec.settings.vcluster_ready_timeout:
                        self._start(member.ref, warm.discard(member, "not ready in time"))
                    else:
                        self._start(member.ref, self._build(warm, spec, member))
                elif (await spec.settings.ops.observed(member.ref))[0].state != State.RUNNING:   # the shared watch
                    self._start(member.ref, warm.discard(member, "its control plane stopped running"))
                else:
                    view.ready += 1
                    age = member.age(now)
                    view.oldest_ready_age = max(view.oldest_ready_age or 0.0, age)
            for _ in range(spec.size - view.ready - view.starting):
                ref = member_ref(spec.settings.warm_pool_prefix)
                view.starting += 1
                self._start(ref, self._create(warm, spec, ref))
            views.append(view)
        return views

    async def settle(self) -> None:
        """Wait for the work this keeper started (discards, creations)."""
        await asyncio.gather(*self._building.values(), return_exceptions=True)

    def _start(self, ref: Ref, work) -> None:
        if ref in self._building:
            work.close()
            return
        task = asyncio.ensure_future(work)
        self._building[ref] = task

        def done(t: asyncio.Task) -> None:
            self._building.pop(ref, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("warm pool member %s: %s", ref, t.exception())
        task.add_done_callback(done)

    async def _create(self, warm: WarmPool, spec: PoolSpec, ref: Ref) -> None:
        settings = spec.settings
        log.info("warm pool %s: creating member %s", spec.profile or "(default)", ref)
        member = await warm.create_namespace(ref, member_labels(spec.key, settings.namespace_labels()),
                                             settings.hub_binding)
        await self._build(warm, spec, member)

    async def _build(self, warm: WarmPool, spec: PoolSpec, member: Member) -> None:
        """Install (again, if a restart interrupted it), wait until it serves, mark it ready; a
        member that fails is discarded (and replaced by the next pass)."""
        settings, ops, ref = spec.settings, spec.settings.ops, member.ref
        virtual = VirtualClient(ref, ops.core, settings.vcluster_api_url_template)
        try:
            values = settings.values_for(ref)
            status = await ops.status(ref)
            if status.state == State.ABSENT or status.values_hash != values_hash_of(values):
                await ops.install(ref, settings.chart, values)
            await ops.wait_ready(ref, virtual, settings.vcluster_ready_timeout, lambda step: None)
            if await warm.mark_ready(member):
                log.info("warm pool %s: member %s ready", spec.profile or "(default)", ref)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("warm pool member %s failed to start (%s); replacing it", ref, e)
            fresh = [m for m in await warm.members(spec.key) if m.ref == ref]
            if fresh:
                await warm.discard(fresh[0], f"failed to start: {e}")
        finally:
            await virtual.close()

    async def close(self) -> None:
        for task in list(self._building.values()):
            task.cancel()
        await asyncio.gather(*self._building.values(), return_exceptions=True)

"""The one path by which a user's vCluster is brought up, put to sleep, woken and deleted.

Four callers drive a user's vCluster: the spawner (start, stop action, removal of the user),
the operator CLI, the lifecycle service and the status page. Each keeps only what is its own
(traits, argument parsing, the HTTP layer) and calls this object, so the decisions and their
fences are written once (docs/architecture.md, "One lifecycle path"):

- the user's vCluster is the one the ownership gate finds (gate.py), never one inferred from
  a name: every operation here asks it first;
- the cluster is the source of truth: the owner is recorded on the namespace, the values hash
  on the StatefulSet (``values.VALUES_HASH``), the claim of a start on the StatefulSet too
  (``vcluster.STARTING_AT``); no caller keeps its own memory of them;
- every destructive step is conditional on the StatefulSet as the decision saw it (its
  resourceVersion): a start that claimed the vCluster since keeps it (``Superseded``);
- a delete marks what it will delete; a start that finds the mark finishes the delete first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import gate
from .metrics import pool_start
from .ownership import Owner, retire_patch
from .pool import WarmPool
from .vcluster import Ref, State, Status, VClusterError, VClusterOps, VirtualClient, ignoring, timestamp, values_hash_of

if TYPE_CHECKING:   # the spawner is the settings: its traits are the configuration
    from .spawner import VClusterSpawner

log = logging.getLogger("vcluster_spawner.lifecycle")

Report = Callable[[int, str], None]   # (progress percent, message)


def _quiet(progress: int, message: str) -> None:
    pass


class VClusterLifecycle:
    """One user's vCluster, configured by a ``VClusterSpawner`` (started or not: the CLI and the
    services build one per user from the hub's configuration, ``services.common.spawner_for``)."""

    def __init__(self, settings: VClusterSpawner):
        self.settings = settings

    @property
    def ref(self) -> Ref:
        return self.settings.vcluster

    @property
    def ops(self) -> VClusterOps:
        return self.settings.ops

    @property
    def owner(self) -> Owner:
        return self.settings.owner

    async def resolve(self, directory: gate.Directory | None = None) -> gate.Found:
        """Ask the ownership gate which vCluster is the user's (``directory``: a list made once
        for many users; None: asked now) and use it from now on."""
        s = self.settings
        if directory is not None:
            found = directory.find(self.owner, s.vcluster, s.template_vcluster)
        else:
            found = await gate.find(self.ops, self.owner, s.vcluster, s.template_vcluster)
        if found.ref is not None and found.ref != s.vcluster:
            s.use_vcluster(found.ref)
        return found

    async def _required(self) -> Ref:
        """The user's existing vCluster, for an operation on it; ``NotOwned`` when they have none."""
        return (await self.resolve()).required(self.owner)

    async def ensure_namespace(self, *, create: bool) -> None:
        """The user's host namespace, owned by the user and labelled (ownership.py); created
        only when ``create``."""
        s = self.settings
        await self.ops.ensure_namespace(self.ref, self.owner, s.namespace_labels(), create=create,
                                        hub_binding=s.hub_binding)

    # ---- bringing it up ------------------------------------------------------------------

    async def bring_up(self, report: Report = _quiet, found: gate.Found | None = None) -> Status:
        """Namespace, claim, install or upgrade (dynamic mode: when absent or its values hash is
        not the wanted one), the namespace's objects, and a wake if it sleeps. Returns the
        state after that; ``wait_ready`` waits for it to serve. ``found``: the gate's answer
        when the caller has just asked it."""
        s, ops = self.settings, self.ops
        dynamic = s.vcluster_mode == "dynamic"
        if found is None:
            await self.resolve()
        if dynamic:
            await self.take_from_pool(report)   # may make a warm pool member the user's vCluster
        ref = self.ref
        # first of all: nothing of a namespace that is not this user's is read or touched
        await self.ensure_namespace(create=dynamic)
        # before the state is read: a sleep or delete decided elsewhere on the state before this
        # claim loses its conditional write
        status = await ops.claim(ref)
        if status.deleting:
            report(12, f"Waiting for the deletion of your previous virtual cluster {ref.name} to finish")
            await ops.finish_delete(ref, s.helm_timeout)
            status = Status(State.ABSENT)
        if not dynamic and status.state == State.ABSENT:
            raise VClusterError(f"no virtual cluster was provisioned for you ({ref}); please contact the administrators")
        if dynamic:
            values = s.effective_values()
            if status.state == State.ABSENT or status.values_hash != values_hash_of(values):
                verb = "Creating" if status.state == State.ABSENT else "Updating"
                report(10, f"{verb} your virtual cluster {ref.name}")
                status = await ops.install(ref, s.chart, values, lambda message: report(12, message))
        await ops.apply_namespace_objects(ref, s.rendered_namespace_objects())
        if status.state == State.ASLEEP:
            since = f" (asleep since {status.since})" if status.since else ""
            report(20, f"Waking your virtual cluster {ref.name}{since}")
            await ops.wake(ref)
        elif status.state == State.RUNNING:
            report(40, f"Your virtual cluster {ref.name} is running")
        return status

    async def take_from_pool(self, report: Report = _quiet) -> None:
        """Dynamic mode, when the user's vCluster does not exist: switch to a warm pool member
        (pool.py), the user's own first if a start claimed one before and was interrupted, else
        a free one of this start's pool key. Their home volume comes along and the namespace
        left behind (the user's, without a vCluster) is deleted. No member: nothing changes and
        the start creates the vCluster, saying why."""
        s, ops = self.settings, self.ops
        if s.warm_pool_size <= 0:
            return
        status = await ops.status(self.ref)
        if status.state != State.ABSENT or status.deleting:
            return   # the user's vCluster exists: it is used (woken, upgraded) as always
        warm = WarmPool(ops)
        for ref in await warm.claimed_by(self.owner):
            if ref != self.ref and (await ops.status(ref)).state != State.ABSENT:
                pool_start("resumed")
                await self._switch(ref, report, f"Found your virtual cluster {ref.name}")
                return
        refusal = s.pool_refusal()
        if refusal:
            pool_start("miss", "setting")
            report(9, f"Creating your virtual cluster: {refusal}")
            return
        member = await warm.claim(s.pool_key(), self.owner, s.namespace_labels())
        if member is None:
            pool_start("miss", "empty")
            report(9, "No warm virtual cluster is free for your profile right now; creating yours (this takes longer)")
            return
        pool_start("claimed")
        await self._switch(member, report, f"Your virtual cluster {member.name} comes ready from the warm pool")

    async def _switch(self, ref: Ref, report: Report, message: str) -> None:
        previous, s = self.ref, self.settings
        s.use_vcluster(ref)
        report(10, message)
        if await self.ops.owns_namespace(previous, self.owner):   # the user's, and without a vCluster
            if s.home_enabled:
                await s.homes.move(s.home_spec, previous, ref, self.owner, s.home_bind_timeout)
            await ignoring(self.ops.core.delete_namespace(previous.namespace), 404)
            log.info("%s moved from %s to %s", self.owner.describe(), previous, ref)

    async def wait_ready(self, virtual: VirtualClient, report: Report = _quiet) -> None:
        steps = {"control-plane": (40, "Control plane is up; waiting for its API"),
                 "api": (50, "API is up; waiting for the default service account"),
                 "service-account": (55, "Virtual cluster ready")}
        report(30, "Waiting for the virtual cluster's control plane")
        await self.ops.wait_ready(self.ref, virtual, self.settings.vcluster_ready_timeout,
                                  lambda step: report(*steps[step]))

    async def provision(self, virtual: VirtualClient, *, asleep: bool, report: Report = _quiet) -> None:
        """The operator's ``provision``: install or upgrade exactly as a start would, then
        converge to running or, with ``asleep``, to asleep.

        ``helm upgrade`` restores the chart's replica count (its three-way merge undoes the
        pause's ``replicas: 0``; checked with helm 3.22), so an asleep vCluster comes back up:
        with ``asleep`` it is paused again at once. A new vCluster runs until ready once before
        it sleeps, so its first wake finds it initialised."""
        s, ops = self.settings, self.ops
        await self.resolve()
        ref = self.ref
        before = await ops.status(ref)
        report(5, f"{'installing' if before.state == State.ABSENT else 'upgrading'} {ref} ({s.chart})")
        await self.ensure_namespace(create=True)
        await ops.apply_namespace_objects(ref, s.rendered_namespace_objects())
        status = await ops.install(ref, s.chart, s.effective_values(), lambda message: report(12, message))
        if before.state == State.ASLEEP and asleep:
            await ops.sleep(ref, decided_on=status)
            return
        if status.state == State.ASLEEP:
            await ops.wake(ref)
        await self.wait_ready(virtual, report)
        if asleep:
            await self.sleep()

    # ---- putting it away -------------------------------------------------------------------

    async def sleep(self, decided_on: Status | None = None) -> bool:
        """Put it to sleep if nothing claimed it since ``decided_on`` (the state the decision
        was made on; None: now). False when there is nothing to put to sleep."""
        ref = await self._required()
        status = decided_on or await self.ops.status(ref)
        if status.state == State.ABSENT:
            return False
        await self.ops.sleep(ref, decided_on=status)
        return True

    async def wake(self, *, ahead: bool = False) -> Status:
        ref = await self._required()
        status = await self.ops.status(ref)
        if status.state == State.ABSENT:
            raise VClusterError(f"vCluster {ref} does not exist")
        if status.deleting:
            raise VClusterError(f"vCluster {ref} is being deleted")
        return await self.ops.wake(ref, ahead=ahead)

    async def delete(self, decided_on: Status | None = None) -> None:
        """Delete it (release and control plane data; never home storage) if nothing claimed
        it since ``decided_on`` (None: now). A release without a StatefulSet is uninstalled
        all the same."""
        ref = await self._required()
        status = decided_on or await self.ops.status(ref)
        await self.ops.delete(ref, decided_on=status)

    async def remove_user(self, *, delete_home: bool, delete_namespace: bool) -> str | None:
        """The user was removed from the hub. First their namespace and home are retired (no
        longer theirs, nor anyone's: a newcomer with the name gets new ones even if what
        follows fails); then the vCluster goes (static ones too), the home is kept for an
        administrator or, with ``delete_home``, deleted; the namespace is deleted with
        ``delete_namespace``. Nothing is done to a namespace that does not record this user.
        Returns the deleted home volume's name, if one was deleted."""
        s = self.settings
        found = await self.resolve()
        if not found.owned:
            log.warning("%s has no namespace of their own%s; nothing is deleted", self.owner.describe(),
                        f" ({found.ref.namespace} is not theirs, or absent)" if found.ref else "")
            if s.home_enabled and found.ref is not None and not delete_home:   # only volumes recording them
                await s.homes.retire(found.ref, self.owner)
            return None
        ref = found.ref
        if s.home_enabled and not delete_home:
            await s.homes.retire(ref, self.owner)
        await self.ops.core.patch_namespace(ref.namespace, retire_patch(self.owner, timestamp()))
        log.info("namespace %s of removed user %s retired", ref.namespace, self.owner.describe())
        await self.ops.delete(ref, decided_on=await self.ops.status(ref))
        deleted = None
        if s.home_enabled and delete_home:
            deleted = await s.homes.delete(s.home_spec, ref, self.owner, s.home_bind_timeout)
            log.warning("deleted home volume %s of %s with its data", deleted, self.owner.name)
        if delete_namespace:
            await ignoring(self.ops.core.delete_namespace(ref.namespace), 404)
        return deleted


"""The warm pool: ready, never-used vClusters that a first start claims instead of creating one.

Dynamic mode only (docs/hub.md, "Warm pool"). A member is a vCluster in a namespace of its own
with an opaque name (``warm_pool_prefix``, 12 random hex digits and ``--pool``: no user's name,
and none that a name template can produce; no user's data), installed with exactly the values
a user's would have in that namespace, so that after the claim the user's start finds the
values hash it wants on the StatefulSet and runs no helm.
Which members fit which start is the *pool key*: the values hash of the settings for a
placeholder namespace (``VClusterSpawner.pool_key``), so a profile that changes the values has
a pool of its own.

A member's life, recorded on its namespace (the cluster is the source of truth, as for
everything else, docs/architecture.md "One lifecycle path"):

- created by the lifecycle service's keeper with ``POOL_LABEL=<key>`` and ``POOL_MEMBER=true``,
  no owner; ``POOL_READY=true`` is added once its control plane served (``/readyz`` and the
  default ServiceAccount, as for a user's start);
- claimed by one start with one conditional write: the namespace's ``resourceVersion`` as
  listed, ``POOL_LABEL``/``POOL_READY`` removed, the user's owner annotations and labels added.
  Two starts (or two hubs) that pick the same member send the same precondition: one write
  succeeds, the other is refused (409) and tries the next member;
- from then on it is that user's like any other (``POOL_MEMBER`` stays, so a start that was
  interrupted after the claim finds it again: ``claimed_by``); it is never handed to anyone else:
  deleting it is deleting the user's vCluster, and the keeper makes a new member;
- discarded by the keeper (stale key, not ready in time, broken) through the same conditional
  write, so a member is either claimed or discarded, never both.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from dataclasses import dataclass

from kubernetes_asyncio.client.rest import ApiException

from .names import label_value
from .ownership import MANAGED_BY, MANAGED_BY_VALUE, USERNAME_LABEL, Owner
from .vcluster import Ref, State, VClusterOps, ignoring, timestamp

POOL_LABEL = "hub.jupyter.org/warm-pool"          # the pool key, while unclaimed
POOL_READY = "hub.jupyter.org/warm-pool-ready"    # "true" once the member served
POOL_MEMBER = "hub.jupyter.org/warm-pool-member"  # "true" for life: it came from the pool
CLAIMED_AT = "hub.jupyter.org/claimed-at"
DISCARDED = "hub.jupyter.org/warm-pool-discarded"
PLACEHOLDER = Ref("warm-pool-key", "warm-pool-key")   # the namespace the pool key is computed for

log = logging.getLogger("vcluster_spawner.pool")


# ---- names, labels and writes (pure) ------------------------------------------------------

MEMBER_MARK = "--pool"   # no name template's output keeps a "--" other than a final hash mark (names.py)


def member_ref(prefix: str) -> Ref:
    """A new member's namespace and vCluster name: ``prefix``, 12 random hex digits and
    ``--pool``, a name no user's name template can produce, so no hub user's name maps onto a
    member (names.py)."""
    name = f"{prefix}{secrets.token_hex(6)}{MEMBER_MARK}"
    return Ref(name, name)


def member_labels(key: str, user_labels: dict[str, str]) -> dict[str, str]:
    """A new member's namespace labels: what a user's namespace carries (managed-by, Pod
    Security, the operator's extra labels) less the user, plus the pool's."""
    labels = {k: v for k, v in user_labels.items() if k != USERNAME_LABEL}
    labels.update({MANAGED_BY: MANAGED_BY_VALUE, POOL_LABEL: key, POOL_MEMBER: "true"})
    return labels


def claim_patch(resource_version: str, owner: Owner, user_labels: dict[str, str]) -> dict:
    """The conditional write that makes a member ``owner``'s: refused (409) if the namespace
    changed since it was listed at ``resource_version`` (claimed or discarded meanwhile)."""
    return {"metadata": {"resourceVersion": resource_version,
                         "labels": {**user_labels, POOL_LABEL: None, POOL_READY: None},
                         "annotations": {**owner.annotations(), CLAIMED_AT: timestamp()}}}


def discard_patch(resource_version: str, reason: str) -> dict:
    return {"metadata": {"resourceVersion": resource_version,
                         "labels": {POOL_LABEL: None, POOL_READY: None, DISCARDED: "true"},
                         "annotations": {DISCARDED: reason[:200]}}}


@dataclass(frozen=True)
class Member:
    """An unclaimed member as listed."""
    ref: Ref
    key: str
    ready: bool
    created: datetime.datetime
    resource_version: str

    def age(self, now: datetime.datetime | None = None) -> float:
        return ((now or datetime.datetime.now(datetime.timezone.utc)) - self.created).total_seconds()


def member_of(namespace) -> Member:
    labels = namespace.metadata.labels or {}
    name = namespace.metadata.name
    return Member(Ref(name, name), labels[POOL_LABEL], labels.get(POOL_READY) == "true",
                  namespace.metadata.creation_timestamp, namespace.metadata.resource_version)


def _oldest_first(namespaces: list) -> list[Member]:
    return sorted((member_of(ns) for ns in namespaces), key=lambda m: m.created)


# ---- operations (host API) ----------------------------------------------------------------------

class WarmPool:
    """The pool's members on the host, through the spawner's operations (``VClusterOps``)."""

    def __init__(self, ops: VClusterOps):
        self.ops = ops
        self.core = ops.core

    async def _listed(self, selector: str) -> list:
        namespaces = await self.core.list_namespace(label_selector=f"{POOL_MEMBER}=true" + selector)
        return [ns for ns in namespaces.items if not ns.metadata.deletion_timestamp]

    async def members(self, key: str) -> list[Member]:
        """Unclaimed members of pool ``key``, oldest first."""
        return _oldest_first(await self._listed(f",{POOL_LABEL}={key}"))

    async def inventory(self) -> tuple[list[Member], list[Ref]]:
        """In one list: every unclaimed member of every pool (oldest first), and the discarded
        members whose deletion a restart interrupted."""
        namespaces = await self._listed("")
        discarded = [Ref(ns.metadata.name, ns.metadata.name) for ns in namespaces
                     if (ns.metadata.labels or {}).get(DISCARDED) == "true"]
        return _oldest_first([ns for ns in namespaces if POOL_LABEL in (ns.metadata.labels or {})]), discarded

    async def claim(self, key: str, owner: Owner, user_labels: dict[str, str]) -> Ref | None:
        """A ready member of pool ``key`` made ``owner``'s, or None when none is free. A member
        whose control plane no longer runs is skipped (the keeper replaces it)."""
        for member in await self.members(key):
            if not member.ready:
                continue
            if (await self.ops.status(member.ref)).state != State.RUNNING:
                continue
            try:
                await self.core.patch_namespace(member.ref.namespace,
                                                claim_patch(member.resource_version, owner, user_labels))
            except ApiException as e:
                if e.status in (404, 409):   # claimed or discarded meanwhile: the next one
                    continue
                raise
            log.info("warm pool member %s claimed for %s", member.ref, owner.describe())
            return member.ref
        return None

    async def claimed_by(self, owner: Owner) -> list[Ref]:
        """Former members that record ``owner``: the user's vCluster, found from the cluster
        when a start was interrupted after its claim, or by another of the user's servers."""
        namespaces = await self.core.list_namespace(
            label_selector=f"{POOL_MEMBER}=true,{USERNAME_LABEL}={label_value(owner.name)}")
        return [Ref(ns.metadata.name, ns.metadata.name) for ns in namespaces.items
                if not ns.metadata.deletion_timestamp and owner.owns(ns.metadata.annotations)]

    async def create_namespace(self, ref: Ref, labels: dict[str, str], hub_binding: dict | None) -> Member:
        """A new member's namespace (and the hub's RoleBinding there), as created."""
        created = await self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": ref.namespace, "labels": labels}})
        if hub_binding:
            await self.ops.ensure_hub_binding(ref, hub_binding)
        return member_of(created)

    async def mark_ready(self, member: Member) -> bool:
        """False if the member was claimed or discarded meanwhile (it is not ours to mark)."""
        try:
            await self.core.patch_namespace(member.ref.namespace, {"metadata": {
                "resourceVersion": member.resource_version, "labels": {POOL_READY: "true"}}})
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    async def discard(self, member: Member, reason: str) -> bool:
        """Take the member out of the pool (conditional, like a claim) and delete it: its
        vCluster, then its namespace. False if it was claimed meanwhile: then it is a user's."""
        try:
            await self.core.patch_namespace(member.ref.namespace, discard_patch(member.resource_version, reason))
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        log.info("warm pool member %s discarded: %s", member.ref, reason)
        await self.remove(member.ref)
        return True

    async def remove(self, ref: Ref) -> None:
        """Delete a discarded member (again after an interruption)."""
        await self.ops.delete(ref)
        await ignoring(self.core.delete_namespace(ref.namespace), 404)

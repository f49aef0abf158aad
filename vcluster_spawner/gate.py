"""The ownership gate: which vCluster is this user's, and may a caller act on it?

Every caller that acts on or reads a user's vCluster (the spawner's start, stop and removal,
wake-ahead, the CLI, the lifecycle service, the status page and its downloads, the hub pages,
the warm pool's claim) asks here first, and acts only on what the answer says is the user's.
The answer never comes from a name: names come from templates an operator chose and from user
names anyone may choose, so two users can map onto one namespace, and a name may already be
taken by an administrator's namespace, a warm pool member or a removed user's leftovers. It
comes from the owner each namespace records (``ownership.Owner``: the user's name, and the
hub's creation time of the user where both sides know it).

One user may have several namespaces that record them: the one the name template gives, a
warm pool member they claimed, one named by an older version's template (names changed when
hashes grew to 64 bits, names.py), or one saved in a server's state. Which one holds their
vCluster is decided here, once, in this order: the one the caller already uses (saved state),
a claimed pool member (the newest claim), the template's, then the oldest other.

Reading: ``find`` lists one user's candidates (one request, by the username label, which only
narrows the list: the owner annotation decides; a namespace being deleted is no one's); ``Directory`` is one list of every managed
namespace for a caller that looks at every user (the lifecycle service's pass, the status page's
admin view), so a view costs one request, not one per user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .names import label_value
from .ownership import USERNAME_LABEL, VCLUSTER_ANNOTATION, Owner
from .pool import CLAIMED_AT, POOL_MEMBER
from .vcluster import NotOwned, Ref


@dataclass(frozen=True)
class Found:
    """Where the user's vCluster is. ``owned``: its namespace exists and records the user, so
    callers may read and act on it. Not owned: the user has no namespace; ``ref`` is where the
    template would put one (None when the template needs a user id not known here), which only
    a start may create, and only if nothing is there (``VClusterOps.ensure_namespace``)."""
    ref: Ref | None
    owned: bool

    def required(self, owner: Owner) -> Ref:
        """The user's vCluster, for a caller about to act on an existing one."""
        if not self.owned or self.ref is None:
            raise NotOwned(f"{owner.name!r} has no virtual cluster on this host"
                           + (f" ({self.ref.namespace} is not theirs, or absent)" if self.ref else ""))
        return self.ref


def _ref_of(metadata: dict, known: Iterable[Ref | None]) -> Ref:
    """The vCluster in a namespace: as recorded there, else as a caller knew it, else the
    namespace's own name (the default templates give both the same name)."""
    namespace = metadata["name"]
    recorded = (metadata.get("annotations") or {}).get(VCLUSTER_ANNOTATION)
    if recorded:
        return Ref(namespace, recorded)
    return next((ref for ref in known if ref is not None and ref.namespace == namespace), Ref(namespace, namespace))


def choose(owner: Owner, namespaces: Iterable[dict], preferred: Ref | None, default: Ref | None) -> Found:
    """The user's vCluster among ``namespaces`` (metadata dicts as the API serialises them):
    only those that record ``owner`` count (pure; docstring of this module for the order)."""
    mine = [m for m in namespaces if owner.owns(m.get("annotations"))]
    if not mine:
        return Found(default, False)

    def rank(metadata: dict) -> tuple:
        name = metadata["name"]
        annotations, labels = metadata.get("annotations") or {}, metadata.get("labels") or {}
        pool_member = labels.get(POOL_MEMBER) == "true"
        return (preferred is None or name != preferred.namespace,
                not pool_member, "" if not pool_member else _descending(annotations.get(CLAIMED_AT, "")),
                default is None or name != default.namespace,
                metadata.get("creationTimestamp") or "", name)
    return Found(_ref_of(min(mine, key=rank), (preferred, default)), True)


def _descending(text: str) -> str:
    """Sorts ISO timestamps newest first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


async def find(ops, owner: Owner, preferred: Ref | None, default: Ref | None) -> Found:
    """``owner``'s vCluster as the host has it now (``VClusterOps.namespaces_of``: one list)."""
    return choose(owner, await ops.namespaces_of(label_value(owner.name)), preferred, default)


class Directory:
    """Every managed namespace, listed once (``VClusterOps.managed_namespaces``), for a caller
    that resolves many users."""

    def __init__(self, namespaces: list[dict]):
        self._by_label: dict[str, list[dict]] = {}
        for metadata in namespaces:
            username = (metadata.get("labels") or {}).get(USERNAME_LABEL)
            if username:
                self._by_label.setdefault(username, []).append(metadata)

    @classmethod
    async def read(cls, ops) -> Directory:
        return cls(await ops.managed_namespaces())

    def find(self, owner: Owner, preferred: Ref | None, default: Ref | None) -> Found:
        return choose(owner, self._by_label.get(label_value(owner.name), []), preferred, default)

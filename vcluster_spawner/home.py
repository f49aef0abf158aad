"""Each user's home volume: a host PersistentVolume the spawner owns, never vCluster or Helm.

Design (shared/reference/vcluster-sync.md §6, design B; the reasons are in
docs/architecture.md "Home storage"): vCluster's synced host PVCs are disposable (owner
reference to Service N, so ``helm uninstall`` garbage-collects them, S§2.6; a tenant deleting
the virtual PVC deletes the host PVC), so the data must hang off something neither vCluster
nor Helm can delete:

* one cluster-scoped PV per user, found by label ``hub.jupyter.org/home-namespace=<NS>`` and
  owned by that user (``ownership.Owner`` annotations: a newcomer with a removed user's name
  is refused that user's home; the removal itself retires the label), reclaim policy
  ``Retain``, pre-bound by ``claimRef`` to the host PVC name vCluster will give the virtual
  home claim, ``h(home) = home-x-<vns>-x-<N>`` (S§2.3: this also keeps other
  tenants from binding it, whatever ``volumeName`` they write);
* provisioned once through ``home_storage_class`` by a short-lived host claim in the user's
  namespace, then handed over: ``Retain`` first (or the provisioner would delete the data when
  the claim goes), claim deleted, ``claimRef`` re-pointed. An admin may instead pre-create the
  PV (e.g. a static NFS export) with the label; it is adopted the same way;
* before every spawn the stale ``claimRef.uid`` of a released PV is removed (namespace and name
  kept, S§5), and the virtual claim is created when missing, with ``volumeName`` = the PV and
  the PV's storage class (an explicit ``""`` for class-less PVs, or the host's default class
  would be injected and the bind would fail, S§6 B.2).

vCluster holds no RBAC on PVs and PV sync stays off (S§2.3, §6 C), so nothing inside a
vCluster can reach the PV.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from .ownership import MANAGED_BY, MANAGED_BY_VALUE, Owner, describe_recorded
from .translate import host_name
from .vcluster import Ref, VClusterError, ignoring, poll_until, read_or_none
from .watches import SpawnerClaims, WatchLost, host_watch

HOME_NAMESPACE_LABEL = "hub.jupyter.org/home-namespace"
# a removed user's kept home: out of reach of the name's next user until an admin decides
RETIRED_HOME_LABEL = "hub.jupyter.org/retired-home-namespace"
PROVISIONING_CLAIM = "vcluster-spawner-home"
SKIP_TRANSLATE = "vcluster.loft.sh/skip-translate"   # no-op with PV sync off; right if it is ever on (S§2.2)
RWX = "ReadWriteMany"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"

log = logging.getLogger("vcluster_spawner.home")


@dataclass(frozen=True)
class HomeSpec:
    storage_class: str           # "" = the host's default class
    size: str
    access_modes: tuple[str, ...]
    claim_name: str              # the claim inside the vCluster
    virtual_namespace: str


# ---- manifests and decisions (pure) -------------------------------------------------------

def home_host_claim_name(spec: HomeSpec, ref: Ref) -> str:
    return host_name(spec.claim_name, spec.virtual_namespace, ref.name)


def provisioning_claim(spec: HomeSpec, ref: Ref, owner: Owner) -> dict:
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": PROVISIONING_CLAIM, "namespace": ref.namespace,
                     "labels": {MANAGED_BY: MANAGED_BY_VALUE},
                     "annotations": owner.annotations()},
        "spec": {"storageClassName": spec.storage_class, "accessModes": list(spec.access_modes),
                 "resources": {"requests": {"storage": spec.size}}},
    }


def ownership_patch(ref: Ref, owner: Owner) -> dict:
    """Labels that make the PV findable as this user's home, its owner, and Retain, in one write."""
    return {"metadata": {"labels": {HOME_NAMESPACE_LABEL: ref.namespace, MANAGED_BY: MANAGED_BY_VALUE},
                         "annotations": owner.annotations()},
            "spec": {"persistentVolumeReclaimPolicy": "Retain"}}


def is_owned_home(pv: dict, ref: Ref, owner: Owner) -> bool:
    """Labelled for the namespace, Retain, and recording exactly ``owner``."""
    metadata = pv["metadata"]
    return (pv["spec"].get("persistentVolumeReclaimPolicy") == "Retain"
            and (metadata.get("labels") or {}).get(HOME_NAMESPACE_LABEL) == ref.namespace
            and owner.owns(metadata.get("annotations"))
            and Owner.recorded(metadata.get("annotations")) == owner)


def kept_for_another(pv: dict, ref: Ref, owner: Owner) -> str | None:
    """Why ``pv`` is not this user's to own, in an administrator's words; None when it is free
    (unlabelled, recording no one else) or already theirs. A provisioning claim binds whatever
    Available volume of its class fits, an administrator's pre-created home among them."""
    metadata = pv["metadata"]
    labels = metadata.get("labels") or {}
    for label in (HOME_NAMESPACE_LABEL, RETIRED_HOME_LABEL):
        if labels.get(label) and labels[label] != ref.namespace:
            return f"volume {metadata['name']} is kept for namespace {labels[label]} ({label})"
    recorded = Owner.recorded(metadata.get("annotations"))
    if recorded is not None and not owner.owns(metadata.get("annotations")):
        return f"volume {metadata['name']} records another owner, {recorded.describe()}"
    return None


def claim_ref_fix(pv: dict, namespace: str, claim: str, current_claim_uid: str | None) -> list[dict] | None:
    """JSON patch that points ``pv`` at ``namespace/claim`` and drops a stale uid; None when it
    already does. The claimRef is never cleared: an empty claimRef would let any claim bind."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if ref.get("namespace") != namespace or ref.get("name") != claim:
        return [{"op": "add", "path": "/spec/claimRef", "value": {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim}}]
    if ref.get("uid") and ref.get("uid") != current_claim_uid:
        patch = [{"op": "test", "path": "/spec/claimRef/uid", "value": ref["uid"]},
                 {"op": "remove", "path": "/spec/claimRef/uid"}]
        if "resourceVersion" in ref:
            patch.append({"op": "remove", "path": "/spec/claimRef/resourceVersion"})
        return patch
    return None


def virtual_home_claim(spec: HomeSpec, pv: dict) -> dict:
    pv_spec = pv["spec"]
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": spec.claim_name, "namespace": spec.virtual_namespace,
                     "annotations": {SKIP_TRANSLATE: "true"}},
        "spec": {"volumeName": pv["metadata"]["name"],
                 "storageClassName": pv_spec.get("storageClassName") or "",
                 "accessModes": list(spec.access_modes),
                 "resources": {"requests": {"storage": pv_spec["capacity"]["storage"]}}},
    }


# ---- operations (host and virtual API) -------------------------------------------------------

class HomeVolumes:
    def __init__(self, core: client.CoreV1Api, storage: client.StorageV1Api):
        self.core = core
        self.storage = storage

    async def _labelled(self, label: str, namespace: str) -> list[dict]:
        pvs = await self.core.list_persistent_volume(label_selector=f"{label}={namespace}")
        return [self.core.api_client.sanitize_for_serialization(pv) for pv in pvs.items
                if not pv.metadata.deletion_timestamp]

    async def find(self, ref: Ref, owner: Owner) -> dict | None:
        """The home volume labelled for the user's namespace. One that records another owner (a
        removed user's, whose removal did not retire it) is refused, never handed over: that is
        an administrator's decision (docs/install.md, "Homes of removed users"). A volume that
        records no owner (an administrator made it for this namespace) is the user's."""
        live = await self._labelled(HOME_NAMESPACE_LABEL, ref.namespace)
        if len(live) > 1:
            raise VClusterError(f"more than one home volume is labelled for {ref.namespace} "
                                f"({', '.join(pv['metadata']['name'] for pv in live)}); an administrator must remove "
                                "the label from all but one")
        if not live:
            return None
        annotations = live[0]["metadata"].get("annotations")
        if Owner.recorded(annotations) is not None and not owner.owns(annotations):
            log.warning("home volume %s of %s is not given to %s: it belongs to %s", live[0]["metadata"]["name"],
                        ref.namespace, owner.describe(), describe_recorded(annotations))
            raise VClusterError(f"a home volume kept from an earlier user named {owner.name!r} exists; it is not "
                                "yours, so it was left alone; please ask the administrators to hand it over to "
                                "you or to delete it")
        return live[0]

    async def retire(self, ref: Ref, owner: Owner) -> None:
        """The user was removed from the hub: their kept home is relabelled so that the next
        user with the same name gets a new one (an administrator may hand it over)."""
        for pv in await self._labelled(HOME_NAMESPACE_LABEL, ref.namespace):
            if owner.owns(pv["metadata"].get("annotations")):
                await self.core.patch_persistent_volume(pv["metadata"]["name"], {"metadata": {"labels": {
                    HOME_NAMESPACE_LABEL: None, RETIRED_HOME_LABEL: ref.namespace}}})
                log.info("home volume %s of removed user %s kept and retired", pv["metadata"]["name"], owner.describe())

    async def move(self, spec: HomeSpec, source: Ref, target: Ref, owner: Owner, timeout: float) -> str | None:
        """The user's vCluster moved from ``source`` (whose vCluster is gone) to ``target`` (a
        warm pool member): their home volume is labelled for ``target`` once the host claim in
        ``source`` is gone (helm uninstall garbage-collects it, S§2.6; a volume never has two
        claims), and ``ensure`` then reserves it for ``target``'s claim. Returns the volume's
        name; None when ``source`` has none (a first start, or moved already)."""
        pv = await self.find(source, owner)
        if pv is None:
            return None
        claim = home_host_claim_name(spec, source)
        await poll_until(lambda: _gone(self.core, claim, source.namespace), timeout,
                         f"your home volume is still held by {source.namespace}/{claim}; try again in a minute")
        name = pv["metadata"]["name"]
        await self.core.patch_persistent_volume(name, {"metadata": {"labels": {HOME_NAMESPACE_LABEL: target.namespace}}})
        log.info("home volume %s of %s moved from %s to %s", name, owner.describe(), source.namespace, target.namespace)
        return name

    async def ensure(self, spec: HomeSpec, ref: Ref, owner: Owner, timeout: float, report=lambda msg: None) -> dict:
        """The user's home PV, provisioned on first use, owned (Retain, owner recorded) and
        pointed at ``h(home)`` with no stale uid. Safe to repeat after a crash at any step."""
        pv = await self.find(ref, owner)
        if pv is None:
            pv = await self._from_provisioning_claim(ref)
        if pv is None:
            report(f"Creating your home volume ({spec.size}, storage class {spec.storage_class or 'default'})")
            pv = await self._provision(spec, ref, owner, timeout)
        elif not is_owned_home(pv, ref, owner):
            log.warning("home volume %s of %s: setting Retain and its owner", pv["metadata"]["name"], ref.namespace)
            pv = await self._own(pv["metadata"]["name"], ref, owner)
        await self._release_provisioning_claim(ref)
        return await self._point_at_home_claim(pv, spec, ref)

    async def _from_provisioning_claim(self, ref: Ref, claim: dict | None = None) -> dict | None:
        """The volume bound to the provisioning claim (``claim``, as just seen, or read now),
        owned: a crash between provisioning and labelling leaves a bound claim and an unlabelled PV."""
        if claim is None:
            found = await read_or_none(self.core.read_namespaced_persistent_volume_claim, PROVISIONING_CLAIM,
                                       ref.namespace)
            claim = self.core.api_client.sanitize_for_serialization(found) if found is not None else None
        if claim is None or not (claim.get("spec") or {}).get("volumeName"):
            return None
        owner = Owner.recorded(claim["metadata"].get("annotations")) or Owner("")
        return await self._own(claim["spec"]["volumeName"], ref, owner)

    async def _own(self, pv_name: str, ref: Ref, owner: Owner) -> dict:
        """Label and own the volume, unless it is kept for someone else (``kept_for_another``):
        that one is never relabelled, whatever bound it."""
        # a list by name: the hub may list and patch volumes, not get them (docs/install.md, RBAC)
        listed = await self.core.list_persistent_volume(field_selector=f"metadata.name={pv_name}")
        current = self.core.api_client.sanitize_for_serialization(listed.items[0]) if listed.items else None
        refusal = current is not None and kept_for_another(current, ref, owner)
        if refusal:
            log.warning("home of %s: %s; not taken", ref.namespace, refusal)
            raise VClusterError(f"your new home volume was bound to a volume kept for someone else ({refusal}); "
                                "it was left as it is; please contact the administrators (pre-created homes "
                                "must be reserved for their namespace, docs/install.md)")
        pv = await self.core.patch_persistent_volume(pv_name, ownership_patch(ref, owner))
        return self.core.api_client.sanitize_for_serialization(pv)

    async def _provision(self, spec: HomeSpec, ref: Ref, owner: Owner, timeout: float) -> dict:
        sc = await self._storage_class(spec.storage_class)
        if sc.volume_binding_mode == "WaitForFirstConsumer":
            raise VClusterError(f"home_storage_class {sc.metadata.name!r} binds on first consumer; home volumes "
                                "need a class with volumeBindingMode Immediate (e.g. an NFS class)")
        spec = dataclasses.replace(spec, storage_class=sc.metadata.name)
        await ignoring(self.core.create_namespaced_persistent_volume_claim(
            ref.namespace, provisioning_claim(spec, ref, owner)), 409)

        key = f"{ref.namespace}/{PROVISIONING_CLAIM}"

        def bound(claims: dict) -> bool:
            claim = claims.get(key)
            return bool(claim and (claim.get("status") or {}).get("phase") == "Bound")
        watch = await host_watch(SpawnerClaims, self.core.api_client)   # woken by the binding, not polled
        try:
            await asyncio.wait_for(watch.until(bound, key), timeout)
        except (asyncio.TimeoutError, WatchLost) as e:
            raise VClusterError(f"the storage class {spec.storage_class!r} did not provide a home volume for "
                                f"{ref.namespace} within {timeout:.0f} s" + (f" ({e})" if str(e) else "")) from None
        return await self._from_provisioning_claim(ref, watch.resources.get(key))

    async def _storage_class(self, name: str):
        """The named class, or for "" the host's default class."""
        if name:
            sc = await read_or_none(self.storage.read_storage_class, name)
            if sc is None:
                raise VClusterError(f"home_storage_class {name!r} does not exist on the host cluster")
            return sc
        defaults = [sc for sc in (await self.storage.list_storage_class()).items
                    if (sc.metadata.annotations or {}).get(DEFAULT_CLASS) == "true"]
        if not defaults:
            raise VClusterError("home_storage_class is empty and the host cluster has no default StorageClass; "
                                "set home_storage_class to an RWX class (e.g. an NFS class)")
        return defaults[0]

    async def _release_provisioning_claim(self, ref: Ref) -> None:
        # only once the PV is Retain (ensure() owns it first): deleting the claim releases the PV
        await ignoring(self.core.delete_namespaced_persistent_volume_claim(PROVISIONING_CLAIM, ref.namespace), 404)

    async def _point_at_home_claim(self, pv: dict, spec: HomeSpec, ref: Ref) -> dict:
        claim_name = home_host_claim_name(spec, ref)
        claim = await read_or_none(self.core.read_namespaced_persistent_volume_claim, claim_name, ref.namespace)
        current_uid = claim.metadata.uid if claim is not None and not claim.metadata.deletion_timestamp else None
        patch = claim_ref_fix(pv, ref.namespace, claim_name, current_uid)
        if patch is None:
            return pv
        try:
            updated = await self.core.patch_persistent_volume(pv["metadata"]["name"], patch)  # a list: JSON patch
        except ApiException as e:
            if e.status == 422:   # the uid changed under us (the binder was faster): read again next time
                return pv
            raise
        log.info("home volume %s now reserved for %s/%s", pv["metadata"]["name"], ref.namespace, claim_name)
        return self.core.api_client.sanitize_for_serialization(updated)

    async def bind_virtual(self, virtual: client.CoreV1Api, spec: HomeSpec, pv: dict, timeout: float) -> None:
        """Create the virtual home claim when missing (again if it vanishes meanwhile, e.g. the
        syncer removing a stale pair at start-up) and wait until vCluster reports it Bound."""
        name, vns, pv_name = spec.claim_name, spec.virtual_namespace, pv["metadata"]["name"]
        existing = await read_or_none(virtual.read_namespaced_persistent_volume_claim, name, vns)
        if existing is not None and existing.spec.volume_name not in (None, pv_name):
            raise VClusterError(f"the claim {vns}/{name} in your virtual cluster was changed to use volume "
                                f"{existing.spec.volume_name}; delete it (your home data is kept) and start again")

        async def bound():
            claim = await read_or_none(virtual.read_namespaced_persistent_volume_claim, name, vns)
            if claim is None:
                await ignoring(virtual.create_namespaced_persistent_volume_claim(vns, virtual_home_claim(spec, pv)), 409)
                return False
            return not claim.metadata.deletion_timestamp and claim.status.phase == "Bound"
        await poll_until(bound, timeout, f"your home volume {pv_name} was not attached to {vns}/{name} "
                                         "(if you deleted that claim, stop every pod using it)")

    async def retired(self, owner: Owner) -> list[dict]:
        """The retired home volumes that record ``owner`` (a removed user's)."""
        pvs = await self.core.list_persistent_volume(label_selector=RETIRED_HOME_LABEL)
        return [pv for pv in (self.core.api_client.sanitize_for_serialization(p) for p in pvs.items)
                if not pv["metadata"].get("deletionTimestamp") and owner.owns(pv["metadata"].get("annotations"))]

    async def delete(self, spec: HomeSpec, ref: Ref, owner: Owner, timeout: float, pv: dict | None = None) -> str | None:
        """Explicit admin action: delete the user's home data: ``pv`` (a retired one, handed back
        through the namespace ``ref``), else the live home of the user's namespace ``ref``. The
        vCluster must be gone. The PV is re-claimed by a host claim, set to ``Delete`` and
        released, so its provisioner deletes the data exactly as for any released volume;
        returns the PV name (None: there was none)."""
        pv = pv or await self.find(ref, owner)
        if pv is None:
            return None
        name = pv["metadata"]["name"]
        home_claim = home_host_claim_name(spec, ref)
        await poll_until(lambda: _gone(self.core, home_claim, ref.namespace), timeout,
                         f"the home claim {ref.namespace}/{home_claim} still exists; delete the vCluster first")
        # one atomic replacement: a PV without claimRef, even briefly, could be bound by any claim
        fix = claim_ref_fix(pv, ref.namespace, PROVISIONING_CLAIM, None)
        if fix:
            await self.core.patch_persistent_volume(name, fix)
        claim = provisioning_claim(HomeSpec(pv["spec"].get("storageClassName") or "", pv["spec"]["capacity"]["storage"],
                                            tuple(pv["spec"]["accessModes"]), spec.claim_name, spec.virtual_namespace),
                                   ref, owner)
        claim["spec"]["volumeName"] = name
        await ignoring(self.core.create_namespaced_persistent_volume_claim(ref.namespace, claim), 409)

        async def bound():
            c = await self.core.read_namespaced_persistent_volume_claim(PROVISIONING_CLAIM, ref.namespace)
            return c.status.phase == "Bound"
        await poll_until(bound, timeout, f"home volume {name} could not be claimed for deletion")
        await self.core.patch_persistent_volume(name, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}})
        await self._release_provisioning_claim(ref)
        return name


async def _gone(core: client.CoreV1Api, name: str, namespace: str) -> bool:
    return await read_or_none(core.read_namespaced_persistent_volume_claim, name, namespace) is None


def validate_access_modes(modes) -> tuple[str, ...]:
    if RWX not in modes:
        raise ValueError(f"home_access_modes must include {RWX}: every server of a user (and the user's own "
                         f"workloads) mounts the home volume at once; got {list(modes)}")
    return tuple(modes)


"""A local dynamic volume provisioner: directories under a data root stand in for disks and NFS.

It plays the part of an external provisioner. The real PV binder in kube-controller-manager
decides that a claim needs a new volume and marks it with
``volume.kubernetes.io/storage-provisioner``; this provisioner then creates a ``hostPath`` PV
pre-bound to the claim (the binder completes the binding). When a claim is deleted the binder
marks its volume Released; volumes whose reclaim policy is Delete are removed with their
directory, Retain volumes and their data stay.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from .kube import watch_forever

log = logging.getLogger("localcluster.provisioner")

PROVISIONER = "localcluster.dev/hostpath"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
CLAIM_PROVISIONER_ANNOTATIONS = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)

# name -> (reclaim policy, default class?, binding mode). "local-rwx" stands in for an NFS
# class. The default class binds on first consumer, like most block-storage classes: with
# Immediate binding a StatefulSet pod created before its claim is bound can sit in the
# scheduler's unschedulable queue for minutes (seen with ten vClusters starting at once).
STORAGE_CLASSES = {
    "local-rwo": ("Delete", True, "WaitForFirstConsumer"),
    "local-rwx": ("Delete", False, "Immediate"),
    "local-rwx-retain": ("Retain", False, "Immediate"),
}


class LocalProvisioner:
    def __init__(self, api: client.ApiClient, data_root: Path):
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.data_root = data_root

    async def create_storage_classes(self) -> None:
        for name, (reclaim, default, binding) in STORAGE_CLASSES.items():
            body = {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": name, "annotations": {
                    "storageclass.kubernetes.io/is-default-class": str(default).lower()}},
                "provisioner": PROVISIONER, "reclaimPolicy": reclaim,
                "volumeBindingMode": binding, "allowVolumeExpansion": True,
            }
            try:
                await self.storage.create_storage_class(body)
            except ApiException as e:
                if e.status != 409:
                    raise

    def volume_dir(self, pv_name: str) -> Path:
        return self.data_root / pv_name

    async def on_claim(self, event_type: str, pvc) -> None:
        annotations = pvc.metadata.annotations or {}
        wanted = any(annotations.get(a) == PROVISIONER for a in CLAIM_PROVISIONER_ANNOTATIONS)
        if event_type == "DELETED" or not wanted or pvc.spec.volume_name or pvc.metadata.deletion_timestamp:
            return
        sc = await self.storage.read_storage_class(pvc.spec.storage_class_name)
        pv_name = f"pvc-{pvc.metadata.uid}"
        path = self.volume_dir(pv_name)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # like an NFS export: any uid of the user's containers may write
        body = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": pvc.spec.resources.requests["storage"]},
                "accessModes": pvc.spec.access_modes,
                "persistentVolumeReclaimPolicy": sc.reclaim_policy or "Delete",
                "storageClassName": sc.metadata.name,
                "volumeMode": pvc.spec.volume_mode or "Filesystem",
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "namespace": pvc.metadata.namespace, "name": pvc.metadata.name,
                             "uid": pvc.metadata.uid},
            },
        }
        try:
            await self.core.create_persistent_volume(body)
            log.info("provisioned %s for %s/%s", pv_name, pvc.metadata.namespace, pvc.metadata.name)
        except ApiException as e:
            if e.status != 409:
                log.warning("provisioning %s failed: %s", pv_name, e.reason)

    async def on_volume(self, event_type: str, pv) -> None:
        ours = (pv.metadata.annotations or {}).get(PROVISIONED_BY) == PROVISIONER
        if event_type == "DELETED" or not ours:
            return
        if pv.status.phase == "Released" and pv.spec.persistent_volume_reclaim_policy == "Delete":
            shutil.rmtree(self.volume_dir(pv.metadata.name), ignore_errors=True)
            try:
                await self.core.delete_persistent_volume(pv.metadata.name)
                log.info("deleted released volume %s and its data", pv.metadata.name)
            except ApiException as e:
                if e.status != 404:
                    raise

    async def run(self) -> None:
        await asyncio.gather(
            watch_forever(self.core.list_persistent_volume_claim_for_all_namespaces, self.on_claim, what="pvcs"),
            watch_forever(self.core.list_persistent_volume, self.on_volume, what="pvs"),
        )

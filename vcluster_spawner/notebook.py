"""What the spawner adds to KubeSpawner's notebook pod (pure functions).

KubeSpawner builds the pod (image, resources, profiles' volumes, hooks); the spawner adds the
home claim and the credential Secrets to the notebook container, so profile-level
``volumes``/``volume_mounts`` keep working exactly as in KubeSpawner.
"""

from __future__ import annotations

from kubernetes_asyncio.client import V1EnvFromSource, V1EnvVar, V1Pod, V1Volume, V1VolumeMount
from kubespawner.utils import get_k8s_model


def home_wiring(claim_name: str, mount_path: str) -> dict[str, list[dict]]:
    return {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim_name}}],
            "mounts": [{"name": "home", "mountPath": mount_path}], "env": [], "env_from": []}


def cluster_wiring(name: str, host_namespace: str, stop_action: str) -> dict[str, list[dict]]:
    """Which cluster the notebook is in and what a stop does to it, as environment variables
    (docs/hub.md, "Inside the notebook"): VCLUSTER_NAME (also the kubeconfig's context name),
    VCLUSTER_HOST_NAMESPACE, VCLUSTER_STOP_ACTION (sleep, delete, none) and VCLUSTER_EPHEMERAL
    ("true" when a stop deletes the cluster and everything in it but the home directory)."""
    env = {"VCLUSTER_NAME": name, "VCLUSTER_HOST_NAMESPACE": host_namespace, "VCLUSTER_STOP_ACTION": stop_action,
           "VCLUSTER_EPHEMERAL": "true" if stop_action == "delete" else "false"}
    return {"volumes": [], "mounts": [], "env": [{"name": k, "value": v} for k, v in env.items()], "env_from": []}


def merge_wiring(*parts: dict[str, list[dict]]) -> dict[str, list[dict]]:
    return {key: [item for part in parts for item in part[key]] for key in ("volumes", "mounts", "env", "env_from")}


def add_wiring(pod: V1Pod, wiring: dict[str, list[dict]]) -> V1Pod:
    """Adds volumes to the pod and mounts/env to its first (notebook) container. A name the
    operator already used (e.g. a profile volume called "home") is an error, not a silent
    override of the user's home."""
    container = pod.spec.containers[0]
    taken = {v.name for v in pod.spec.volumes or []}
    clashes = sorted(taken & {v["name"] for v in wiring["volumes"]})
    if clashes:
        raise ValueError(f"volume name(s) {', '.join(clashes)} are reserved by the spawner; rename them in "
                         "the profile or KubeSpawner.volumes")
    pod.spec.volumes = (pod.spec.volumes or []) + [get_k8s_model(V1Volume, v) for v in wiring["volumes"]]
    container.volume_mounts = (container.volume_mounts or []) + [
        get_k8s_model(V1VolumeMount, m) for m in wiring["mounts"]]
    container.env = (container.env or []) + [get_k8s_model(V1EnvVar, e) for e in wiring["env"]]
    container.env_from = (container.env_from or []) + [get_k8s_model(V1EnvFromSource, e) for e in wiring["env_from"]]
    return pod

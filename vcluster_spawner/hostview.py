"""Per-user views of KubeSpawner's shared host reflectors.

All users share one host-side watch per kind (pods, events), across every vCluster. A view
re-keys the host copies of one vCluster's pods by their *virtual* ``namespace/name`` (from
vCluster's ``object-*`` annotations), so KubeSpawner's own code, which looks pods up as
``f"{self.namespace}/{self.pod_name}"``, works unchanged against the synced host pods.
"""

from __future__ import annotations

from .translate import MANAGED_BY

OBJECT_NAME = "vcluster.loft.sh/object-name"
OBJECT_NAMESPACE = "vcluster.loft.sh/object-namespace"


class VirtualPodView:
    def __init__(self, reflector, host_namespace: str, vcluster: str):
        self.reflector = reflector
        self.host_namespace = host_namespace
        self.vcluster = vcluster

    def host_pods(self) -> list[dict]:
        return [
            pod for pod in self.reflector.resources.values()
            if pod["metadata"]["namespace"] == self.host_namespace
            and (pod["metadata"].get("labels") or {}).get(MANAGED_BY) == self.vcluster
        ]

    @property
    def pods(self) -> dict[str, dict]:
        view = {}
        for pod in self.host_pods():
            a = pod["metadata"].get("annotations") or {}
            if OBJECT_NAME in a:
                view[f"{a.get(OBJECT_NAMESPACE, '')}/{a[OBJECT_NAME]}"] = pod
        return view


def host_pod_events(event_reflector, host_namespace: str, host_pod_name: str) -> list[dict]:
    return [
        e for e in event_reflector.events
        if e["involvedObject"].get("namespace") == host_namespace and e["involvedObject"]["name"] == host_pod_name
    ]

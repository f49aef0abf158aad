"""A real, local Kubernetes for tests and the demo.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the upstream binaries
(built by ``tools/build-binaries.sh``); only the kubelet and the volume provisioner are local
stand-ins, because no container runtime exists here. Pods whose image maps to a local command
run as real processes on a loopback pod IP; pods whose image cannot run are simulated.

Entry points: ``python -m localcluster up|down|status|env`` and :class:`LocalCluster`.
"""

from .cluster import ClusterState, LocalCluster

__all__ = ["LocalCluster", "ClusterState"]

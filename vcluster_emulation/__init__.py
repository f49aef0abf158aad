"""A faithful emulation of vCluster 0.36.1 on the local cluster (test and demo infrastructure).

Pieces: ``chart/vcluster`` (stand-in Helm chart), ``controlplane`` (a real kube-apiserver and
controller-manager per vCluster), ``syncer`` (upstream's sync semantics), ``simulator`` (pod
``N-0``'s lifecycle, plugged into the local kubelet). See docs/vcluster-emulation.md.
"""

from .simulator import register

__all__ = ["register"]

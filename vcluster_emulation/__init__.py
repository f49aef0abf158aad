"""A faithful emulation of vCluster 0.36.1 on the local cluster (test and demo infrastructure).

The chart is upstream's own (0.36.1, packaged from its Go module by tools/build-vcluster.sh);
what stands in is the ``syncer`` container of its pod ``N-0``: ``simulator`` (that container's
lifecycle, plugged into the local kubelet for the ``ghcr.io/loft-sh/vcluster-*`` image),
``controlplane`` (a real kube-apiserver and controller-manager per vCluster) and ``syncer``
(upstream's sync semantics). See docs/vcluster-emulation.md.
"""

from .simulator import register

__all__ = ["register"]

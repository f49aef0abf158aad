"""vCluster's host-name translation, as upstream computes it (pure functions).

The spawner needs these to name host objects that vCluster's syncer will create or look for
(e.g. the host PVC a pre-bound home volume's claimRef must name). Upstream:
loft-sh/vcluster v0.36.1 ``pkg/util/translate/single_namespace.go`` (``HostName``) and
``pkg/util/translate/translate.go`` (``SafeConcatName``).
"""

from __future__ import annotations

import hashlib

MANAGED_BY = "vcluster.loft.sh/managed-by"
VIRTUAL_NAMESPACE_LABEL = "vcluster.loft.sh/namespace"


def safe_concat_name(*parts: str) -> str:
    """Join with '-'; above 63 characters keep the first 52, add '-' and 10 hex digits of the
    SHA-256 of the full string, then collapse '.-' into '-' (upstream ``SafeConcatName``)."""
    full = "-".join(parts)
    if len(full) > 63:
        digest = hashlib.sha256(full.encode()).hexdigest()
        return (full[:52] + "-" + digest[:10]).replace(".-", "-")
    return full


def host_name(name: str, virtual_namespace: str, vcluster: str) -> str:
    """Host name of a namespaced virtual object: ``<name>-x-<vns>-x-<vcluster>``."""
    return safe_concat_name(name, "x", virtual_namespace, "x", vcluster)


def host_cluster_scoped_name(name: str, host_namespace: str, vcluster: str) -> str:
    """Host name of a cluster-scoped virtual object: ``vcluster-<name>-x-<ns>-x-<vcluster>``."""
    return safe_concat_name("vcluster", name, "x", host_namespace, "x", vcluster)

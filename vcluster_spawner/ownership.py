"""Who a host namespace or home volume belongs to, and the labels a user namespace carries
(pure functions).

A name is not an ownership check: templates can map two users to one namespace, an
administrator may have made a namespace of that name for something else, and a user removed
from the hub may come back as a different person with the same name. So every namespace the
spawner creates, and every home volume it owns, records its owner: the raw user name, and for
the time the hub created that user (JupyterHub's ``User.created``). The spawner uses and
deletes only what records the user it acts for (by name, and by creation time where both the
record and the caller know it); anything else is refused with a message and left as it is. A
newcomer with a removed user's name is kept from that user's namespace and home because the
removal retires both first (``retire_patch``, home.py), and because the newcomer's creation
time differs (docs/architecture.md, "Threat model").
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from .names import label_value

OWNER_ANNOTATION = "hub.jupyter.org/owner"
OWNER_CREATED_ANNOTATION = "hub.jupyter.org/owner-created"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "vcluster-spawner"
USERNAME_LABEL = "hub.jupyter.org/username"
VCLUSTER_ANNOTATION = "hub.jupyter.org/vcluster"            # the vCluster's name in the namespace
REMOVED_OWNER_ANNOTATION = "hub.jupyter.org/removed-owner"  # retired: "name (created …) at …"
POD_SECURITY_LEVELS = ("restricted", "baseline")
_POD_SECURITY = "pod-security.kubernetes.io"


@dataclass(frozen=True)
class Owner:
    """A hub user as recorded on the objects it owns. ``created`` is "" where it is not known
    (the provision CLI without hub access): the user's first start records it."""
    name: str
    created: str = ""

    def annotations(self) -> dict[str, str]:
        annotations = {OWNER_ANNOTATION: self.name}
        if self.created:
            annotations[OWNER_CREATED_ANNOTATION] = self.created
        return annotations

    @classmethod
    def recorded(cls, annotations: dict | None) -> Owner | None:
        """The owner recorded in ``annotations``; None when there is none."""
        annotations = annotations or {}
        if OWNER_ANNOTATION not in annotations:
            return None
        return cls(annotations[OWNER_ANNOTATION], annotations.get(OWNER_CREATED_ANNOTATION, ""))

    def owns(self, annotations: dict | None) -> bool:
        """Do ``annotations`` record this user: the same name, and the same creation time where
        both are known? A newcomer with a removed user's name has another creation time. A hub
        that lost its database knows every user anew, too: an administrator hands a namespace
        over with ``python -m vcluster_spawner adopt USER``."""
        recorded = self.recorded(annotations)
        if recorded is None or recorded.name != self.name:
            return False
        return not (recorded.created and self.created) or _instant(recorded.created) == _instant(self.created)

    def describe(self) -> str:
        return f"{self.name!r}" + (f" (created {self.created})" if self.created else "")


def _instant(text: str) -> datetime.datetime | str:
    """A recorded time as an instant (the hub's ``…Z`` and Kubernetes' forms alike)."""
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def retire_patch(owner: Owner, at: str) -> dict:
    """Merge patch that makes a removed user's namespace no one's: the owner record becomes a
    note for administrators, so nothing (a newcomer with the name, a service) acts on it as a
    user's again; only an administrator's command does."""
    return {"metadata": {"annotations": {OWNER_ANNOTATION: None, OWNER_CREATED_ANNOTATION: None,
                                         REMOVED_OWNER_ANNOTATION: f"{owner.describe()} at {at}"}}}


def describe_recorded(annotations: dict | None) -> str:
    recorded = Owner.recorded(annotations)
    return recorded.describe() if recorded else "no owner recorded (not made by vcluster-spawner)"


def namespace_labels(owner: Owner, pod_security_level: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of a user's host namespace: the operator's extra labels, then the spawner's
    (which win): managed-by, the user as a valid label value, and Pod Security admission
    enforcing ``pod_security_level`` (also warn and audit, so a refusal says why)."""
    labels = dict(extra or {})
    labels.update({MANAGED_BY: MANAGED_BY_VALUE, USERNAME_LABEL: label_value(owner.name)})
    for mode in ("enforce", "warn", "audit"):
        labels[f"{_POD_SECURITY}/{mode}"] = pod_security_level
        labels[f"{_POD_SECURITY}/{mode}-version"] = "latest"
    return labels


def namespace_manifest(name: str, owner: Owner, labels: dict[str, str], vcluster: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels,
                         "annotations": {**owner.annotations(), VCLUSTER_ANNOTATION: vcluster}}}


def namespace_repair(metadata: dict, owner: Owner, labels: dict[str, str], vcluster: str) -> dict | None:
    """Merge patch that re-asserts the spawner's labels and completes the owner and vCluster
    records on an owned namespace; None when nothing differs. A tenant cannot change host
    namespaces, but an operator or an older version of the spawner may have."""
    current = metadata.get("labels") or {}
    recorded = metadata.get("annotations") or {}
    patch: dict = {}
    changed = {k: v for k, v in labels.items() if current.get(k) != v}
    if changed:
        patch["labels"] = changed
    annotations = {VCLUSTER_ANNOTATION: vcluster}
    if owner.created:
        annotations[OWNER_CREATED_ANNOTATION] = owner.created
    annotations = {k: v for k, v in annotations.items() if recorded.get(k) != v}
    if annotations:
        patch["annotations"] = annotations
    return {"metadata": patch} if patch else None


HUB_ROLE_BINDING = "vcluster-spawner-hub"


def hub_role_binding(cluster_role: str, service_account: str) -> dict:
    """RoleBinding, in a user's namespace, of ``cluster_role`` to the hub's ServiceAccount
    ("namespace/name"): the hub's rights there come from it, not from a cluster-wide grant."""
    namespace, _, name = service_account.partition("/")
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": HUB_ROLE_BINDING, "labels": {MANAGED_BY: MANAGED_BY_VALUE}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}

"""What the status page shows about one vCluster, read from the host cluster.

State (running, asleep, provisioning, absent, error) and since when, age, and the resource
requests of everything running in the user's namespace (control plane and synced pods).
"""

from __future__ import annotations

import base64
import datetime
import re
from dataclasses import dataclass, field
from decimal import Decimal

from kubernetes_asyncio.client.rest import ApiException

from ..vcluster import Ref, State, VClusterOps, control_plane_failure, read_or_none
from .common import parse_time

_SUFFIXES = {"": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("0.001"), "k": 10**3, "M": 10**6,
             "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
# the API server's quantity grammar (k8s.io/apimachinery pkg/api/resource/quantity.go): a signed
# decimal number, then a binary or decimal SI suffix or a decimal exponent ("1e3", "5E-2")
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity ("250m", "1Gi", "2", "1e3", "500n") as a number; ``ValueError``
    for anything the API server would not have accepted."""
    match = _QUANTITY.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    if suffix not in _SUFFIXES:   # a decimal exponent
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIXES[suffix]


def _requested(value) -> Decimal:
    """One container's request as a number; 0 for one that cannot be read (it is a tenant's:
    one odd value must not turn a page of every user's clusters into an error)."""
    try:
        return quantity(value)
    except (ValueError, ArithmeticError):
        return Decimal(0)


@dataclass
class VClusterView:
    ref: Ref
    state: str                         # running, asleep, provisioning, absent, error
    since: datetime.datetime | None = None
    created: datetime.datetime | None = None
    detail: str = ""                   # why "error", say
    cpu_requests: Decimal = Decimal(0)        # cores
    memory_requests: Decimal = Decimal(0)     # bytes
    pods: int = 0
    extra: dict = field(default_factory=dict)
    claimed: str | None = None         # the claim seen (vcluster.STARTING_AT): an action confirmed on it is conditional
    woken_ahead: str | None = None     # woken ahead of a start (the spawn page was opened), no start yet


async def inspect(ops: VClusterOps, ref: Ref) -> VClusterView:
    """The vCluster as the status page shows it; never raises for what it finds (an API error
    becomes state "error")."""
    try:
        status = await ops.status(ref)
    except ApiException as e:
        return VClusterView(ref, "error", detail=f"host API: {e.status} {e.reason}")
    if status.state == State.ABSENT:
        return VClusterView(ref, "absent")
    sts = await ops.apps.read_namespaced_stateful_set(ref.name, ref.namespace)
    view = VClusterView(ref, {State.RUNNING: "running", State.ASLEEP: "asleep",
                              State.STARTING: "provisioning"}[status.state],
                        created=sts.metadata.creation_timestamp, claimed=status.claimed,
                        woken_ahead=status.woken_ahead)
    if status.state == State.ASLEEP:
        view.since = parse_time(status.since)
    pods = (await ops.core.list_namespaced_pod(ref.namespace)).items
    control_plane = next((p for p in pods if p.metadata.name == f"{ref.name}-0"), None)
    if control_plane is not None:
        failure = control_plane_failure(ops.core.api_client.sanitize_for_serialization(control_plane))
        if failure:
            view.state, view.detail = "error", f"control plane: {failure}"
        if status.state == State.RUNNING:
            ready = next((c for c in control_plane.status.conditions or [] if c.type == "Ready"), None)
            view.since = ready.last_transition_time if ready else None
    if status.state == State.STARTING and view.since is None:
        view.since = control_plane.metadata.creation_timestamp if control_plane else sts.metadata.creation_timestamp
    for pod in pods:
        if pod.metadata.deletion_timestamp or pod.status.phase in ("Succeeded", "Failed"):
            continue
        view.pods += 1
        for c in pod.spec.containers:
            requests = (c.resources.requests if c.resources else None) or {}
            view.cpu_requests += _requested(requests.get("cpu", "0"))
            view.memory_requests += _requested(requests.get("memory", "0"))
    return view


async def read_kubeconfig(ops: VClusterOps, ref: Ref, secret_name: str, key: str) -> bytes | None:
    """The user's external kubeconfig from a host Secret, or None when there is none (yet)."""

    secret = await read_or_none(ops.core.read_namespaced_secret, secret_name, ref.namespace)
    data = (secret.data or {}) if secret else {}
    return base64.b64decode(data[key]) if key in data else None

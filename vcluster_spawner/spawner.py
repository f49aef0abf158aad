"""VClusterSpawner: each user's notebook runs inside the user's own vCluster.

Lifecycle glue and configuration only: names come from ``names``, helm values from ``values``,
cluster operations from ``vcluster``, the per-user view of the shared host watch from
``hostview``. Everything KubeSpawner already does (pod manifest, profiles, hooks, slugs, the
pod watch) is reused; the seams used are ``_start``, ``_start_reflector``, ``pod_reflector``,
``events`` and ``self.api`` (pinned: jupyterhub-kubespawner 7.x).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import inspect
import re
from typing import NamedTuple

from jupyterhub.utils import isoformat
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from kubespawner.clients import shared_client
from kubespawner.reflector import ResourceReflector
from kubespawner.spawner import EventReflector, PodReflector
from kubespawner.utils import recursive_format
from traitlets import Bool, Callable, Dict, Enum, Float, Integer, List, TraitError, Unicode, Union, default, validate

from . import credentials, names, pool
from .credentials import NotebookAccess, checked_s3_values, encode, ensure_service_account, user_kubeconfig
from .helm import ChartRef, Helm, HelmError
from .home import HomeSpec, HomeVolumes, validate_access_modes
from .hostview import VirtualPodView, host_pod_events
from .lifecycle import VClusterLifecycle
from .metrics import MeteredOps, wake_ahead
from .notebook import add_wiring, cluster_wiring, home_wiring, merge_wiring
from .ownership import POD_SECURITY_LEVELS, Owner, hub_role_binding, namespace_labels
from .translate import host_name
from .values import computed_values, vcluster_values, with_hash
from .vcluster import (
    NotOwned,
    Ref,
    State,
    Superseded,
    VClusterError,
    VClusterOps,
    VirtualClient,
    api_message,
    concurrently,
    container_failure,
    ignoring,
    read_or_none,
    values_hash_of,
)
from .watches import WatchedEvents, WatchedPods, WatchLost

try:  # JupyterHub >= 6: expected failures without a traceback
    from jupyterhub.spawner import SpawnException
except ImportError:  # pragma: no cover
    SpawnException = None


# True inside KubeSpawner's pod start, which calls stop() to remove a leftover pod
_creating_pod: contextvars.ContextVar[bool] = contextvars.ContextVar("creating_pod", default=False)


class HostSide(NamedTuple):
    """What ``_prepare_host_side`` made, for the steps inside the vCluster."""
    s3: bool                   # S3 credentials are passed to the notebook
    s3_revision: str | None    # the revision their virtual copy must reach
    home: dict | None          # the home PersistentVolume (home_enabled)


def _user_error(message: str) -> Exception:
    return SpawnException(message, reason="vcluster") if SpawnException else RuntimeError(message)


class VClusterSpawner(KubeSpawner):
    """Spawns each user's server in the user's own vCluster (one per user, shared by all their
    named servers), created or woken on start and put to sleep or deleted on stop."""

    # KubeSpawner keeps its shared reflectors on the class; without our own dict we would share
    # (and clash with) plain KubeSpawner's, keyed by namespace.
    reflectors: dict = {}
    _locks: dict[Ref, asyncio.Lock] = {}
    _stop_actions: dict[Ref, asyncio.Task] = {}
    _wake_aheads: dict[Ref, asyncio.Task] = {}   # back to sleep after wake_ahead_timeout, unless started
    _woken_ahead: set[Ref] = set()               # woken ahead, no start yet
    _wake_ahead_at: dict[Ref, float] = {}        # the last wake ahead (event loop time)
    _background: set[asyncio.Task] = set()   # strong references: the loop keeps only weak ones
    _helm: Helm | None = None

    vcluster_mode = Enum(
        ["static", "dynamic"], "dynamic", config=True,
        help="""How users' vClusters come to exist. Default: "dynamic".

        "dynamic": the spawner creates the vCluster (helm upgrade --install) on start when it is
        missing or its values changed, and by default deletes it when the user's last server
        stops. "static": an operator pre-provisions the vClusters (``python -m vcluster_spawner
        provision``); the spawner never creates or deletes them, wakes them on start and by
        default puts them to sleep on stop; a missing vCluster is an error shown to the user.
        """,
    )
    stop_action = Enum(
        ["sleep", "delete", "none"], None, allow_none=True, config=True,
        help="""What happens to the vCluster when the user's last server stops (or is culled).

        "sleep": as ``vcluster pause`` (control plane scaled to 0, synced pods deleted; the
        cluster's state is kept). "delete": as ``vcluster delete`` (release uninstalled and the
        control plane's data volume deleted). "none": left running. Default (None): "sleep" in
        static mode, "delete" in dynamic mode. Never touches the user's home storage.
        """,
    )
    survival_notice = Unicode(
        "", config=True,
        help="""The sentence the hub's spawn, progress and home pages and the status page show users
        about what survives a stop (fields: {home}, the home directory's mount path; {cluster},
        the vCluster's name). Default: "" (generated from the stop action, the home storage, the
        S3 credentials and the lifecycle service's deletion of asleep vClusters; for example, in
        dynamic mode: "Only your home directory (/home/jovyan) survives a stop: everything else
        you create in vc-bea ... is deleted."). vcluster_spawner/guidance.py writes the default.""",
    )
    sleep_grace_period = Float(
        60.0, config=True,
        help="""Seconds to wait after the user's last server stops before applying
        ``stop_action``, so that a quick restart finds the vCluster still running. Default: 60.
        0 applies it at once. A start during the grace period cancels it.
        """,
    )
    vcluster_namespace_template = Unicode(
        "vc-{username}", config=True,
        help="""Host namespace of a user's vCluster (one per user: upstream allows one vCluster
        per namespace). Fields: {username} (the user name itself when it is lower-case letters,
        digits and single dashes of at most 40 characters, else a cleaned-up form with ``--`` and
        16 hex digits of its SHA-256), {userid}, {raw_username}. The result is made a valid,
        unique DNS label (≤ 63 characters, hash-suffixed when the template's output is not
        valid, or has a "--" other than a final hash). This is where a *new* user's vCluster
        goes: an existing one is found by the owner its namespace records, whatever its name
        (vcluster_spawner/gate.py), so changing a template moves no one. Default: "vc-{username}".
        """,
    )
    vcluster_name_template = Unicode(
        "vc-{username}", config=True,
        help="""Name (Helm release) of a user's vCluster, made a valid DNS-1035 label of at most
        52 characters (hash-suffixed when needed; the StatefulSet controller's revision label
        ``<name>-<hash of up to 10 characters>`` must fit 63). It is part of every synced host object's
        name, so shorter is better. Fields as for ``vcluster_namespace_template``.
        Default: "vc-{username}".
        """,
    )
    vcluster_chart = Unicode(
        "vcluster", config=True,
        help="""The vCluster Helm chart: a chart name in ``vcluster_chart_repo``, a local path,
        or an ``oci://`` reference. Default: "vcluster".""",
    )
    vcluster_chart_repo = Unicode(
        "https://charts.loft.sh", config=True,
        help="Helm repository of ``vcluster_chart`` (ignored for paths and oci:// references). "
             "Default: https://charts.loft.sh",
    )
    vcluster_chart_version = Unicode(
        "0.36.1", config=True,
        help="Chart version; empty means the newest. Default: 0.36.1 (the version this spawner is "
             "tested against).",
    )
    vcluster_values = Dict(
        config=True,
        help="""Operator vcluster.yaml values for every user's vCluster, e.g. resources, storage
        class of the control plane volume, policies. Profiles may override parts of it through
        ``kubespawner_override: {vcluster_values: {...}}`` (merged recursively). The spawner's own
        settings (distro, export of the kubeconfig, extra SANs, telemetry off) are merged on top.
        Default: {}.
        """,
    )
    vcluster_api_url_template = Unicode(
        "https://{name}.{namespace}.svc:443", config=True,
        help="""How the hub reaches a vCluster's API (Service ``N`` in the user's namespace).
        Fields: {name}, {namespace}, {cluster_ip} (looked up from the Service). The default is
        the in-cluster DNS name, which the spawner adds to the serving certificate's SANs.
        Default: "https://{name}.{namespace}.svc:443".
        """,
    )
    vcluster_ready_timeout = Float(
        300.0, config=True,
        help="""Seconds to wait for a created or woken vCluster to be ready (control plane Ready,
        API /readyz, default ServiceAccount). Default: 300. Also raise ``start_timeout``, which
        bounds the whole start.""",
    )
    # KubeSpawner's defaults (3 s a request, 30 s in all) suit a host API server; here the pod is
    # created through the user's vCluster API server, which has often just started or woken
    k8s_api_request_timeout = Integer(
        10, config=True,
        help="""Seconds one request to create or delete the notebook pod may take, through the
        vCluster's API server, before it is retried. Default: 10 (KubeSpawner's 3 s is short for
        a virtual API server that has just started: at 20 users starting at once on a 2-core
        benchmark machine, some creates took longer on every try, docs/real-vcluster.md).""",
    )
    k8s_api_request_retry_timeout = Integer(
        120, config=True,
        help="""Seconds in all to keep retrying the notebook pod's create (or delete) through the
        vCluster's API server before the start (or stop) fails. Default: 120 (KubeSpawner: 30).
        A start is bounded by ``start_timeout`` as well.""",
    )
    user_namespace_objects = List(
        Dict(), config=True,
        help="""Kubernetes objects kept in every user's host namespace (server-side applied on
        each start and by the provision CLI): NetworkPolicies ("only the hub's proxy reaches
        notebooks, nothing reaches another user's namespace"), TLS-passthrough routes for
        ``external_api_host_template`` (Ingress, Traefik IngressRouteTCP, ApisixRoute), ... Each
        item is a full manifest (apiVersion, kind, metadata.name); strings may use {namespace},
        {vcluster}, {username} and {external_host}. Selectors can rely on the namespace labels
        ``app.kubernetes.io/managed-by: vcluster-spawner`` and ``hub.jupyter.org/username``, and
        on host notebook pods' labels ``component: singleuser-server`` and
        ``vcluster.loft.sh/managed-by: <vcluster>``. The chart ships defaults. The hub's
        ServiceAccount needs RBAC for each kind. Default: [] (none).""",
    )
    vcluster_namespace_labels = Dict(
        config=True,
        help="""Extra labels on the host namespaces the spawner creates (e.g. for NetworkPolicies).
        The spawner's own labels win: managed-by, the user, and Pod Security admission (set
        ``pod_security_level`` for that). Default: {}.""",
    )
    pod_security_level = Enum(
        list(POD_SECURITY_LEVELS), "restricted", config=True,
        help="""Kubernetes Pod Security Standard enforced on every pod of a user's vCluster, twice:
        by the host API server on the user's host namespace (labels
        ``pod-security.kubernetes.io/enforce|warn|audit``, set on creation and re-asserted on
        every start) and inside the vCluster (vCluster's ``policies.podSecurityStandard``), so a
        violating pod is refused when the tenant creates it. Default: "restricted" (non-root, no
        privilege escalation, all capabilities dropped, seccomp RuntimeDefault; the notebook pod
        and the vCluster's control plane are configured to pass it).

        "baseline" allows what some images need (running as root, added capabilities such as
        CHOWN or SETUID) but also inline ``nfs``/``iscsi``/``cephfs`` volumes and root in the
        container: with it, the chart's admission policy (docs/install.md, "Isolation") is the
        only thing between a tenant and a volume of another user's NFS export. Never
        "privileged": a privileged pod is root on the node.""",
    )
    hub_namespace_role = Unicode(
        "", config=True,
        help="""ClusterRole that gives the hub its rights inside each user's host namespace,
        bound there (RoleBinding ``vcluster-spawner-hub``) to ``hub_service_account`` when the
        spawner creates the namespace, and re-bound on every start if missing. The chart ships
        it (``<release>-hub-namespace``) so that the hub holds no cluster-wide rights on Secrets,
        Pods or exec (docs/install.md, "RBAC"). "" = no binding: the hub's identity already has
        the rights (a cluster admin's, as in the tests). Default: "".""",
    )
    hub_service_account = Unicode(
        "", config=True,
        help="""The hub's ServiceAccount as "namespace/name", the subject of the RoleBinding made
        for ``hub_namespace_role``. Default: "" (no binding).""",
    )
    virtual_namespace = Unicode(
        "default", config=True,
        help="Namespace inside the vCluster where notebook pods run. Default: default.",
    )
    helm_binary = Unicode("helm", config=True, help="The helm executable. Default: helm (on PATH).")
    helm_max_concurrency = Integer(
        4, config=True,
        help="At most this many helm processes run at once, across all users. Default: 4.",
    )
    helm_timeout = Float(600.0, config=True, help="Seconds before a helm command is killed. Default: 600.")
    delete_namespace_on_delete_forever = Bool(
        True, config=True,
        help="""Delete the user's host namespace, with everything vCluster synced into it, when the
        user (or their last server) is removed from the hub. Default: True.""",
    )

    # ---- warm pool and wake-ahead (docs/hub.md "Warm pool and wake-ahead") ---------------------

    warm_pool_size = Integer(
        0, config=True,
        help="""Dynamic mode: how many ready, never-used vClusters the lifecycle service keeps for
        starts that have none (a first start, or a start after the stop action deleted the
        user's), so that they start as fast as a warm one. Per profile: a profile sets its own
        through ``kubespawner_override: {warm_pool_size: N}`` (profiles that change
        ``vcluster_values`` need pools of their own; profiles with the same values share one).
        Each member is a running control plane (its memory is in docs/install.md). A start finds
        the pool empty or has a setting a member cannot have (``external_api_host_template``):
        it creates the vCluster as without a pool and says so. Default: 0 (no pool).""",
    )
    warm_pool_prefix = Unicode(
        "vc-pool-", config=True,
        help="""Name of a warm pool member's host namespace and vCluster: this prefix, 12 random
        hex digits and ``--pool`` (no user's name: a member is anyone's until claimed; and no
        name a name template can produce, so no user's name maps onto a member). It stays the
        user's vCluster's name after the claim. At most 34 characters, without "--".
        Default: "vc-pool-".""",
    )
    wake_ahead_timeout = Float(
        120.0, config=True,
        help="""Seconds a vCluster woken ahead stays awake without a start. When a user whose
        vCluster is asleep opens the spawn page (the hub asks for the server options form), the
        spawner wakes it in the background, so that its control plane starts while the user
        chooses a profile; if no server starts within this time it is put back to sleep (unless
        a start claimed it meanwhile). 0 disables waking ahead. Default: 120.""",
    )

    wake_ahead_min_interval = Float(
        300.0, config=True,
        help="""Seconds between two wakes ahead of the same vCluster, at the least: a user who
        reloads the spawn page again and again wakes it once in this time, not each time. 0: no
        limit. Default: 300.""",
    )

    # ---- home storage (docs/architecture.md "Home storage") ----------------------------------

    home_enabled = Bool(
        True, config=True,
        help="""Give every user a persistent home volume, mounted at ``home_mount_path`` in all
        their servers. Default: True.""",
    )
    home_storage_class = Unicode(
        "", config=True,
        help="""Host StorageClass that provisions a user's home volume on first use (once: the
        spawner then owns the PersistentVolume, sets it to Retain and reserves it for the user's
        vCluster). It must provide ReadWriteMany volumes (NFS, CephFS, EFS, ...) and bind
        immediately. "" = the host's default StorageClass. A PV an administrator created and
        labelled ``hub.jupyter.org/home-namespace=<user namespace>`` is used instead, if present.
        Default: "".""",
    )
    home_size = Unicode(
        "10Gi", config=True,
        help="Size requested for a new home volume (Kubernetes quantity). Existing volumes keep "
             "their size. Default: 10Gi.",
    )
    home_access_modes = List(
        Unicode(), ["ReadWriteMany"], config=True,
        help="""Access modes of the home volume. Must include ReadWriteMany: all servers of a user
        (and the user's own workloads) mount it at once. Default: ["ReadWriteMany"].""",
    )
    home_mount_path = Unicode(
        "/home/jovyan", config=True,
        help="Where the home volume is mounted in the notebook container; also its working "
             "directory. Default: /home/jovyan.",
    )
    home_claim_name = Unicode(
        "home", config=True,
        help="""Name of the PersistentVolumeClaim for the home volume inside the vCluster
        (namespace ``virtual_namespace``); users may mount it in their own pods. Default: home.""",
    )
    home_bind_timeout = Float(
        120.0, config=True,
        help="Seconds to wait for a new home volume to be provisioned and for the home claim to "
             "bind. Default: 120.",
    )
    delete_home_on_delete_forever = Bool(
        False, config=True,
        help="""Also delete the user's home volume, with its data, when the user is removed from
        the hub (their last server's delete_forever). The volume's provisioner deletes the data
        (reclaim policy Delete); with a static NFS PV the export must be removed by hand.
        Default: False: home data is kept; an administrator deletes it with
        ``python -m vcluster_spawner delete-home USER``.""",
    )

    # ---- credentials --------------------------------------------------------------------------

    s3_credentials = Union(
        [Dict(), Callable()], default_value={}, config=True,
        help="""S3 credentials for the notebook, as environment variable name → value (e.g.
        AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, S3_BUCKET), or a callable
        ``f(spawner)`` returning such a dict (may be async; ``await spawner.user.get_auth_state()``
        gives the authenticator's state). Profiles may set it through ``kubespawner_override``.
        The values travel only in Kubernetes Secrets (never in logs or the hub database) and are
        refreshed on each start; they are per user, so with named servers the most recently
        started server's settings apply. Default: {} (falls back to ``s3_credentials_secret_template``).""",
    )
    s3_credentials_secret_template = Unicode(
        "", config=True,
        help="""Copy the S3 credentials from this existing host Secret, "namespace/name" (fields as
        for ``vcluster_namespace_template``, e.g. "s3-credentials/s3-{username}"); each key of the
        Secret becomes an environment variable. Used when ``s3_credentials`` is empty; a user
        without such a Secret starts without S3 credentials (logged). Default: "" (none).""",
    )
    credentials_mount_path = Unicode(
        "/var/run/secrets/jupyter", config=True,
        help="""Directory in the notebook container holding ``kubeconfig/config`` (also in
        ``$KUBECONFIG``) and ``s3/<KEY>`` files. Default: /var/run/secrets/jupyter.""",
    )
    user_kubeconfig_server_template = Unicode(
        "https://kubernetes.default.svc:443", config=True,
        help="""API server address in the kubeconfig given to the notebook (fields {name},
        {namespace}, {cluster_ip} as for ``vcluster_api_url_template``). The default is the
        vCluster's own API as seen from inside it. Default: https://kubernetes.default.svc:443.""",
    )
    notebook_cluster_role = Unicode(
        "cluster-admin", config=True,
        help="""ClusterRole inside the vCluster bound to the notebook's ServiceAccount
        (``service_account``), so in-cluster clients can manage the user's own vCluster.
        "" = no binding. Default: cluster-admin (the vCluster is the user's own).""",
    )
    sync_service_accounts_to_host = Bool(
        False, config=True,
        help="""Sync ServiceAccounts created inside vClusters to the host (vCluster
        ``sync.toHost.serviceAccounts``), so host RBAC or cloud IAM (e.g. IRSA, workload
        identity) can target them by their host name ``<sa>-x-<namespace>-x-<vcluster>``.
        Default: False.""",
    )
    external_api_host_template = Unicode(
        "", config=True,
        help="""Public host name of each user's vCluster API for kubectl from outside, behind a
        TLS-passthrough route (see the chart), e.g. "{username}.k8s.example.org" (fields as for
        ``vcluster_namespace_template``). The vCluster's certificate then covers it and vCluster
        exports a kubeconfig for it, with a context named after the user, in host Secret
        ``vc-<name>-external`` (offered for download by the status page). Default: "" (off).""",
    )

    @default("namespace")
    def _default_namespace(self):
        return self.virtual_namespace

    @default("start_timeout")
    def _default_start_timeout(self):
        return 600

    @default("cmd")
    def _default_cmd(self):
        return ["jupyterhub-singleuser"]

    @default("service_account")
    def _default_service_account(self):
        return "notebook"

    # the notebook pod passes Pod Security "restricted" (pod_security_level): the image's
    # non-root user (uid 1000, gid 100 in the Jupyter Docker Stacks), nothing more
    @default("uid")
    def _default_uid(self):
        return 1000

    @default("gid")
    def _default_gid(self):
        return 100

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("pod_security_context")
    def _default_pod_security_context(self):
        return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

    @default("container_security_context")
    def _default_container_security_context(self):
        return {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

    # KubeSpawner settings whose job the spawner does differently: on, they would act on the
    # host (or fight the spawner), so a hub configured with them is told at once, by name
    @validate("enable_user_namespaces", "storage_pvc_ensure", "internal_ssl", "services_enabled")
    def _refuse_kubespawner_features(self, proposal):
        if proposal["value"]:
            name = proposal["trait"].name
            instead = {"enable_user_namespaces": "each user has a host namespace of their own already "
                                                 "(vcluster_namespace_template)",
                       "storage_pvc_ensure": "the user's home volume is the spawner's (home_enabled, home_storage_class)",
                       # KubeSpawner would make its Secret and Service inside the vCluster, which
                       # the hub cannot reach; the hub routes to the host pod's IP
                       "internal_ssl": "the hub reaches notebooks at their host pod IP, not through a per-pod Service "
                                       "with its certificate (JupyterHub.internal_ssl)",
                       "services_enabled": "the hub reaches notebooks at their host pod IP; a Service would be made "
                                           "inside the vCluster, out of the hub's reach"}
            raise TraitError(f"VClusterSpawner does not support {name} = True: {instead[name]}")
        return proposal["value"]

    @validate("hub_service_account")
    def _validate_hub_service_account(self, proposal):
        value = proposal["value"]
        if value and (value.count("/") != 1 or not all(value.split("/"))):
            raise TraitError(f"hub_service_account must be \"namespace/name\", got {value!r}")
        return value

    @validate("warm_pool_prefix")
    def _validate_warm_pool_prefix(self, proposal):
        value = proposal["value"]
        if not re.fullmatch(r"[a-z][-a-z0-9]{0,33}", value) or "--" in value:
            raise TraitError(f"warm_pool_prefix must be lower-case letters, digits and single '-', start with a "
                             f"letter and be at most 34 characters (12 hex digits and '--pool' follow; a vCluster "
                             f"name has at most 52): {value!r}")
        return value

    @validate("survival_notice")
    def _validate_survival_notice(self, proposal):
        # an unknown field would break every page that shows the notice; say so at start-up
        try:
            proposal["value"].format(home="/home/jovyan", cluster="vc-x")
        except (KeyError, IndexError, ValueError) as e:
            raise TraitError(f"survival_notice may use the fields {{home}} and {{cluster}} only; "
                             f"{proposal['value']!r} fails: {e!r}") from None
        return proposal["value"]

    @default("working_dir")
    def _default_working_dir(self):
        return self.home_mount_path if self.home_enabled else None

    @validate("home_access_modes")
    def _validate_home_access_modes(self, proposal):
        try:
            return list(validate_access_modes(proposal["value"]))
        except ValueError as e:
            raise TraitError(str(e)) from None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # KubeSpawner set self.api to the host client; pod calls must go to the vCluster, so
        # nothing may use it before start() or stop() points it there.
        self.api = None
        if self.namespace != self.virtual_namespace:
            raise TraitError(f"VClusterSpawner.namespace ({self.namespace!r}) must be virtual_namespace "
                             f"({self.virtual_namespace!r}): notebook pods run in that namespace inside the user's "
                             "vCluster; set virtual_namespace instead")
        fields = self._user_fields
        try:
            # where the templates put a new user's vCluster; an existing one is wherever the
            # ownership gate finds it (gate.py), which sets ``vcluster``
            self.template_vcluster: Ref | None = Ref(
                names.expand(self.vcluster_namespace_template, fields, names.NAMESPACE_MAX),
                names.expand(self.vcluster_name_template, fields, names.VCLUSTER_NAME_MAX))
        except names.UnknownUserId:
            if getattr(self.user, "id", None) is not None:
                raise
            self.template_vcluster = None   # the CLI or a service: the gate finds it by its owner
        self.vcluster: Ref | None = self.template_vcluster
        self._virtual: VirtualClient | None = None
        self._phases: list[dict] = []
        self._options_loaded = False
        self._running = False
        self._wiring = merge_wiring()

    # ---- shared clients ------------------------------------------------------------------

    @property
    def ops(self) -> VClusterOps:
        cls = VClusterSpawner
        if cls._helm is None:
            cls._helm = Helm(self.helm_binary, self.helm_max_concurrency, self.helm_timeout)
        # MeteredOps: provision/wake/sleep/delete counted and timed on the hub's /hub/metrics
        return MeteredOps(shared_client("CoreV1Api"), shared_client("AppsV1Api"), cls._helm)

    @property
    def homes(self) -> HomeVolumes:
        return HomeVolumes(shared_client("CoreV1Api"), shared_client("StorageV1Api"))

    @property
    def home_spec(self) -> HomeSpec:
        return HomeSpec(self.home_storage_class, self.home_size, tuple(self.home_access_modes),
                        self.home_claim_name, self.virtual_namespace)

    @property
    def owner(self) -> Owner:
        """This user as recorded on the namespace and home volume they own (ownership.py)."""
        return Owner(self.user.name, isoformat(getattr(self.user, "created", None)) or "")

    def namespace_labels(self) -> dict[str, str]:
        return namespace_labels(self.owner, self.pod_security_level, self.vcluster_namespace_labels)

    @property
    def hub_binding(self) -> dict | None:
        if not (self.hub_namespace_role and self.hub_service_account):
            return None
        return hub_role_binding(self.hub_namespace_role, self.hub_service_account)

    @property
    def _user_fields(self) -> dict[str, str]:
        """What the name templates may use (names.user_fields); no user id outside the hub."""
        return names.user_fields(self.user.name, getattr(self.user, "id", None))

    @property
    def lifecycle(self) -> VClusterLifecycle:
        """The one path every caller takes to act on this user's vCluster (lifecycle.py)."""
        return VClusterLifecycle(self)

    def _lock(self) -> asyncio.Lock:
        return self._locks.setdefault(self.vcluster, asyncio.Lock())

    def _virtual_client(self) -> VirtualClient:
        if self._virtual is None:
            self._virtual = VirtualClient(self.vcluster, shared_client("CoreV1Api"), self.vcluster_api_url_template)
        return self._virtual

    async def _use_virtual_api(self) -> None:
        self.api = client.CoreV1Api(await self._virtual_client().api())

    # ---- one shared host watch per kind ---------------------------------------------------

    def _get_reflector_key(self, kind: str):
        return (kind, "host")

    @property
    def pod_reflector(self):
        reflector = self.reflectors.get(self._get_reflector_key("pods"))
        return reflector and VirtualPodView(reflector, self.vcluster.namespace, self.vcluster.name)

    @property
    def event_reflector(self):
        return self.reflectors.get(self._get_reflector_key("events")) if self.events_enabled else None

    async def _start_reflector(self, kind: str, reflector_class: type[ResourceReflector], replace=False, **kwargs):
        kwargs["omit_namespace"] = True   # all users' host namespaces, one watch
        # ours wake the waiters of a pod or event (watches.py)
        reflector_class = {PodReflector: WatchedPods, EventReflector: WatchedEvents}.get(reflector_class,
                                                                                       reflector_class)
        # KubeSpawner's reflector gives up after ~1 min of failing watches (API down, rights
        # taken away) and KubeSpawner would then hand out its stale cache for ever: a watch that
        # gave up is started again by the next start that needs it
        current = self.reflectors.get(self._get_reflector_key(kind))
        if current is not None and current.gave_up():
            self.log.warning("the shared host watch of %s had stopped; starting it again", kind)
            replace = True
        return await super()._start_reflector(kind, reflector_class, replace=replace, **kwargs)

    @property
    def _host_pods(self) -> WatchedPods | None:
        return self.reflectors.get(self._get_reflector_key("pods"))

    def _watch_lost(self) -> str | None:
        """Why the shared pod watch this start relies on has stopped, if it has."""
        if self._host_pods is not None and self._host_pods.gave_up():
            return ("the hub lost its watch of notebook pods on the host cluster (see the hub's log: the API "
                    "server was unreachable or refused the hub's ServiceAccount); please try again or contact the "
                    "administrators")
        return None

    @property
    def host_pod_name(self) -> str:
        return host_name(self.pod_name, self.namespace, self.vcluster.name)

    @property
    def events(self):
        if not self.event_reflector:
            return []
        events = host_pod_events(self.event_reflector, self.vcluster.namespace, self.host_pod_name)
        last = getattr(self, "_last_event", None)
        if last:
            uids = [e["metadata"]["uid"] for e in events]
            if last in uids:
                events = events[uids.index(last) + 1:]
        return events

    # ---- waking ahead of the start -----------------------------------------------------------

    async def get_options_form(self):
        """The spawn page asks for the form: the user is about to start, so an asleep vCluster
        starts waking now, while the user chooses (in the background: the page is not held up)."""
        form = await super().get_options_form()
        if form and self.wake_ahead_timeout > 0 and self.vcluster is not None and not self.active \
                and self.vcluster not in self._wake_aheads and self._may_wake_ahead(self.vcluster):
            self._wake_aheads[self.vcluster] = asyncio.ensure_future(self._wake_ahead(self.vcluster))
        return form

    def _may_wake_ahead(self, ref: Ref) -> bool:
        """At most one wake ahead per vCluster per ``wake_ahead_min_interval``: reloading the
        spawn page must not turn into a control plane start each time."""
        now = asyncio.get_running_loop().time()
        if now - self._wake_ahead_at.get(ref, -float("inf")) < self.wake_ahead_min_interval:
            return False
        self._wake_ahead_at[ref] = now
        return True

    async def _wake_ahead(self, ref: Ref) -> None:
        """Wake the user's vCluster (as the ownership gate finds it) if it is asleep and not
        being deleted; put it back to sleep after ``wake_ahead_timeout`` unless a start claimed
        it since (the claim fence: the start's ``STARTING_AT`` makes this sleep ``Superseded``,
        and the start cancels this task when it takes the lock)."""
        try:
            found = await self.lifecycle.resolve()
            if not found.owned:
                return
            ref = found.ref
            async with self._lock():
                status = await self.ops.status(ref)
                if status.state != State.ASLEEP or status.deleting:
                    return
                self.log.info("%s: waking vCluster %s ahead of the start", self._log_name, ref)
                # a claim: a lifecycle-service decision made before loses; the sleep below is
                # conditional on this claim, so any start after it wins
                woken = await self.lifecycle.wake(ahead=True)
                self._woken_ahead.add(ref)
                wake_ahead("woken")
            await asyncio.sleep(self.wake_ahead_timeout)
            async with self._lock():
                if any(s.active for s in self.user.spawners.values()):
                    return
                self.log.info("%s: no server started within %.0f s of waking vCluster %s; back to sleep",
                              self._log_name, self.wake_ahead_timeout, ref)
                self._woken_ahead.discard(ref)
                # from here on a new visit of the spawn page wakes it again (after this sleep:
                # it waits for the lock), rather than finding this task and doing nothing
                if self._wake_aheads.get(ref) is asyncio.current_task():
                    del self._wake_aheads[ref]
                await self.lifecycle.sleep(decided_on=woken)
                wake_ahead("slept")
        except Superseded as e:   # a start (this hub's after a restart, another hub's, the CLI) took it
            self.log.info("%s: %s", self._log_name, e)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("%s: waking vCluster %s ahead of the start failed", self._log_name, ref)
        finally:
            if self._wake_aheads.get(ref) is asyncio.current_task():
                del self._wake_aheads[ref]

    # ---- options ---------------------------------------------------------------------------

    async def load_user_options(self):
        # called by start() before provisioning (profiles may override vcluster_values) and again
        # by KubeSpawner._start(); overrides must be applied once per start
        if not self._options_loaded:
            await super().load_user_options()
            self._options_loaded = True

    def _user_template(self, template: str) -> str:
        return template.format(**self._user_fields)

    def _validate_user_options(self, profile_list):
        # KubeSpawner 7 validates unlisted choices only: a listed choice that does not exist (a
        # tampered form or REST call) would be a bare KeyError deep in _load_profile. Refuse it
        # here as a ValueError, which start() turns into a clear message.
        super()._validate_user_options(profile_list)
        if not self.user_options:
            return
        profile = self._get_profile(self.user_options.get("profile"), profile_list)
        for option_name, option in profile.get("profile_options", {}).items():
            choice = self.user_options.get(option_name)
            choices = option.get("choices") or {}
            if choice and choice not in choices:
                raise ValueError(f"{choice!r} is not a choice of {option_name!r} in profile "
                                 f"{profile['slug']!r}; choices: {', '.join(choices)}")

    def effective_values(self) -> dict:
        """The helm values of the user's vCluster, carrying their hash to its StatefulSet."""
        return self.values_for(self.vcluster, external_host=self.external_api_host)

    def values_for(self, ref: Ref, external_host: str = "") -> dict:
        """The helm values of a vCluster at ``ref`` with these settings (a warm pool member's
        are a user's, for its own namespace)."""
        return with_hash(vcluster_values(self.vcluster_values, computed_values(
            ref.name, ref.namespace, self.virtual_namespace, external_host=external_host,
            external_context=self.user.name, sync_service_accounts=self.sync_service_accounts_to_host,
            pod_security_level=self.pod_security_level)), str(self.chart))

    def pool_key(self) -> str:
        """Which warm pool members fit a start with these settings (pool.py): the values hash
        for a placeholder namespace, so only the values' own content tells pools apart."""
        return values_hash_of(self.values_for(pool.PLACEHOLDER))

    def pool_refusal(self) -> str | None:
        """Why this start cannot take a warm pool member, in the user's words; None: it can."""
        if self.vcluster_mode != "dynamic" or self.warm_pool_size <= 0:
            return "no warm pool is configured for this profile"
        if self.external_api_host_template:
            return ("your virtual cluster has its own public address (external_api_host_template), which a warm one "
                    "cannot have")
        return None

    def use_vcluster(self, ref: Ref) -> None:
        """From now on the user's vCluster is ``ref`` (a warm pool member, claimed); saved in
        the server's state at the end of the start."""
        self.vcluster = ref
        self._virtual = None

    @property
    def external_api_host(self) -> str:
        return self._user_template(self.external_api_host_template) if self.external_api_host_template else ""

    def rendered_namespace_objects(self) -> list[dict]:
        return recursive_format(self.user_namespace_objects, namespace=self.vcluster.namespace,
                                vcluster=self.vcluster.name, external_host=self.external_api_host,
                                username=self._user_fields["username"])

    @property
    def chart(self) -> ChartRef:
        return ChartRef(self.vcluster_chart, self.vcluster_chart_repo, self.vcluster_chart_version)

    @property
    def effective_stop_action(self) -> str:
        return self.stop_action or ("sleep" if self.vcluster_mode == "static" else "delete")

    # ---- start ---------------------------------------------------------------------------------

    def _phase(self, progress: int, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._phases.append({"progress": progress, "message": message})

    def start(self):
        self._start_future = asyncio.ensure_future(self._start_in_vcluster())
        return self._start_future

    async def _start_in_vcluster(self):
        self._phases = []
        self._options_loaded = False
        try:
            await self.load_user_options()
        except ValueError as e:   # unknown profile, tampered choice: nothing was started
            self.log.warning("%s: refused options %s: %s", self._log_name, self.user_options, e)
            raise _user_error(f"Your server options were refused: {e}") from e
        try:
            await self._prepare_vcluster()
            self._phase(60, "Starting your notebook server in your virtual cluster")
            await self._start_watching_pods()   # the host's: its failure is not the vCluster's refusal
            await self._use_virtual_api()
            try:
                url = await self._start_pod()
            except ApiException as e:
                if e.status not in (403, 422):
                    raise
                # the notebook pod refused by the vCluster's admission (Pod Security: a
                # profile's volume or security settings): the user and the operator see why
                raise _user_error(f"Your notebook server was refused by your virtual cluster: {api_message(e)}") from e
        except asyncio.CancelledError:
            self.log.warning("%s: start cancelled; cleaning up", self._log_name)
            await asyncio.shield(self._cleanup_failed_start())
            raise
        except Exception as e:
            self.log.error("%s: start failed: %s", self._log_name, getattr(e, "detail", e))
            await self._cleanup_failed_start()
            if isinstance(e, (VClusterError, HelmError)):
                raise _user_error(f"Your virtual cluster could not be started: {e}") from e
            if isinstance(e, ApiException):   # the host refused the hub something (RBAC, admission)
                hint = (" (the host cluster refused the hub an operation it needs; the administrators should check "
                        "the hub's RBAC, and the hub's log says which)") if e.status == 403 else ""
                raise _user_error(f"Your virtual cluster could not be started: {api_message(e)}{hint}") from e
            raise
        self._running = True
        return url

    async def _prepare_vcluster(self) -> None:
        found = await self.lifecycle.resolve()   # before the lock, which is the vCluster's
        async with self._lock():
            pending = self._stop_actions.pop(self.vcluster, None)
            if pending:
                pending.cancel()
            waiting = self._wake_aheads.pop(self.vcluster, None)
            if waiting:
                waiting.cancel()
            if self.vcluster in self._woken_ahead:
                self._woken_ahead.discard(self.vcluster)
                wake_ahead("used")
            lifecycle = self.lifecycle
            await lifecycle.bring_up(self._phase, found)
            # the host side of the notebook's prerequisites does not need the vCluster: it is
            # done while the control plane starts (a first home volume's provisioning, above all)
            host, _ = await concurrently(self._prepare_host_side(),
                                         lifecycle.wait_ready(self._virtual_client(), self._phase))
            await self._prepare_notebook_access(host)

    def _notebook_access(self) -> NotebookAccess:
        return NotebookAccess(shared_client("CoreV1Api"), self.vcluster.namespace, self.vcluster.name)

    async def _prepare_host_side(self) -> HostSide:
        """The S3 credentials Secret on the host and the home volume (provisioned, owned, repaired)."""
        s3 = await self._s3_values()
        s3_revision = await self._notebook_access().put(credentials.S3_SECRET, encode(s3) if s3 is not None else None)
        home = None
        if self.home_enabled:
            home = await self.homes.ensure(self.home_spec, self.vcluster, self.owner, self.home_bind_timeout,
                                           lambda message: self._phase(30, message))
        return HostSide(s3 is not None, s3_revision, home)

    async def _prepare_notebook_access(self, host: HostSide) -> None:
        """Everything the notebook pod refers to, in place before it is created, once the vCluster
        is ready: the kubeconfig Secret (made from the vCluster's exported one), both credential
        Secrets' virtual copies, the notebook's ServiceAccount, the home claim bound. The waits
        run side by side."""
        vapi = await self._virtual_client().api()
        virtual, vns = client.CoreV1Api(vapi), self.virtual_namespace
        access = self._notebook_access()
        self._phase(56, "Passing your credentials to your virtual cluster")
        revisions = {credentials.VIRTUAL_KUBECONFIG_SECRET: await access.put(
                         credentials.KUBECONFIG_SECRET, encode({"config": await self._user_kubeconfig()})),
                     credentials.VIRTUAL_S3_SECRET: host.s3_revision}
        steps = [access.wait_synced(virtual, name, vns, revision, self.vcluster_ready_timeout)
                 for name, revision in revisions.items() if revision]
        if self.service_account:
            steps.append(ensure_service_account(vapi, vns, self.service_account, self.notebook_cluster_role))
        wiring = [credentials.notebook_wiring(self.credentials_mount_path, host.s3),
                  cluster_wiring(self.vcluster.name, self.vcluster.namespace, self.effective_stop_action)]
        if host.home is not None:
            self._phase(57, "Attaching your home volume")
            steps.append(self.homes.bind_virtual(virtual, self.home_spec, host.home, self.home_bind_timeout))
            wiring.append(home_wiring(self.home_claim_name, self.home_mount_path))
        await concurrently(*steps)
        self._wiring = merge_wiring(*wiring)

    async def _user_kubeconfig(self) -> bytes:
        virtual = self._virtual_client()
        await virtual.api()   # reads the exported kubeconfig once
        server = await virtual.url(self.user_kubeconfig_server_template)
        # the context is the cluster's name: `kubectl config current-context` says what the
        # hub's pages and the status page call it
        return user_kubeconfig(virtual.exported, server, self.vcluster.name, self.virtual_namespace)

    async def _s3_values(self) -> dict[str, str] | None:
        source = self.s3_credentials
        if callable(source):
            values = source(self)
            if inspect.isawaitable(values):
                values = await values
        elif source:
            values = source
        elif self.s3_credentials_secret_template:
            namespace, _, name = self._user_template(self.s3_credentials_secret_template).partition("/")
            secret = await read_or_none(shared_client("CoreV1Api").read_namespaced_secret, name, namespace)
            if secret is None:
                self.log.warning("%s: no S3 credentials Secret %s/%s; starting without S3 credentials",
                                 self._log_name, namespace, name)
                return None
            values = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        else:
            return None
        if not values:
            return None
        try:
            return checked_s3_values(values)
        except ValueError as e:
            raise VClusterError(str(e)) from None

    async def get_pod_manifest(self):
        return add_wiring(await super().get_pod_manifest(), self._wiring)

    async def _start_pod(self) -> str:
        """KubeSpawner's ``_start``, abandoned early when the notebook container cannot run
        (it would otherwise wait ``start_timeout`` for a pod that never becomes ready)."""
        start = asyncio.ensure_future(self._kubespawner_start())
        crash = asyncio.ensure_future(self._notebook_failure())
        await asyncio.wait({start, crash}, return_when=asyncio.FIRST_COMPLETED)
        crash.cancel()
        if not start.done():
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            raise _user_error(f"Your notebook server could not start: {crash.result()}")
        return start.result()

    async def _kubespawner_start(self) -> str:
        # seen by every task KubeSpawner's start creates (contexts are inherited), see stop()
        _creating_pod.set(True)
        return await super()._start()

    def is_pod_running(self, pod):
        running = super().is_pod_running(pod)
        if running or not _creating_pod.get():
            return running
        # KubeSpawner's start asks this in a back-off loop (sleeps growing to 5 s, up to ~1.2 s
        # late on average); an awaitable answer is awaited by jupyterhub.utils.exponential_backoff:
        # it completes on the watch event that makes the pod run
        return self._until_pod_running()

    async def _until_pod_running(self) -> bool:
        key = f"{self.vcluster.namespace}/{self.host_pod_name}"
        try:
            await self._host_pods.until(lambda pods: super(VClusterSpawner, self).is_pod_running(pods.get(key)), key)
        except WatchLost:
            return False   # _notebook_failure ends the start with the reason
        return True

    async def _notebook_failure(self) -> str:
        """Returns (never raises) once the pod shows it cannot run: failed, an image that cannot
        be pulled, the notebook container restarting after crashes, or, while it has no host
        copy, the host refusing it (admission: Pod Security, the chart's policies), which
        vCluster reports as a ``SyncError`` event on the virtual pod (upstream
        pkg/patcher/apply.go). Woken by the host pod's watch events; the virtual pod's events
        are looked at once a second while there is no host pod."""
        key = f"{self.vcluster.namespace}/{self.host_pod_name}"
        while True:
            try:
                return await self._host_pods.until(lambda pods: _pod_failure(pods.get(key)), key, timeout=1.0)
            except (asyncio.TimeoutError, WatchLost):
                pass
            lost = self._watch_lost()
            if lost:
                return lost
            if key not in self._host_pods.resources:
                refusal = await self._host_refusal()
                if refusal:
                    return f"the host cluster refused it: {refusal}"

    async def _host_refusal(self) -> str | None:
        """The message of a ``SyncError`` event on the virtual notebook pod (this one: events of
        an earlier pod of the same name are kept for an hour), if any."""
        if self.api is None:
            return None
        try:
            pod = await read_or_none(self.api.read_namespaced_pod, self.pod_name, self.namespace)
            if pod is None:
                return None
            events = await self.api.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.uid={pod.metadata.uid},reason=SyncError")
        except ApiException as e:
            self.log.debug("%s: events of the virtual pod not readable: %s", self._log_name, e.reason)
            return None
        return next((e.message for e in reversed(events.items) if host_refused(e.message or "")), None)

    async def _cleanup_failed_start(self) -> None:
        """No orphan after a failed or cancelled start: the pod goes, and the vCluster gets its
        stop action like after a normal stop."""
        try:
            await self._delete_pod(now=True)
        except Exception as e:
            self.log.warning("%s: could not delete the pod after a failed start: %s", self._log_name, e)
        await self._release_vcluster()

    # ---- poll / stop -------------------------------------------------------------------------

    async def poll(self):
        if self._start_future is not None and not self._start_future.done():
            return None  # still starting counts as running (so a stop reaches cleanup)
        status = await super().poll()
        if status is not None and self._running:
            # the server ended on its own (culled pod, vCluster deleted by an admin): JupyterHub
            # will not call stop(), so the vCluster's stop action is applied from here
            self._running = False
            task = asyncio.ensure_future(self._release_vcluster())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return status

    async def get_url(self):
        """Asked by JupyterHub after a restart for servers whose poll() says running: a spawn
        interrupted before the hub recorded the pod's address is found again by its pod."""
        await self._start_watching_pods()
        pod = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
        if pod and pod["status"].get("podIP"):
            return self._get_pod_url(pod)
        return await super().get_url()

    async def _delete_pod(self, now: bool) -> None:
        status = await self.ops.status(self.vcluster)
        if status.state == State.RUNNING:
            await self._use_virtual_api()
            await super().stop(now=now)
        else:
            # no virtual API to ask: remove the host copy directly (the syncer removes the
            # virtual pod when it runs again, as upstream does for any vanished host pod)
            await ignoring(shared_client("CoreV1Api").delete_namespaced_pod(
                self.host_pod_name, self.vcluster.namespace, grace_period_seconds=0 if now else None), 404)

    async def stop(self, now=False):
        if _creating_pod.get():
            # KubeSpawner's own start removing a leftover pod of the same name: only the pod goes
            await super().stop(now=now)
            return
        self._running = False
        await self._delete_pod(now)
        await self._release_vcluster()

    def _other_servers_active(self) -> bool:
        return any(s is not self and s.active for s in self.user.spawners.values())

    async def _release_vcluster(self) -> None:
        """Apply the stop action once the user's last server is gone, after the grace period."""
        if self.effective_stop_action == "none" or self._other_servers_active():
            return
        ref = self.vcluster
        previous = self._stop_actions.pop(ref, None)
        if previous:
            previous.cancel()
        if self.sleep_grace_period > 0:
            self._stop_actions[ref] = asyncio.ensure_future(self._stop_action_after_grace())
        else:
            await self._apply_stop_action()

    async def _stop_action_after_grace(self) -> None:
        await asyncio.sleep(self.sleep_grace_period)
        self._stop_actions.pop(self.vcluster, None)
        await self._apply_stop_action()

    async def _apply_stop_action(self) -> None:
        ref, action = self.vcluster, self.effective_stop_action
        async with self._lock():
            if self._other_servers_active():
                return
            try:
                if action == "sleep":
                    self.log.info("%s: putting vCluster %s to sleep", self._log_name, ref)
                    await self.lifecycle.sleep()
                elif action == "delete" and self.vcluster_mode == "dynamic":
                    self.log.info("%s: deleting vCluster %s", self._log_name, ref)
                    await self.lifecycle.delete()
            except (Superseded, NotOwned) as e:   # started elsewhere meanwhile; or nothing of theirs (a refused start)
                self.log.info("%s: %s", self._log_name, e)
            except Exception:
                self.log.exception("%s: %s of vCluster %s failed", self._log_name, action, ref)
            finally:
                await self._close_virtual()

    async def _close_virtual(self) -> None:
        if self._virtual is not None:
            await self._virtual.close()
            self._virtual = None
        self.api = None

    async def delete_forever(self):
        """The user, or their last named server, was removed from the hub: remove the vCluster
        (static ones too) and, by default, its host namespace.

        JupyterHub calls this for the default server only when it deletes the user (then for
        every server of the user), and for a named server when that server is removed.
        """
        # every server of the user the hub knows, loaded or not (after a hub restart only the
        # started ones are in user.spawners; removing a named server must not take the vCluster)
        servers = set(self.user.orm_user.orm_spawners) if hasattr(self.user, "orm_user") else set(self.user.spawners)
        if self.name and servers - {self.name}:
            return  # another server of the user still needs the vCluster
        async with self._lock():
            await self.lifecycle.remove_user(delete_home=self.delete_home_on_delete_forever,
                                             delete_namespace=self.delete_namespace_on_delete_forever)
        await self._close_virtual()

    # ---- progress -----------------------------------------------------------------------------

    async def progress(self):
        if self.events_enabled:
            await self._start_watching_events()
        sent_phases, sent_events = 0, set()
        progress = 0
        while True:
            done = self._start_future is None or self._start_future.done()
            for phase in self._phases[sent_phases:]:
                progress = max(progress, phase["progress"])
                yield {**phase, "progress": progress}
            sent_phases = len(self._phases)
            for event in self.events:
                uid = event["metadata"]["uid"]
                if uid not in sent_events:
                    sent_events.add(uid)
                    progress += (95 - progress) // 4
                    yield {"progress": progress,
                           "message": f"{event.get('lastTimestamp') or event.get('eventTime') or ''} "
                                      f"[{event['type']}] {event['message']}"}
            if done:
                return
            await asyncio.sleep(0.5)

    # ---- state ----------------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        # where the user's vCluster is, should the name templates change; everything else about
        # it (owner, values hash, claim) is recorded on the cluster (lifecycle.py)
        state["vcluster"] = {"namespace": self.vcluster.namespace, "name": self.vcluster.name}
        return state

    def load_state(self, state):
        super().load_state(state)
        saved = state.get("vcluster")
        if saved:
            self.vcluster = Ref(saved["namespace"], saved["name"])



# A refusal is the host API server's answer 403 (admission: Pod Security, policies, webhooks) or
# 422 (invalid). The syncer reports every failed sync as SyncError and retries it, transient ones
# included: a 409 from its own status update ("the object has been modified") was taken for a
# refusal and failed a start, seen with 20 real vClusters starting at once (benchmarks/results).
_REFUSAL = re.compile(r"\bis forbidden\b|\bis invalid\b|\bdenied the request\b|\bdenied request\b")


def host_refused(sync_error: str) -> bool:
    """Whether a vCluster ``SyncError`` message is the host refusing the object for good,
    rather than a failure the syncer retries (conflicts, timeouts, objects not there yet)."""
    return bool(_REFUSAL.search(sync_error))


def _pod_failure(pod: dict | None) -> str | None:
    """Why the notebook pod will not run, if it shows it will not."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return status.get("message") or status.get("reason") or "the pod failed"
    return container_failure(status.get("containerStatuses"))

"""The chart installed into the local API server (RBAC on), and the spawner run end to end
with the chart's hub ServiceAccount identity (a TokenRequest token, as in the hub pod): start,
sleep, helm upgrade of the vCluster chart with wake, dynamic delete (CLI) and re-creation with
the home volume repaired, credentials, user removal and `delete-home`. Least privilege: each
rule of the chart's ClusterRole removed in turn (the live object patched) makes a step fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from localcluster.admission import ablate_live
from localcluster.kube import api_client
from localcluster.processes import wait_for
from vcluster_spawner.home import HOME_NAMESPACE_LABEL, RETIRED_HOME_LABEL
from vcluster_spawner.ownership import hub_role_binding
from vcluster_spawner.translate import host_name

from .chart_support import (
    CHART,
    allowed,
    rule_permissions,
    run_helm,
    service_account_kubeconfig,
    values_file,
    wait_authorized,
    write_chart_config,
)
from .helpers import attack_outcomes
from .hub import Hub
from .vclusters import vcluster_chart

pytestmark = [pytest.mark.chart, pytest.mark.hub]

RELEASE = "vcs"
HUB_ROLE, NAMESPACE_ROLE = f"{RELEASE}-hub", f"{RELEASE}-hub-namespace"
RUN = uuid.uuid4().hex[:4]   # user names unique per run: a reused cluster has old users' leftovers
STORE = f"s3-{RUN}"          # the operator's namespace of S3 credentials (rbac.secretNamespaces)
POLICIES = {"policies": {"resourceQuota": {"enabled": True}, "limitRange": {"enabled": True}}}


def chart_values() -> dict:
    """This chart's values for the tests; a function, as the vCluster chart it names is built
    on first use, never at collection (``make unit`` collects this module too)."""
    return {
        "hub": {"serviceAccount": {"create": True}},
        "rbac": {"secretNamespaces": [STORE]},
        "spawner": {"homeStorageClass": "local-rwx", "homeSize": "1Gi", "vclusterChart": str(vcluster_chart()),
                    "externalApiHostTemplate": "{username}.vc.example.org"},
        "routes": {"kind": "ingress-nginx", "controller": {"namespace": "ingress-nginx"}},
    }


class Setup:
    def __init__(self, cluster, kube, workdir: Path):
        self.cluster, self.kube, self.workdir = cluster, kube, workdir
        self.namespace = f"jhub-{uuid.uuid4().hex[:6]}"
        self.user = f"system:serviceaccount:{self.namespace}:hub"
        self.rbac = client.RbacAuthorizationV1Api(kube)
        self.core = client.CoreV1Api(kube)
        self.hub: Hub | None = None
        self.rules: dict[str, list[dict]] = {}
        self.store = STORE
        # where the namespace role's rules are checked: bound to the hub as in a user namespace
        self.probe = f"probe-{RUN}"

    async def install(self) -> None:
        # S3 credentials are copied from a host Secret the operator keeps in another namespace
        for namespace in (self.namespace, self.store, self.probe):
            await self.core.create_namespace({"metadata": {"name": namespace}})
        run_helm("install", RELEASE, str(CHART), "--namespace", self.namespace, "--wait",
                 "--values", str(values_file(chart_values(), self.workdir)), home=self.workdir / "helm-admin",
                 kubeconfig=self.cluster.admin_kubeconfig)
        await ablate_live(self.kube)   # tools/ablation.py: one protection removed, when it names one
        self.kubeconfig = await service_account_kubeconfig(self.kube, self.cluster, self.namespace, "hub",
                                                           self.workdir / "hub.kubeconfig")
        for role in (HUB_ROLE, NAMESPACE_ROLE):
            rules = (await self.rbac.read_cluster_role(role)).rules
            self.rules[role] = [self.rbac.api_client.sanitize_for_serialization(r) for r in rules]
        await self.rbac.create_namespaced_role_binding(self.probe, hub_role_binding(
            NAMESPACE_ROLE, f"{self.namespace}/hub"))
        # a vCluster chart one version newer: `helm upgrade` then patches every object (labels)
        with tarfile.open(vcluster_chart()) as packaged:
            packaged.extractall(self.workdir / "vcluster-0.36.2", filter="data")
        self.bumped = self.workdir / "vcluster-0.36.2" / "vcluster"
        chart = yaml.safe_load((self.bumped / "Chart.yaml").read_text())
        (self.bumped / "Chart.yaml").write_text(yaml.safe_dump({**chart, "version": "0.36.2"}))

    async def hub_config(self) -> str:
        load = await write_chart_config(self.kube, RELEASE, self.namespace, self.workdir / "chart-config")
        return load + f'''
c.VClusterSpawner.s3_credentials_secret_template = "{self.store}/s3-{{username}}"
c.VClusterSpawner.profile_list = [
    {{"display_name": "Default", "slug": "default", "default": True}},
    {{"display_name": "Upgraded", "slug": "upgraded", "kubespawner_override": {{
        "vcluster_chart": {str(self.bumped)!r}, "vcluster_values": {POLICIES!r}}}}},
]
'''

    async def start_hub(self) -> Hub:
        if self.hub is None:
            self.hub = Hub(self.workdir / "hub", self.cluster, await self.hub_config(), kubeconfig=self.kubeconfig)
        elif self.hub.proc.poll() is None:
            return self.hub
        else:
            self.hub = Hub(self.hub.workdir, self.cluster, self.hub.spawner_config, restart_of=self.hub)
        return await self.hub.start()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CACHE_HOME": str(self.workdir / "cli-helm"),
               "HELM_CONFIG_HOME": str(self.workdir / "cli-helm"), "HELM_DATA_HOME": str(self.workdir / "cli-helm")}
        return subprocess.run([sys.executable, "-m", "vcluster_spawner", "-f",
                               str(self.hub.workdir / "jupyterhub_config.py"), *args],
                              env=env, cwd=self.hub.workdir, capture_output=True, text=True)

    async def set_rules(self, role: str, rules: list[dict]) -> None:
        await self.rbac.patch_cluster_role(role, [{"op": "replace", "path": "/rules", "value": rules}])

    async def cleanup_user(self, user: str) -> None:
        """Admin removes whatever a (failed) lifecycle left: namespace, the syncer's cluster
        objects (helm's, not in the namespace), home volume."""
        ns = f"vc-{user}"
        try:
            await self.core.delete_namespace(ns)
        except client.ApiException as e:
            assert e.status == 404, e
        for pv in [pv for label in (HOME_NAMESPACE_LABEL, RETIRED_HOME_LABEL)
                   for pv in (await self.core.list_persistent_volume(label_selector=f"{label}={ns}")).items]:
            # the volume controller may reclaim it as soon as the policy says Delete (its claim went
            # with the namespace), so either call can find it gone
            try:
                await self.core.patch_persistent_volume(pv.metadata.name, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}})
                await self.core.delete_persistent_volume(pv.metadata.name)
            except client.ApiException as e:
                assert e.status == 404, e


@pytest.fixture(scope="module")
async def setup(cluster, kube, tmp_path_factory):
    s = Setup(cluster, kube, tmp_path_factory.mktemp("chart-rbac"))
    await s.install()
    await s.start_hub()
    yield s
    if s.hub:
        await s.hub.stop()
    run_helm("uninstall", RELEASE, "--namespace", s.namespace, home=s.workdir / "helm-admin",
             kubeconfig=s.cluster.admin_kubeconfig, check=False)
    for ns in (s.store, s.probe, s.namespace):
        try:
            await s.core.delete_namespace(ns)
        except client.ApiException:
            pass


# ---- the lifecycle, step by step; each step checks its outcome on the host as admin ----------

class StepFailed(AssertionError):
    pass


async def _eventually(check, timeout: float, what: str):
    try:
        return await wait_for(check, timeout=timeout, what=what)
    except Exception as e:
        raise StepFailed(f"{what}: {e}") from None


async def _start(s: Setup, user: str, profile: str) -> None:
    events = await s.hub.start_server(user, options={"profile": profile}, timeout=240)
    if not events or not events[-1].get("ready"):
        raise StepFailed(f"start of {user} failed: {events[-1:] if events else events}")
    status, body = await s.hub.request("GET", f"{s.hub.url}/user/{user}/api/status")
    if status != 200:
        raise StepFailed(f"notebook of {user} not reachable through the proxy: {status} {body}")


async def _statefulset(s: Setup, user: str):
    try:
        return await client.AppsV1Api(s.kube).read_namespaced_stateful_set(f"vc-{user}", f"vc-{user}")
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


async def _home(s: Setup, user: str, label: str = HOME_NAMESPACE_LABEL) -> list:
    return (await s.core.list_persistent_volume(label_selector=f"{label}=vc-{user}")).items


async def step_start(s: Setup, user: str, memo: dict) -> None:
    await s.core.create_namespaced_secret(s.store, {"metadata": {"name": f"s3-{user}"},
                                                    "stringData": {"S3_BUCKET": f"bucket-{user}"}})
    await _start(s, user, "default")
    ns = f"vc-{user}"
    policies = await client.NetworkingV1Api(s.kube).list_namespaced_network_policy(ns)
    assert len(policies.items) == 4, [p.metadata.name for p in policies.items]
    ingress = await client.NetworkingV1Api(s.kube).read_namespaced_ingress("vcluster-api", ns)
    assert ingress.spec.rules[0].host == f"{user}.vc.example.org"
    await check_selectors(s, user, policies.items, ingress)
    homes = await _home(s, user)
    assert len(homes) == 1 and homes[0].spec.persistent_volume_reclaim_policy == "Retain"
    memo["home"] = homes[0].metadata.name
    for secret in ("jupyter-kubeconfig", "jupyter-s3", f"vc-vc-{user}-external"):
        await s.core.read_namespaced_secret(secret, ns)


def _selected(selector, labels: dict) -> bool:
    wanted = (selector.match_labels or {}) if selector else {}
    assert not (selector and selector.match_expressions), "only matchLabels are checked here"
    return wanted.items() <= (labels or {}).items()


async def check_selectors(s: Setup, user: str, policies, ingress) -> None:
    """The chart's policies select the real objects: the host notebook pod, the control plane
    pod, the hub's namespace by its real label; the route points at the real API Service."""
    ns, name = f"vc-{user}", f"vc-{user}"
    by_name = {p.metadata.name: p.spec for p in policies}
    notebook = await s.core.read_namespaced_pod(host_name(f"jupyter-{user}", "default", name), ns)
    control_plane = await s.core.read_namespaced_pod(f"{name}-0", ns)
    assert _selected(by_name["vcluster-spawner-notebooks-from-hub"].pod_selector, notebook.metadata.labels)
    assert _selected(by_name["vcluster-spawner-workload-egress"].pod_selector, notebook.metadata.labels)
    assert not _selected(by_name["vcluster-spawner-workload-egress"].pod_selector, control_plane.metadata.labels)
    assert _selected(by_name["vcluster-spawner-api-from-hub"].pod_selector, control_plane.metadata.labels)
    assert not _selected(by_name["vcluster-spawner-api-from-hub"].pod_selector, notebook.metadata.labels)
    assert by_name["vcluster-spawner-same-namespace"].pod_selector.match_labels in (None, {})
    hub_namespace = await s.core.read_namespace(s.namespace)
    for rule in by_name["vcluster-spawner-notebooks-from-hub"].ingress:
        assert [p.port for p in rule.ports] == [int(notebook.spec.containers[0].ports[0].container_port)]
        for peer in rule._from:
            assert _selected(peer.namespace_selector, hub_namespace.metadata.labels)
    api_rule = by_name["vcluster-spawner-api-from-hub"].ingress[0]
    # upstream's syncer container declares no port: the API Service's target is the one
    api_service = await s.core.read_namespaced_service(name, ns)
    assert [p.port for p in api_rule.ports] == [next(p.target_port for p in api_service.spec.ports if p.name == "https")]
    assert {p.namespace_selector.match_labels["kubernetes.io/metadata.name"] for p in api_rule._from} == {
        s.namespace, "ingress-nginx"}
    # the spawner's namespace labels, which operators' own selectors may use
    labels = (await s.core.read_namespace(ns)).metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "vcluster-spawner" and labels["hub.jupyter.org/username"] == user
    backend = ingress.spec.rules[0].http.paths[0].backend.service
    service = await s.core.read_namespaced_service(backend.name, ns)
    assert backend.port.number in [p.port for p in service.spec.ports]


async def step_sleep(s: Setup, user: str, memo: dict) -> None:
    await s.hub.stop_server(user)

    async def asleep():
        sts = await _statefulset(s, user)
        pods = await s.core.list_namespaced_pod(f"vc-{user}", label_selector=f"vcluster.loft.sh/managed-by=vc-{user}")
        return (sts and (sts.metadata.annotations or {}).get("loft.sh/paused") == "true"
                and not sts.status.replicas and not pods.items)
    await _eventually(asleep, 15, "the vCluster asleep with its synced pods deleted")


async def step_upgrade_and_wake(s: Setup, user: str, memo: dict) -> None:
    await _start(s, user, "upgraded")
    sts = await _statefulset(s, user)
    assert sts.metadata.labels["chart"] == "vcluster-0.36.2", sts.metadata.labels
    await s.core.read_namespaced_resource_quota(f"vc-vc-{user}", f"vc-{user}")
    await s.core.read_namespaced_limit_range(f"vc-vc-{user}", f"vc-{user}")


async def step_delete_and_recreate(s: Setup, user: str, memo: dict) -> None:
    await s.hub.stop_server(user)
    done = s.cli("delete", user)
    if done.returncode != 0:
        raise StepFailed(f"vcluster_spawner delete: {done.stdout} {done.stderr}")
    if await _statefulset(s, user) is not None:
        raise StepFailed("the vCluster is still there after delete")
    await _start(s, user, "upgraded")
    assert [pv.metadata.name for pv in await _home(s, user)] == [memo["home"]]


async def step_remove_user(s: Setup, user: str, memo: dict) -> None:
    await s.hub.stop_server(user)
    status, body = await s.hub.api("DELETE", f"/users/{user}")
    if status != 204:
        raise StepFailed(f"user removal answered {status} {body}")

    async def namespace_deleting():
        try:
            return (await s.core.read_namespace(f"vc-{user}")).metadata.deletion_timestamp is not None
        except client.ApiException as e:
            return e.status == 404
    # deletion under way is enough (delete-home waits for the rest)
    await _eventually(namespace_deleting, 10, f"namespace vc-{user} being deleted")
    # kept, and retired: a newcomer with the same name does not get it
    assert [pv.metadata.name for pv in await _home(s, user, RETIRED_HOME_LABEL)] == [memo["home"]]
    assert not await _home(s, user)


async def step_delete_home(s: Setup, user: str, memo: dict) -> None:
    done = s.cli("delete-home", user, "--yes-delete-data")
    if done.returncode != 0 or "released for deletion" not in done.stdout:
        raise StepFailed(f"delete-home: {done.stdout} {done.stderr}")

    async def deleted():
        return not await _home(s, user, RETIRED_HOME_LABEL)
    await _eventually(deleted, 60, "the home volume deleted by its provisioner")


STEPS = [step_start, step_sleep, step_upgrade_and_wake, step_delete_and_recreate, step_remove_user, step_delete_home]


async def lifecycle(s: Setup, user: str) -> tuple[str | None, str]:
    """Runs the steps until one fails: (failed step or None, message)."""
    await s.start_hub()
    await s.hub.add_user(user)
    memo: dict = {}
    for step in STEPS:
        try:
            await step(s, user, memo)
        except (StepFailed, AssertionError, client.ApiException) as e:
            return step.__name__, str(e)
    return None, ""


# ---- tests -------------------------------------------------------------------------------------

async def test_the_spawner_runs_every_lifecycle_as_the_charts_service_account(setup):
    s = setup
    # the hub is not an admin: it cannot read anything outside its rules
    assert not await allowed(s.kube, s.user, "create", "deployments", "apps", "kube-system")
    assert not await allowed(s.kube, s.user, "escalate", "clusterroles", "rbac.authorization.k8s.io")
    started = time.monotonic()
    failed, message = await lifecycle(s, f"amy{RUN}")
    assert failed is None, (failed, message, s.hub.log_tail(40))
    print(f"full lifecycle as the chart's ServiceAccount: {time.monotonic() - started:.0f} s")


@pytest.mark.security
async def test_the_hubs_identity_is_confined_to_the_namespaces_it_made(setup):
    """A compromised hub (or status page, or lifecycle service: same ServiceAccount) tries to
    become cluster-admin: every attempt is refused by RBAC or by the hub-confinement policy."""
    s = setup
    for verb, resource, namespace, sub in [("get", "secrets", "kube-system", ""), ("list", "secrets", "", ""),
                                           ("create", "pods", "kube-system", ""), ("create", "pods", "default", ""),
                                           ("create", "pods", "kube-system", "exec"),
                                           ("escalate", "clusterroles", "", "")]:
        group = "rbac.authorization.k8s.io" if resource == "clusterroles" else ""
        assert not await allowed(s.kube, s.user, verb, resource, group, namespace, sub), (verb, resource, namespace, sub)
    # a user namespace as the hub keeps one (managed, its RoleBinding there, a Role of the
    # namespace as helm makes for the syncer), and a volume of another application
    managed = f"managed-{RUN}"
    await s.core.create_namespace({"metadata": {"name": managed, "labels": {
        "app.kubernetes.io/managed-by": "vcluster-spawner", "pod-security.kubernetes.io/enforce": "restricted"}}})
    await s.rbac.create_namespaced_role_binding(managed, hub_role_binding(NAMESPACE_ROLE, f"{s.namespace}/hub"))
    await s.rbac.create_namespaced_role(managed, {"metadata": {"name": "syncer"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})
    volume = f"app-data-{RUN}"
    await s.core.create_persistent_volume({"metadata": {"name": volume}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
        "hostPath": {"path": f"/tmp/{volume}"}}})
    async with await api_client(s.kubeconfig) as hub_api:
        core, rbac = client.CoreV1Api(hub_api), client.RbacAuthorizationV1Api(hub_api)
        bystander = f"bystander-{RUN}"
        await s.core.create_namespace({"metadata": {"name": bystander}})
        attacks = {
            # the confinement checks the namespace as it will be, not only as it was
            "let a user namespace go (drop its label)": core.patch_namespace(
                managed, {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}}),
            "lower a user namespace's Pod Security": core.patch_namespace(
                managed, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
            # RoleBindings: only its own role to itself, or a Role of the namespace to its ServiceAccounts
            "bind its namespace role to someone else": rbac.create_namespaced_role_binding(managed, {
                "metadata": {"name": f"mallory-{RUN}"}, "subjects": [{"kind": "User", "name": "mallory",
                                                                     "apiGroup": "rbac.authorization.k8s.io"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAMESPACE_ROLE}}),
            "bind a namespace Role to a ServiceAccount elsewhere": rbac.create_namespaced_role_binding(managed, {
                "metadata": {"name": f"outsider-{RUN}"}, "subjects": [{"kind": "ServiceAccount", "name": "default",
                                                                      "namespace": "kube-system"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "syncer"}}),
            # PersistentVolumes: only the homes it keeps
            "set another application's volume to Delete": core.patch_persistent_volume(
                volume, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
            "label another application's volume a user's home": core.patch_persistent_volume(
                volume, {"metadata": {"labels": {HOME_NAMESPACE_LABEL: managed}}}),
            # RBAC allows creating RoleBindings anywhere (the first one in a new user namespace) and
            # binding the namespace role: in kube-system that would be its Secrets and pods
            "bind itself in kube-system": rbac.create_namespaced_role_binding(
                "kube-system", hub_role_binding(NAMESPACE_ROLE, f"{s.namespace}/hub")),
            "label kube-system as its own": core.patch_namespace(
                "kube-system", {"metadata": {"labels": {"app.kubernetes.io/managed-by": "vcluster-spawner"}}}),
            "delete a namespace it did not make": core.delete_namespace(bystander),
            "make a namespace without Pod Security": core.create_namespace({"metadata": {
                "name": f"nopss-{RUN}", "labels": {"app.kubernetes.io/managed-by": "vcluster-spawner"}}}),
            "make a privileged namespace": core.create_namespace({"metadata": {"name": f"priv-{RUN}", "labels": {
                "app.kubernetes.io/managed-by": "vcluster-spawner", "pod-security.kubernetes.io/enforce": "privileged"}}}),
            "read a Secret in kube-system": core.list_namespaced_secret("kube-system"),
            "run a pod in default": core.create_namespaced_pod("default", {"metadata": {"name": "x"}, "spec": {
                "containers": [{"name": "x", "image": "python:3.11"}]}}),
        }
        outcomes = await attack_outcomes(attacks)
        assert outcomes == {name: 403 for name in attacks}, outcomes
    assert (await s.core.read_namespace(bystander)).metadata.deletion_timestamp is None
    assert "app.kubernetes.io/managed-by" not in ((await s.core.read_namespace("kube-system")).metadata.labels or {})
    kept = await s.core.read_persistent_volume(volume)
    assert kept.spec.persistent_volume_reclaim_policy == "Retain" and not kept.metadata.labels
    # what the hub does in a user namespace it still does: its own binding, helm's for the syncer
    async with await api_client(s.kubeconfig) as hub_api:
        rbac = client.RbacAuthorizationV1Api(hub_api)
        await rbac.create_namespaced_role_binding(managed, {
            "metadata": {"name": "syncer"}, "subjects": [{"kind": "ServiceAccount", "name": "vc-x", "namespace": managed}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "syncer"}})
    for namespace in (bystander, managed):
        await s.core.delete_namespace(namespace)
    await s.core.delete_persistent_volume(volume)


def _strip(rules: list[dict], resources: set[str], verbs: set[str]) -> list[dict]:
    out = []
    for rule in rules:
        if resources & set(rule["resources"]):
            rule = {**rule, "verbs": [v for v in rule["verbs"] if v not in verbs]}
            if not rule["verbs"]:
                continue
        out.append(rule)
    return out


HELM_ONLY = {"serviceaccounts", "resourcequotas", "limitranges", "roles", "rolebindings"}
# verbs that only a late step uses, each group proven on its own (a whole rule's removal fails
# already at the start)
VERB_CASES = [
    ("delete namespaces (user removal)", {"namespaces"}, {"delete"}),
    ("patch the objects helm upgrades (vCluster chart upgrade)", HELM_ONLY, {"patch"}),
    ("delete the objects helm uninstalls (vcluster delete)", HELM_ONLY | {"statefulsets"}, {"delete"}),
    ("get the objects helm installs", HELM_ONLY, {"get"}),
    ("create namespace objects (server-side apply of a new object)", {"networkpolicies", "ingresses"}, {"create"}),
]


def removal_cases(roles: dict[str, list[dict]]) -> list[tuple[str, str, list[dict], list]]:
    """(label, role, the role's rules without it, the permissions removed), for every rule of
    both roles and the verb groups above."""
    cases = []
    for role, rules in roles.items():
        for i, rule in enumerate(rules):
            label = f"{role} rule {i} {','.join(rule['resources'])}"
            cases.append((label, role, rules[:i] + rules[i + 1:], list(rule_permissions(rule))))
        for label, resources, verbs in VERB_CASES:
            removed = [p for r in rules if resources & set(r["resources"]) for p in rule_permissions(r)
                       if p[0] in verbs and p[1] in {x.split("/")[0] for x in resources}]
            if removed:
                cases.append((f"{role}: {label}", role, _strip(rules, resources, verbs), removed))
    return cases


async def test_removing_any_rule_of_the_hubs_roles_breaks_a_lifecycle_step(setup):
    s = setup
    results = []
    only = os.environ.get("CHART_RBAC_CASES")   # a substring, to rerun some cases by hand
    for n, (label, role, rules, removed) in enumerate(removal_cases(s.rules)):
        if only and only not in label:
            continue
        started = time.monotonic()
        await s.set_rules(role, rules)
        # what the removal takes away that no other rule grants where it applies: a rule of the
        # cluster-wide role is checked in a namespace without the hub's RoleBinding (where no
        # namespace rule helps), a namespace rule in one bound like a user's (where the
        # cluster-wide rules apply too)
        others = rules if role == HUB_ROLE else rules + s.rules[HUB_ROLE]
        where = "default" if role == HUB_ROLE else s.probe
        still = [p for p in removed if any(p in list(rule_permissions(r)) for r in others)]
        gone = [p for p in removed if p not in still]
        assert gone, f"{label}: every permission of it is also granted by another rule (redundant)"
        await wait_authorized(s.kube, s.user, gone, False, namespace=where)
        if role == HUB_ROLE and any(p[0] in ("list", "watch") for p in gone):
            # the API server authorizes a watch when it opens: one opened before the removal
            # outlives it. The hub starts anew, so each of its shared watches opens under the
            # reduced rights (the lifecycle step restarts it)
            await s.hub.stop()
        user = f"lp{n}x{RUN}"
        log_start = s.hub.log_path.stat().st_size if s.hub else 0
        try:
            failed, message = await lifecycle(s, user)
            with open(s.hub.log_path, "rb") as f:
                f.seek(log_start)
                evidence = f.read().decode(errors="replace") + message
            if failed:   # failed because of the missing permission, not something else
                assert "forbidden" in evidence.lower(), (label, failed, message[-600:])
        finally:
            await s.set_rules(role, s.rules[role])
            await wait_authorized(s.kube, s.user, gone, True, namespace=where)
            await s.cleanup_user(user)
        elapsed = time.monotonic() - started
        results.append((label, failed, elapsed, message[:160]))
        print(f"{label}: {failed or 'NO STEP FAILED'} after {elapsed:.0f} s; {message[:160]}", flush=True)
    unneeded = [r for r in results if r[1] is None]
    assert not unneeded, unneeded

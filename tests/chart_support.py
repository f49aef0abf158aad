"""Helpers for the chart tests (pytest -m chart): render and install helm/vcluster-spawner,
a kubeconfig for the chart's hub ServiceAccount (a TokenRequest token), the hub configured from
the chart's ConfigMap."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml
from kubernetes_asyncio import client

from localcluster import ClusterState
from localcluster.binaries import ensure_binaries

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "vcluster-spawner"
KUBE_VERSION = "1.36.0"   # the local cluster runs v1.36.3


def helm_binary() -> Path:
    return ensure_binaries() / "helm"


def helm_env(home: Path, kubeconfig: Path | None = None) -> dict:
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    if kubeconfig:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def run_helm(*args: str, home: Path, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(helm_binary()), *args], env=helm_env(home, kubeconfig), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def values_file(values: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=".yaml", dir=directory)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(values, f)
    return Path(name)


def render(values: dict, home: Path, release: str = "vcs", namespace: str = "jhub") -> list[dict]:
    out = run_helm("template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
                   "--values", str(values_file(values, home)), home=home).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def namespace_objects(manifests: list[dict]) -> list[dict]:
    """The user_namespace_objects the chart's settings give the spawner."""
    config = next(m for m in manifests if m["kind"] == "ConfigMap")
    return json.loads(config["data"]["vcluster-spawner-chart.json"]).get("user_namespace_objects", [])


def cluster_role_rules(manifests: list[dict], name: str = "vcs-hub-namespace") -> list[dict]:
    """Rules of one of the chart's ClusterRoles (default: the hub's role in user namespaces)."""
    return next(m for m in manifests if m["kind"] == "ClusterRole" and m["metadata"]["name"] == name)["rules"]


async def service_account_kubeconfig(kube: client.ApiClient, cluster: ClusterState, namespace: str, name: str,
                                     path: Path, hours: int = 3) -> Path:
    """A kubeconfig authenticating as ServiceAccount namespace/name (TokenRequest, as the
    kubelet projects it into the hub pod); RBAC decides what it may do."""
    token = await client.CoreV1Api(kube).create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": hours * 3600}})
    admin = yaml.safe_load(cluster.admin_kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    user = f"system:serviceaccount:{namespace}:{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "hub",
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": user, "user": {"token": token.status.token}}],
        "contexts": [{"name": "hub", "context": {"cluster": "local", "user": user}}]}))
    path.chmod(0o600)
    return path


async def write_chart_config(kube: client.ApiClient, release: str, namespace: str, directory: Path) -> str:
    """The chart's ConfigMap as the hub pod sees it mounted; returns the config lines that load
    the chart's settings snippet (the other snippets belong to the hub tests)."""
    config_map = await client.CoreV1Api(kube).read_namespaced_config_map(f"{release}-config", namespace)
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in config_map.data.items():
        (directory / key).write_text(value)
    return f"load_subconfig({str(directory / '05-vcluster-spawner-chart.py')!r})\n"


async def allowed(kube: client.ApiClient, user: str, verb: str, resource: str, group: str = "",
                  namespace: str = "", subresource: str = "", name: str = "") -> bool:
    review = await client.AuthorizationV1Api(kube).create_subject_access_review({"spec": {
        "user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
        "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace,
                               "subresource": subresource, "name": name}}})
    return review.status.allowed


def rule_permissions(rule: dict):
    """(verb, resource, group, subresource, name) for every permission of ``rule``; a rule with
    resourceNames grants only on those names."""
    for group in rule["apiGroups"]:
        for resource in rule["resources"]:
            res, _, sub = resource.partition("/")
            for verb in rule["verbs"]:
                for name in rule.get("resourceNames") or [""]:
                    yield verb, res, group, sub, name


async def wait_authorized(kube, user: str, permissions, want: bool, timeout: float = 20,
                          namespace: str = "default") -> None:
    """RBAC changes reach the authorizer through a watch: wait until it answers ``want`` for
    every permission (in ``namespace``, for namespaced resources)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answers = [await allowed(kube, user, verb, res, group, namespace, sub, name)
                   for verb, res, group, sub, name in permissions]
        if all(a == want for a in answers):
            return
        if loop.time() > deadline:
            raise AssertionError(f"authorizer still answers {answers} for {permissions}, want {want}")
        await asyncio.sleep(0.2)

"""Helpers for tests that install vClusters (upstream's chart, the real control plane) with the
real helm binary."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import uuid
from functools import cache
from pathlib import Path

import yaml
from kubernetes_asyncio import client

import vcluster_real
from localcluster import ClusterState
from localcluster.binaries import ensure_binaries
from localcluster.kube import api_client
from localcluster.processes import wait_for


@cache
def vcluster_chart() -> Path:
    """Upstream's vCluster chart at 0.36.1, packaged by tools/build-vcluster.sh (the local
    cluster's ``vcluster_real`` plugin runs its images, docs/real-vcluster.md)."""
    return vcluster_real.chart(ensure_binaries())


async def helm(cluster: ClusterState, *args: str, check: bool = True) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(cluster.binaries / "helm"), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig), "HELM_CACHE_HOME": "/tmp/helm-cache",
             "HELM_CONFIG_HOME": "/tmp/helm-config", "HELM_DATA_HOME": "/tmp/helm-data"})
    out, _ = await proc.communicate()
    text = out.decode()
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{text}")
    return proc.returncode, text


async def vcluster_cli(cluster: ClusterState, *args: str, check: bool = True) -> tuple[int, str]:
    """Upstream's ``vcluster`` command line (built at 0.36.1) against the host cluster, with a
    configuration of its own (telemetry off) in a fresh home, as an operator would run it."""
    home = Path(tempfile.mkdtemp())
    (home / "config.json").write_text(json.dumps({"telemetryDisabled": True}))
    proc = await asyncio.create_subprocess_exec(
        str(await asyncio.to_thread(vcluster_real.cli)), *args, "--driver", "helm", "--config", str(home / "config.json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig), "HOME": str(home)})
    out, _ = await proc.communicate()
    text = out.decode()
    if check and proc.returncode != 0:
        raise AssertionError(f"vcluster {' '.join(args)} failed:\n{text}")
    return proc.returncode, text


async def install(cluster: ClusterState, name: str, namespace: str, values: dict | None = None) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"telemetry": {"enabled": False}, **(values or {})}, f)
    await helm(cluster, "upgrade", "--install", name, str(vcluster_chart()), "-n", namespace, "-f", f.name)


async def new_namespace(kube: client.ApiClient, prefix: str = "vc") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    return name


async def wait_ready(kube: client.ApiClient, name: str, namespace: str, timeout: float = 90) -> None:
    core = client.CoreV1Api(kube)

    async def ready():
        pod = await core.read_namespaced_pod(f"{name}-0", namespace)
        if pod.metadata.deletion_timestamp:   # the previous release's pod, still terminating
            return False
        ok = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        secret = await core.read_namespaced_secret(f"vc-{name}", namespace)
        return ok and "config" in (secret.data or {})
    await wait_for(ready, timeout=timeout, what=f"vCluster {namespace}/{name} ready with vc-{name}")


async def virtual_client(kube: client.ApiClient, name: str, namespace: str) -> client.ApiClient:
    """A client for the vCluster from Secret vc-N, reaching it through Service N's cluster IP
    (the local stand-in for the in-cluster address https://N.NS:443). Like `vcluster connect`,
    it waits until ServiceAccount default/default exists: pods cannot be admitted before.
    The real vCluster writes vc-N after its pod turns Ready (helm --wait returns before), so
    the Secret is waited for too."""
    core = client.CoreV1Api(kube)

    async def exported():
        secret = await core.read_namespaced_secret(f"vc-{name}", namespace)   # a 404 is "not yet"
        return secret if "config" in (secret.data or {}) else None
    secret = await wait_for(exported, timeout=120, what=f"Secret vc-{name} in {namespace}")
    kubeconfig = yaml.safe_load(base64.b64decode(secret.data["config"]))
    svc = await core.read_namespaced_service(name, namespace)
    for c in kubeconfig["clusters"]:
        c["cluster"]["server"] = f"https://{svc.spec.cluster_ip}:443"
    path = Path(tempfile.mkdtemp()) / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    vapi = await api_client(path)

    async def default_service_account():
        return await client.CoreV1Api(vapi).read_namespaced_service_account("default", "default")
    await wait_for(default_service_account, timeout=60, what=f"default ServiceAccount in vCluster {namespace}/{name}")
    return vapi


"""Fixtures: a real local Kubernetes (see localcluster/) started once per test session."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from localcluster import ClusterState
from localcluster.admission import apply_admission_policies
from localcluster.kube import api_client
from localcluster.launch import start_cluster

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def local_cluster(reuse_variable: str, name: str, plugin: str, timeout: float = 180):
    """A local cluster with ``plugin``, started in test-artifacts/``name`` and stopped after,
    or, when the environment variable ``reuse_variable`` names a state directory, the one
    running there (started with ``python -m localcluster up``)."""
    reuse = os.environ.get(reuse_variable)
    if reuse:
        yield ClusterState.read(Path(reuse).resolve())
        return
    proc, state = start_cluster(ARTIFACTS / name, plugins=(plugin,), timeout=timeout)
    yield state
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def cluster() -> ClusterState:
    """The local cluster with the vCluster emulation, for the session (``LOCALCLUSTER_REUSE``)."""
    yield from local_cluster("LOCALCLUSTER_REUSE", "localcluster", "vcluster_emulation")


@pytest.fixture(scope="session")
async def kube(cluster) -> client.ApiClient:
    """Cluster admin; the chart's admission policies are in force (localcluster/admission.py)."""
    api = await api_client(cluster.admin_kubeconfig)
    await apply_admission_policies(api, cluster)
    yield api
    await api.close()


@pytest.fixture
async def namespace(kube) -> str:
    """A fresh namespace, deleted after the test (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        await core.delete_namespace(name)
    except client.ApiException:
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure of a cluster test, attach the tail of every component's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "cluster" not in item.fixturenames:
        return
    state_dir = Path(os.environ.get("LOCALCLUSTER_REUSE") or ARTIFACTS / "localcluster")
    logs = sorted((state_dir / "logs").glob("*.log")) + sorted(state_dir.parent.glob("*.supervisor.log"))
    logs += sorted((state_dir / "pods").glob("*/*.log"))[-6:]
    for path in logs:
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        report.sections.append((f"log {path.relative_to(state_dir.parent)}", tail))

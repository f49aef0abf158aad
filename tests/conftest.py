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
from vcluster_spawner.watches import stop_host_watches

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


@pytest.fixture(scope="session")
def real_cluster() -> ClusterState:
    """A local cluster running the real vCluster 0.36.1 (``LOCALCLUSTER_REAL_REUSE``), shared by
    the tests that need it; its first start builds the binaries when they are not cached
    (tools/build-vcluster.sh, ~15 min)."""
    yield from local_cluster("LOCALCLUSTER_REAL_REUSE", "localcluster-real", "vcluster_real", timeout=1800)


@pytest.fixture(scope="session")
async def real_kube(real_cluster) -> client.ApiClient:
    """Cluster admin on ``real_cluster``, with the same admission policies as ``kube``."""
    api = await api_client(real_cluster.admin_kubeconfig)
    await apply_admission_policies(api, real_cluster)
    yield api
    await stop_host_watches()   # those on this cluster would outlive their client
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


def pytest_collection_modifyitems(items):
    """Every test that uses the real vCluster, directly or through a fixture, is marked
    ``real_vcluster`` (``pytest -m real_vcluster`` selects them all)."""
    for item in items:
        if "real_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_vcluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure of a cluster test, attach the tail of every component's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    if "real_cluster" in item.fixturenames:
        state_dir = Path(os.environ.get("LOCALCLUSTER_REAL_REUSE") or ARTIFACTS / "localcluster-real")
    elif "cluster" in item.fixturenames:
        state_dir = Path(os.environ.get("LOCALCLUSTER_REUSE") or ARTIFACTS / "localcluster")
    else:
        return
    logs = sorted((state_dir / "logs").glob("*.log")) + sorted(state_dir.parent.glob("*.supervisor.log"))
    logs += sorted((state_dir / "pods").glob("*/*.log"))[-6:]
    for path in logs:
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        report.sections.append((f"log {path.relative_to(state_dir.parent)}", tail))

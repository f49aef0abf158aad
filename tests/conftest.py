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
from localcluster.admission import ABLATION, apply_admission_policies
from localcluster.kube import api_client
from localcluster.launch import start_cluster
from vcluster_spawner.watches import stop_host_watches

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


# make test runs the suite in two pytest-xdist workers (``--dist worksteal``), each with a local
# cluster of its own running the real vCluster 0.36.1
REUSE_VARIABLE = "LOCALCLUSTER_REUSE"


def cluster_state_dir() -> tuple[Path, bool]:
    """Where the session's cluster runs, and whether it is one already running (named by
    ``LOCALCLUSTER_REUSE``); else a directory per xdist worker."""
    reuse = os.environ.get(REUSE_VARIABLE)
    if reuse:
        return Path(reuse).resolve(), True
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return ARTIFACTS / (f"localcluster-{worker}" if worker else "localcluster"), False


@pytest.fixture(scope="session")
def cluster() -> ClusterState:
    """A local cluster running the real vCluster 0.36.1 for the session, stopped after; or, when
    ``LOCALCLUSTER_REUSE`` names a state directory, the one running there (started with ``python
    -m localcluster up --plugin vcluster_real``). Its first start builds the binaries when they
    are not cached (tools/build-vcluster.sh, ~15 min)."""
    state_dir, running = cluster_state_dir()
    if running:
        yield ClusterState.read(state_dir)
        return
    proc, state = start_cluster(state_dir, plugins=("vcluster_real",), timeout=1800)
    yield state
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
async def kube(cluster) -> client.ApiClient:
    """Cluster admin; the chart's admission policies are in force (localcluster/admission.py)."""
    api = await api_client(cluster.admin_kubeconfig)
    await apply_admission_policies(api, cluster)
    yield api
    await stop_host_watches()   # those on this cluster would outlive their client
    await api.close()


@pytest.fixture(autouse=True)
def _ablation(request):
    """tools/ablation.py's "host-pod-security": the Pod Security labels of every user namespace
    removed right before the test body (after its fixtures made them), as if the spawner set none."""
    if os.environ.get(ABLATION) == "host-pod-security" and "kube" in request.fixturenames:
        request.getfixturevalue("_pod_security_removed")


@pytest.fixture
async def _pod_security_removed(kube):
    core = client.CoreV1Api(kube)
    for ns in (await core.list_namespace(label_selector="app.kubernetes.io/managed-by=vcluster-spawner")).items:
        labels = {k: None for k in ns.metadata.labels or {} if k.startswith("pod-security.kubernetes.io/")}
        await core.patch_namespace(ns.metadata.name, {"metadata": {"labels": labels}})


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


def pytest_itemcollected(item):
    """Every test that uses the local cluster, directly or through a fixture, is marked
    ``cluster`` (``pytest -m "not cluster"`` runs the fast tests alone)."""
    if "cluster" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure of a cluster test, attach the tail of every component's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    if "cluster" not in item.fixturenames:
        return
    state_dir, _ = cluster_state_dir()
    logs = sorted((state_dir / "logs").glob("*.log")) + sorted(state_dir.parent.glob("*.supervisor.log"))
    logs += sorted((state_dir / "pods").glob("*/*.log"))[-6:]
    for path in logs:
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        report.sections.append((f"log {path.relative_to(state_dir.parent)}", tail))

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


# make test runs the suite in two pytest-xdist workers (``--dist loadgroup``): every test on the
# emulation's cluster in one group, every test on the real vCluster's in another, so that each
# cluster is started once and the two halves, mostly waiting on control planes, overlap
EMULATION_GROUP, REAL_GROUP = "emulation-cluster", "real-vcluster-cluster"
CLUSTERS = {"real_cluster": ("LOCALCLUSTER_REAL_REUSE", "localcluster-real"),
            "cluster": ("LOCALCLUSTER_REUSE", "localcluster")}


def cluster_state_dir(fixture: str) -> Path:
    """Where the cluster of ``fixture`` runs: the reused one's, else one per xdist worker (a
    test that needs both clusters makes its worker start the other one too)."""
    reuse_variable, name = CLUSTERS[fixture]
    reuse = os.environ.get(reuse_variable)
    if reuse:
        return Path(reuse).resolve()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return ARTIFACTS / (f"{name}-{worker}" if worker else name)


def local_cluster(fixture: str, plugin: str, timeout: float = 180):
    """A local cluster with ``plugin``, started in ``cluster_state_dir(fixture)`` and stopped
    after, or, when that fixture's environment variable names a state directory, the one
    running there (started with ``python -m localcluster up``)."""
    state_dir = cluster_state_dir(fixture)
    if os.environ.get(CLUSTERS[fixture][0]):
        yield ClusterState.read(state_dir)
        return
    proc, state = start_cluster(state_dir, plugins=(plugin,), timeout=timeout)
    yield state
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def cluster() -> ClusterState:
    """The local cluster with the vCluster emulation, for the session (``LOCALCLUSTER_REUSE``)."""
    yield from local_cluster("cluster", "vcluster_emulation")


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
    yield from local_cluster("real_cluster", "vcluster_real", timeout=1800)


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


def pytest_itemcollected(item):
    """Every test that uses the real vCluster, directly or through a fixture, is marked
    ``real_vcluster`` (``pytest -m real_vcluster`` selects them all); each test is put in the
    xdist group of the cluster it needs (the real one when it needs both). Done as each item is
    collected: xdist reads the groups in its own pytest_collection_modifyitems, which a
    conftest's implementation of that hook does not reliably precede."""
    fixtures = getattr(item, "fixturenames", ())
    if "real_cluster" in fixtures:
        item.add_marker(pytest.mark.real_vcluster)
        item.add_marker(pytest.mark.xdist_group(REAL_GROUP))
    elif "cluster" in fixtures:
        item.add_marker(pytest.mark.xdist_group(EMULATION_GROUP))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure of a cluster test, attach the tail of every component's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    fixture = next((f for f in CLUSTERS if f in item.fixturenames), None)
    if fixture is None:
        return
    state_dir = cluster_state_dir(fixture)
    logs = sorted((state_dir / "logs").glob("*.log")) + sorted(state_dir.parent.glob("*.supervisor.log"))
    logs += sorted((state_dir / "pods").glob("*/*.log"))[-6:]
    for path in logs:
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        report.sections.append((f"log {path.relative_to(state_dir.parent)}", tail))

"""Fixtures: a real local Kubernetes (see localcluster/) started once per test session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from localcluster import ClusterState
from localcluster.kube import api_client
from localcluster.processes import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def _start_cluster(state_dir: Path, plugins: tuple[str, ...] = ()) -> tuple[subprocess.Popen, ClusterState]:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir.parent / f"{state_dir.name}.supervisor.log", "wb")
    argv = [sys.executable, "-m", "localcluster", "up", "--state-dir", str(state_dir)]
    for plugin in plugins:
        argv += ["--plugin", plugin]
    # The supervisor dies with pytest, and its components die with it: no leftovers even
    # when the test run is killed.
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"local cluster failed to start; see {log.name}:\n"
                               + Path(log.name).read_text()[-4000:])
        try:
            state = ClusterState.read(state_dir.resolve())
            if state.pid == proc.pid:
                return proc, state
        except (FileNotFoundError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"local cluster did not become ready in 180 s; see {log.name}")


@pytest.fixture(scope="session")
def cluster() -> ClusterState:
    """The running local cluster: ``LOCALCLUSTER_REUSE=<state dir>`` reuses one started with
    ``python -m localcluster up``; otherwise one is started for the session."""
    reuse = os.environ.get("LOCALCLUSTER_REUSE")
    if reuse:
        yield ClusterState.read(Path(reuse).resolve())
        return
    proc, state = _start_cluster(ARTIFACTS / "localcluster", plugins=("vcluster_emulation",))
    yield state
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
async def kube(cluster) -> client.ApiClient:
    api = await api_client(cluster.admin_kubeconfig)
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

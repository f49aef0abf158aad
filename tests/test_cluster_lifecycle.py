"""Starting and tearing down the local cluster leaves nothing behind (pytest -m cluster)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest
from kubernetes_asyncio import client

from localcluster.kube import api_client
from localcluster.launch import start_cluster

from .conftest import ROOT
from .helpers import pod_ready, processes_matching, python_pod

pytestmark = pytest.mark.cluster


async def _wait_gone(marker: str, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_matching(marker)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return left


async def test_killed_supervisor_takes_every_component_and_pod_with_it(tmp_path):
    """Even a SIGKILL (a crashed or interrupted test run) leaves no process running."""
    state_dir = tmp_path / "killed"
    proc, state = start_cluster(state_dir)
    api = await api_client(state.admin_kubeconfig)
    try:
        core = client.CoreV1Api(api)
        await core.create_namespaced_pod("default", python_pod(
            "orphan-check", ["-m", "http.server", "18099", f"--directory={tmp_path}"], restart="Always", ports=[18099]))
        await pod_ready(core, "default", "orphan-check")
    finally:
        await api.close()
    assert len(processes_matching(str(state_dir))) >= 4  # etcd, apiserver, KCM, scheduler
    assert len(processes_matching(f"--directory={tmp_path}")) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert await _wait_gone(str(state_dir)) == []
    assert await _wait_gone(f"--directory={tmp_path}") == []


def test_cli_status_env_and_down(tmp_path):
    state_dir = tmp_path / "cli"
    proc, state = start_cluster(state_dir)
    run = lambda *a: subprocess.run([sys.executable, "-m", "localcluster", *a, "--state-dir", str(state_dir)],
                                    cwd=ROOT, capture_output=True, text=True)
    status = run("status")
    assert status.returncode == 0 and f"server: {state.server}" in status.stdout
    assert f"export KUBECONFIG={state.admin_kubeconfig}" in run("env").stdout
    assert run("down").returncode == 0
    assert proc.wait(30) == 0
    assert asyncio.run(_wait_gone(str(state_dir))) == []
    assert run("status").returncode == 3

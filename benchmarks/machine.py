"""The machine the benchmark ran on, and its load while it ran (the CPU may be shared)."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from localcluster import ClusterState

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _run(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def describe(cluster: ClusterState, chp: str) -> dict:
    helm = _run(str(cluster.binaries / "helm"), "version", "--short")
    apiserver = _run(str(cluster.binaries / "kube-apiserver"), "--version")
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _mem_total(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "versions": {
            "jupyterhub": _version("jupyterhub"),
            "jupyterhub-kubespawner": _version("jupyterhub-kubespawner"),
            "kubernetes_asyncio": _version("kubernetes_asyncio"),
            "jupyter-server": _version("jupyter-server"),
            "kube-apiserver": apiserver.replace("Kubernetes ", ""),
            "helm": helm,
            "configurable-http-proxy": _run(chp, "--version"),
        },
        "git_commit": _run("git", "rev-parse", "--short", "HEAD"),
    }


class LoadSampler:
    """Samples the 1-minute load average every ``interval`` seconds while the run goes on."""

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        s = self.samples or [os.getloadavg()[0]]
        return {"loadavg_1m_min": min(s), "loadavg_1m_mean": round(sum(s) / len(s), 2), "loadavg_1m_max": max(s),
                "samples": len(s)}

"""An async wrapper around the helm command line, with bounded concurrency.

pyhelm3 was considered: it wraps the same binary and parses the same output, but pins its own
model of charts and releases; the spawner needs three commands, so it calls helm directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass

import yaml


class HelmError(RuntimeError):
    """helm exited non-zero; ``detail`` is its output for the log, ``str()`` a one-line summary."""

    def __init__(self, summary: str, detail: str):
        super().__init__(summary)
        self.detail = detail


@dataclass(frozen=True)
class ChartRef:
    """A chart as helm accepts it: a name in ``repo``, a local path, or an ``oci://`` reference."""

    chart: str
    repo: str = ""
    version: str = ""

    def args(self) -> list[str]:
        args = [self.chart]
        if self.repo and not self.chart.startswith(("oci://", "/", "./")):
            args += ["--repo", self.repo]
        if self.version:
            args += ["--version", self.version]
        return args

    def __str__(self) -> str:
        return " ".join(self.args())


class Helm:
    def __init__(self, binary: str = "helm", max_concurrency: int = 4, timeout: float = 600):
        self.binary = binary
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_concurrency)

    async def _run(self, *args: str, what: str) -> str:
        async with self._slots:
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.binary, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            except FileNotFoundError:
                raise HelmError(f"{what}: the helm binary {self.binary!r} was not found",
                                f"helm_binary={self.binary!r} is not on PATH") from None
            try:
                out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                proc.kill()
                await proc.wait()
                raise
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip()
            lines = message.splitlines() or [f"exit code {proc.returncode}"]
            last = lines[-1]
            if "--debug" in args:   # a stack trace follows helm's "Error: ..." line
                last = next((line for line in reversed(lines) if line.startswith("Error:")), last)
            raise HelmError(f"{what} failed: {last.removeprefix('Error: ')}", message)
        return out.decode()

    async def upgrade_install(self, release: str, namespace: str, chart: ChartRef, values: dict) -> None:
        # values go through a private file, never the command line (no secrets in process lists)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="vcluster-values-") as f:
            os.chmod(f.name, 0o600)
            yaml.safe_dump(values, f)
            f.flush()
            await self._run("upgrade", "--install", release, *chart.args(), "--namespace", namespace,
                            "--values", f.name, what=f"helm upgrade --install {namespace}/{release}")

    async def uninstall(self, release: str, namespace: str) -> bool:
        """True if a release was removed, False if there was none."""
        try:
            # --debug: without it helm reports only "failed to delete release", never why
            await self._run("uninstall", release, "--namespace", namespace, "--wait", "--debug",
                            what=f"helm uninstall {namespace}/{release}")
            return True
        except HelmError as e:
            if "not found" in str(e):   # the Error: line, not a debug line
                return False
            raise

    async def release_exists(self, release: str, namespace: str) -> bool:
        out = await self._run("list", "--namespace", namespace, "--filter", f"^{release}$", "--output", "json",
                              what=f"helm list {namespace}")
        return any(r.get("name") == release for r in json.loads(out or "[]"))

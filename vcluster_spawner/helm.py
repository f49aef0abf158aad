"""An async wrapper around the helm command line, with bounded concurrency.

pyhelm3 was considered: it wraps the same binary and parses the same output, but pins its own
model of charts and releases; the spawner needs three commands, so it calls helm directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from dataclasses import dataclass

import yaml

# a helm interrupted mid-operation (killed, or its hub stopped) leaves the release in one of
# these, and every later upgrade fails with "another operation is in progress"
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
# seconds helm gets after SIGTERM to record the interruption itself before it is killed
STOP_GRACE = 10


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
                await asyncio.shield(self._stop(proc))
                raise
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip()
            lines = message.splitlines() or [f"exit code {proc.returncode}"]
            last = lines[-1]
            if "--debug" in args:   # a stack trace follows helm's "Error: ..." line
                last = next((line for line in reversed(lines) if line.startswith("Error:")), last)
            raise HelmError(f"{what} failed: {last.removeprefix('Error: ')}", message)
        return out.decode()

    @staticmethod
    async def _stop(proc: asyncio.subprocess.Process) -> None:
        """SIGTERM first: helm cancels its operation and marks the release failed rather than
        leaving it pending; killed only if it does not exit within ``STOP_GRACE``."""
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                proc.kill()
        await proc.wait()

    async def pending(self, release: str, namespace: str) -> str | None:
        """The release's status if an interrupted operation left it pending, else None."""
        try:
            out = await self._run("status", release, "--namespace", namespace, "--output", "json",
                                  what=f"helm status {namespace}/{release}")
        except HelmError as e:
            if "not found" in str(e):
                return None
            raise
        status = (json.loads(out).get("info") or {}).get("status")
        return status if status in PENDING else None

    async def recover(self, release: str, namespace: str, status: str) -> None:
        """Unblock a release left pending: an interrupted upgrade or rollback is rolled back to
        the last good revision; an interrupted first install is uninstalled (the control
        plane's data volume is kept by the chart's retention policy)."""
        if status == "pending-install":
            await self.uninstall(release, namespace)
        else:
            await self._run("rollback", release, "--namespace", namespace, "--wait", "--timeout",
                            f"{int(self.timeout)}s", what=f"helm rollback {namespace}/{release}")

    async def upgrade_install(self, release: str, namespace: str, chart: ChartRef, values: dict) -> None:
        # values go through a private file, never the command line (no secrets in process lists)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="vcluster-values-") as f:
            os.chmod(f.name, 0o600)
            yaml.safe_dump(values, f)
            f.flush()
            await self._run("upgrade", "--install", release, *chart.args(), "--namespace", namespace,
                            "--values", f.name, "--timeout", f"{int(self.timeout)}s",
                            what=f"helm upgrade --install {namespace}/{release}")

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

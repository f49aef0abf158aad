"""Locates the control-plane binaries, building them on first use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "build-binaries.sh"
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "helm")


def ensure_binaries() -> Path:
    """The directory holding etcd, kube-* and helm: ``$LOCALCLUSTER_BIN_DIR`` if set, else the
    version-keyed cache that ``tools/build-binaries.sh`` fills (a no-op when already built)."""
    override = os.environ.get("LOCALCLUSTER_BIN_DIR")
    if override:
        path = Path(override)
        missing = [b for b in REQUIRED if not (path / b).exists()]
        if missing:
            raise FileNotFoundError(f"LOCALCLUSTER_BIN_DIR={path} lacks {', '.join(missing)}")
        return path
    return run_build_script(BUILD_SCRIPT)


def run_build_script(script: Path, *args: str, env: dict | None = None) -> Path:
    """Runs one of tools/build-*.sh (a no-op when its output is cached) and returns the
    directory it prints on its last line; its progress goes to this process's stderr."""
    result = subprocess.run(["bash", str(script), *args], stdout=subprocess.PIPE, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join([str(script), *args])} failed (exit {result.returncode}); its messages are above")
    return Path(result.stdout.strip().splitlines()[-1])

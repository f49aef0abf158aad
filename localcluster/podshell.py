"""``kubectl exec`` for the local kubelet: run a command in a running container's view.

The command gets the container's environment, working directory and mounts (its own private
mount namespace, like the container process), from the exec spec the kubelet wrote when it
started the container (``<pods>/<ns>_<name>_<uid>/<container>.exec.json``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from .cluster import ClusterState


def exec_spec(state: ClusterState, namespace: str, pod: str, container: str) -> dict:
    found = sorted(state.pods_dir.glob(f"{namespace}_{pod}_*/{container}.exec.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"container {container} of pod {namespace}/{pod} was not started by the local kubelet")
    return json.loads(found[-1].read_text())


async def exec_in_container(state: ClusterState, namespace: str, pod: str, container: str, argv: list[str],
                            timeout: float = 60) -> tuple[int, str]:
    """Exit code and combined output of ``argv``."""
    spec = {**exec_spec(state, namespace, pod, container), "argv": argv}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "localcluster.podexec", f.name, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(Path(__file__).parent.parent))
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode, out.decode(errors="replace")
    finally:
        Path(f.name).unlink(missing_ok=True)

"""Start ``python -m localcluster up`` as a supervised child process and wait until it is ready
(used by the test fixtures and the demo)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .cluster import ClusterState
from .processes import die_with_parent

ROOT = Path(__file__).resolve().parent.parent


def start_cluster(state_dir: Path, plugins: tuple[str, ...] = (), *, timeout: float = 180,
                  new_session: bool = False) -> tuple[subprocess.Popen, ClusterState]:
    """The supervisor dies with its parent (and its components with it), so nothing is left
    behind even when the parent is killed. ``new_session``: keep it out of the terminal's
    process group, so that Ctrl-C reaches only the parent, which then stops it in order."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir.parent / f"{state_dir.name}.supervisor.log", "wb")
    argv = [sys.executable, "-m", "localcluster", "up", "--state-dir", str(state_dir)]
    for plugin in plugins:
        argv += ["--plugin", plugin]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                            start_new_session=new_session)
    deadline = time.monotonic() + timeout
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
    raise TimeoutError(f"local cluster did not become ready in {timeout:.0f} s; see {log.name}")

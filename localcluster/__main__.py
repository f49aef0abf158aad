"""Command line for the local cluster.

    python -m localcluster build            build or reuse the cached binaries
    python -m localcluster up [--state-dir D] [--plugin MOD ...]
                                           start it; runs in the foreground until Ctrl-C
    python -m localcluster status|env|down [--state-dir D]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .binaries import ensure_binaries
from .cluster import DEFAULT_IMAGES, ClusterState, LocalCluster

DEFAULT_STATE_DIR = Path(os.environ.get("LOCALCLUSTER_STATE_DIR", ".localcluster"))


def _progress(msg: str) -> None:
    print(f"[localcluster {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def _up(args) -> int:
    state_dir = args.state_dir.resolve()
    if (state_dir / "cluster.json").exists():
        pid = ClusterState.read(state_dir).pid
        if _alive(pid):
            print(f"a local cluster already runs from {state_dir} (pid {pid}); "
                  f"'python -m localcluster down' stops it", file=sys.stderr)
            return 1
    shutil.rmtree(state_dir, ignore_errors=True)  # every cluster starts from an empty etcd
    state_dir.mkdir(parents=True)
    binaries = ensure_binaries()
    cluster = LocalCluster(state_dir, binaries, images=args.images, nodes=args.nodes,
                           plugins=tuple(args.plugin), verbosity=args.verbosity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        await cluster.start(progress=_progress)
        health = asyncio.create_task(cluster.watch_health())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({health, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if health.done():
            code = 1
            _progress(f"stopping: {health.exception()}")
        health.cancel()
        stopper.cancel()
    except Exception as e:
        _progress(f"failed: {e}")
        code = 1
    finally:
        _progress("stopping pods and control plane")
        await cluster.stop()
        _progress("stopped")
    return code


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) is not alive."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _down(args) -> int:
    try:
        state = ClusterState.read(args.state_dir.resolve())
    except FileNotFoundError:
        print("no local cluster is running from", args.state_dir)
        return 0
    try:
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    for _ in range(600):
        if not _alive(state.pid):
            return 0
        time.sleep(0.1)
    print(f"pid {state.pid} did not stop within 60 s; killing it", file=sys.stderr)
    os.kill(state.pid, signal.SIGKILL)
    return 1


def _status(args) -> int:
    try:
        state = ClusterState.read(args.state_dir.resolve())
    except FileNotFoundError:
        state = None
    if state is None or not _alive(state.pid):
        print("down")
        return 3
    print(f"up (pid {state.pid})\nserver: {state.server}\nkubeconfig: {state.admin_kubeconfig}\n"
          f"logs: {state.logs_dir}\npods: {state.pods_dir}")
    return 0


def _env(args) -> int:
    state = ClusterState.read(args.state_dir.resolve())
    print(f"export KUBECONFIG={state.admin_kubeconfig}")
    print(f"export PATH={state.binaries}:$PATH")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "up", "down", "status", "env"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="where state, logs, pods and volumes live (default: %(default)s)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="image rules for the local kubelet (default: %(default)s)")
    parser.add_argument("--nodes", type=int, default=1, help="number of Node objects (default: 1)")
    parser.add_argument("--plugin", action="append", default=[],
                        help="module to import before start (its register(cluster) adds image rules)")
    parser.add_argument("-v", "--verbosity", type=int, default=1, help="component log level (--v)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "build":
        print(ensure_binaries())
        return 0
    if args.command == "up":
        return asyncio.run(_up(args))
    return {"down": _down, "status": _status, "env": _env}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks [run|report]``: run everything (default) or only regenerate the
report from ``results/latest.json``.

``run`` starts its own local cluster in ``test-artifacts/bench/``, running the real vCluster
0.36.1 (docs/real-vcluster.md), or uses the one named by ``LOCALCLUSTER_REUSE`` as the tests do.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from localcluster import ClusterState
from localcluster.launch import start_cluster

from . import report
from .run import default_workdir, goals, run_all, write
from .settings import Settings


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def run(settings: Settings) -> int:
    workdir = default_workdir()
    reuse = os.environ.get("LOCALCLUSTER_REUSE")
    proc = None
    if reuse:
        cluster = ClusterState.read(Path(reuse).resolve())
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        _log("[bench] starting a local cluster running the real vCluster")
        proc, cluster = start_cluster(workdir / "localcluster", plugins=("vcluster_real",), timeout=1800)
    try:
        results = asyncio.run(run_all(cluster, settings, workdir / "hubs", cleanup=bool(reuse), log=_log))
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
    path = write(results, settings.out)
    _log(f"[bench] wrote {path} ({results['duration_seconds']:.0f} s)")
    _log(f"[bench] wrote {report.write(results, settings.out)}")
    return 0


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    command = argv[0] if argv else "run"
    if command == "report":
        results = json.loads((settings.out / "latest.json").read_text())
        results["goals"] = goals(results)   # the current criteria, on the recorded numbers
        write(results, settings.out)
        print(report.write(results, settings.out))
        return 0
    if command == "run":
        return run(settings)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``make demo``: a local Kubernetes running the real vCluster 0.36.1 and a JupyterHub with
VClusterSpawner, its profiles, idle culler, lifecycle and status services. Ctrl-C stops it all.

Everything lives in ``.demo/`` (cluster state, hub database, logs) and starts fresh each time.
The cluster and the hub run in their own sessions, so Ctrl-C reaches only this script, which
stops the hub (and with it its proxy and services) and then the cluster (and with it every
pod); both also die with this script if it is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vcluster_real  # noqa: E402
from localcluster.admission import apply_admission_policies  # noqa: E402
from localcluster.kube import api_client  # noqa: E402
from localcluster.launch import start_cluster  # noqa: E402
from localcluster.processes import die_with_parent, free_port  # noqa: E402

STATE = ROOT / ".demo"


async def apply_policies(cluster) -> None:
    async with await api_client(cluster.admin_kubeconfig) as api:
        await apply_admission_policies(api, cluster)


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def port_or_free(wanted: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            return free_port()


def wait_for_hub(url: str, hub: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise RuntimeError(f"JupyterHub exited; its log ({log}) ends with:\n"
                               + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        try:
            with urllib.request.urlopen(f"{url}/hub/api/", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"JupyterHub did not answer within {timeout:.0f} s; see {log}")


def stop(proc: subprocess.Popen | None, name: str, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    say(f"stopping {name}")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        say(f"{name} did not stop within {timeout:.0f} s; killing it")
        proc.kill()
        proc.wait()


def leftovers() -> dict[int, str]:
    """Processes still running from the demo: their command line or environment names its
    directory (cluster components, hub, proxy, services, pods) or its hub configuration."""
    found = {}
    marks = (str(STATE).encode(), b"demo/jupyterhub_config.py")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if any(m in cmdline or m in environ for m in marks):
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found[int(entry.name)] = command[:120]
    return found


def reap(processes: dict[int, str]) -> None:
    """SIGTERM, 5 s, SIGKILL: what a hub that died left behind (its proxy and services run in
    sessions of their own, so they outlive it)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in processes):
            time.sleep(0.1)


def main() -> int:
    if not shutil.which("configurable-http-proxy"):
        print("configurable-http-proxy is not on PATH: run `make demo`", file=sys.stderr)
        return 1
    started = time.monotonic()
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    shutil.rmtree(STATE / "hub", ignore_errors=True)
    (STATE / "hub").mkdir(parents=True)
    cluster_proc = hub = None
    try:
        say("starting the local Kubernetes cluster, whose kubelet runs the real vCluster 0.36.1")
        cluster_proc, cluster = start_cluster(STATE / "cluster", ("vcluster_real",), new_session=True, timeout=1800)
        say("applying the chart's admission policies (users' namespaces guarded as in production)")
        asyncio.run(apply_policies(cluster))
        ports = {"DEMO_PORT": port_or_free(int(os.environ.get("DEMO_PORT", 8000))),
                 "DEMO_HUB_PORT": free_port(), "DEMO_PROXY_API_PORT": free_port(), "DEMO_STATUS_PORT": free_port()}
        env = {**os.environ, **{k: str(v) for k, v in ports.items()},
               "KUBECONFIG": str(cluster.admin_kubeconfig), "DEMO_HELM": str(cluster.binaries / "helm"),
               "DEMO_VCLUSTER_CHART": str(vcluster_real.chart(cluster.binaries)),
               "HELM_CACHE_HOME": str(STATE / "helm" / "cache"), "HELM_CONFIG_HOME": str(STATE / "helm" / "config"),
               "HELM_DATA_HOME": str(STATE / "helm" / "data"), "PYTHONPATH": str(ROOT)}
        log = STATE / "jupyterhub.log"
        say(f"starting JupyterHub (log: {log})")
        hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(ROOT / "demo" / "jupyterhub_config.py")],
                               cwd=STATE / "hub", env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                               preexec_fn=die_with_parent, start_new_session=True)
        url = f"http://127.0.0.1:{ports['DEMO_PORT']}"
        wait_for_hub(url, hub, log)
        print(f"""
  JupyterHub with vcluster-spawner is running at {url}/   (ready in {time.monotonic() - started:.0f} s)

  Log in as alice (admin) or bob, password: demo. Then:
   1. Pick a virtual cluster size, an image and a Kubernetes version, and start: the progress
      page shows your vCluster being created, its control plane and API coming up.
   2. In JupyterLab, open a terminal: your notebook runs inside your own vCluster
      (its kubeconfig is the one the status page offers when the cluster exports one).
   3. Status page: {url}/services/vcluster-status/  (bob sees his own vCluster; alice sees
      everyone's and can sleep, wake or delete them)
   4. Admin panel (alice): {url}/hub/admin  stop or start servers, named servers too.
   5. Leave a server idle for 3 minutes: the culler stops it and the vCluster goes to sleep;
      start again and it wakes up. Asleep for 15 minutes, it is deleted (your home stays).
   Metrics: {url}/hub/metrics (as alice).  Hub log: {log}

  Press Ctrl-C to stop everything.
""", flush=True)
        while not stopping and hub.poll() is None and cluster_proc.poll() is None:
            time.sleep(0.5)
        if not stopping:
            say("JupyterHub or the cluster exited; see the logs in .demo/")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C must not cut the clean-up short
        stop(hub, "JupyterHub (and its proxy and services)", 60)
        stop(cluster_proc, "the local cluster (and every pod)", 90)
        left = leftovers()
        if left:
            say("stopping what JupyterHub left running:\n  " + "\n  ".join(f"{p} {c}" for p, c in left.items()))
            reap(left)
            left = leftovers()
        say("stopped; nothing left running" if not left else "still running:\n  " + "\n  ".join(
            f"{p} {c}" for p, c in left.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

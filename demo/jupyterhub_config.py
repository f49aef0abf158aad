"""The demo hub: the jupyterhub_config.d/ snippets the chart ships, plus a small demo overlay.

Started by ``make demo`` (demo/run.py), which sets the DEMO_* variables: ports, the local
cluster's helm binary and the real vCluster's chart. Not for production: dummy
authentication with a shared password, no TLS.
"""
import os
from pathlib import Path

from vcluster_spawner.hubconfig import load_config_d

c = get_config()  # noqa: F821
ROOT = Path(__file__).resolve().parent.parent
env = os.environ

# ---- the hub itself, on this machine --------------------------------------------------------
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(env.get("DEMO_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env.get("DEMO_HUB_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env.get('DEMO_PROXY_API_PORT', '8001')}"
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"     # in the demo's state directory (cwd)
c.JupyterHub.cookie_secret_file = "jupyterhub_cookie_secret"

# ---- two demo users: alice is an admin, bob is not; any of them logs in with password "demo" --
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "demo"
c.Authenticator.allowed_users = {"alice", "bob"}
c.Authenticator.admin_users = {"alice"}

# ---- the local cluster stands in for Kubernetes; vCluster is the real one ------------------------
# upstream's chart at 0.36.1, packaged from its Go module (docs/real-vcluster.md); a real install
# leaves vcluster_chart at its default, the chart from upstream's repository
c.VClusterSpawner.vcluster_chart = env["DEMO_VCLUSTER_CHART"]
c.VClusterSpawner.helm_binary = env.get("DEMO_HELM", "helm")
# the hub runs outside the cluster: it reaches each vCluster's Service by its (loopback) cluster IP
c.VClusterSpawner.vcluster_api_url_template = "https://{cluster_ip}:443"
# homes: the local NFS stand-in (RWX, immediate binding); the notebook's kubeconfig reaches its
# vCluster the same way (there is no cluster DNS here)
c.VClusterSpawner.home_storage_class = "local-rwx"
c.VClusterSpawner.user_kubeconfig_server_template = "https://{cluster_ip}:443"
c.VClusterSpawner.image = "quay.io/jupyterhub/k8s-singleuser-sample:4.1.0"
c.VClusterSpawner.vcluster_mode = "dynamic"
c.VClusterSpawner.sleep_grace_period = 30.0

# ---- short policy times, so that culling, sleeping and deleting can be watched -------------------
c.VClusterHub.cull_timeout = 180            # idle servers are stopped after 3 minutes...
c.VClusterHub.cull_every = 30               # ...checked every 30 s; the vCluster then sleeps
c.VClusterHub.lifecycle_interval = 15
c.VClusterHub.lifecycle_delete_asleep_after = 900   # asleep for 15 minutes: deleted
c.VClusterHub.status_port = int(env.get("DEMO_STATUS_PORT", "10101"))

# ---- what the chart ships ------------------------------------------------------------------------
load_config_d(c, ROOT / "jupyterhub_config.d")

# the services load this file too, in the environment the hub gives them (a few variables):
# they need the demo's helm and chart as the hub does
for _service in c.JupyterHub.services:
    if "environment" in _service:
        _service["environment"].update({k: v for k, v in env.items() if k in ("DEMO_HELM", "DEMO_VCLUSTER_CHART")})

"""VClusterSpawner as the hub's spawner (every user gets their own vCluster).

Loaded by a plain JupyterHub (``load_subconfig`` from jupyterhub_config.py, see docs/hub.md) or by
Zero to JupyterHub from ``/usr/local/etc/jupyterhub/jupyterhub_config.d/``. Settings made before
this file is loaded win: only what is unset is set here.

It also puts the user's vCluster on the hub's home, spawn and progress pages: its state, what
stopping the server does to it, what survives (vcluster_spawner/hubpages.py, docs/hub.md).
"""
from vcluster_spawner.hubpages import install as show_vcluster_on_hub_pages

c = get_config()  # noqa: F821

show_vcluster_on_hub_pages(c)

c.JupyterHub.spawner_class = "vcluster"
if "allow_named_servers" not in c.JupyterHub:
    c.JupyterHub.allow_named_servers = True      # named servers share the user's vCluster
if "cleanup_servers" not in c.JupyterHub:
    # stopping or upgrading the hub must not stop every server (and sleep every vCluster)
    c.JupyterHub.cleanup_servers = False
if "stop_action" not in c.VClusterSpawner:
    c.VClusterSpawner.stop_action = "sleep"      # culled or stopped: keep the cluster, free its CPU
if "sleep_grace_period" not in c.VClusterSpawner:
    c.VClusterSpawner.sleep_grace_period = 120.0   # seconds; a quick restart finds it running

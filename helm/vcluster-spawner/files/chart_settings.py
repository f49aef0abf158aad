"""VClusterSpawner options from the vcluster-spawner chart's values (rendered by helm into
vcluster-spawner-chart.json and vcluster.yaml next to this file, in the chart's ConfigMap).

Loaded before the other jupyterhub_config.d snippets. Zero to JupyterHub runs these files in
its own configuration's namespace: options it set before (hub.config) win, hub.extraConfig runs
after and wins too. (traitlets' load_subconfig gives a file a fresh config that is merged over
the caller's: there, set overrides after loading this file.) Empty values leave the spawner's
default. The two files are read from $VCLUSTER_SPAWNER_CHART_DIR, this file's directory or
Zero to JupyterHub's /usr/local/etc/jupyterhub/jupyterhub_config.d.
"""
import json
import os

import yaml

c = get_config()  # noqa: F821

_candidates = [os.environ.get("VCLUSTER_SPAWNER_CHART_DIR", ""), "/usr/local/etc/jupyterhub/jupyterhub_config.d"]
if "__file__" in globals():   # load_subconfig sets it; Zero to JupyterHub's exec() does not (to this file)
    _candidates.insert(1, os.path.dirname(os.path.abspath(__file__)))
_dir = next(d for d in _candidates if d and os.path.exists(os.path.join(d, "vcluster-spawner-chart.json")))
with open(os.path.join(_dir, "vcluster-spawner-chart.json")) as _f:
    _settings = json.load(_f)
for _name, _value in _settings.items():
    if _name == "hub_connect_url" or _value in ("", None, []) or _name in c.VClusterSpawner:
        continue
    setattr(c.VClusterSpawner, _name, _value)
# inside the vCluster (Zero to JupyterHub sets KubeSpawner.namespace to its own namespace)
if "namespace" not in c.VClusterSpawner:
    c.VClusterSpawner.namespace = c.VClusterSpawner.get("virtual_namespace", "default")
if _settings.get("hub_connect_url"):   # set on purpose: Zero to JupyterHub's own value does not resolve in a vCluster
    c.JupyterHub.hub_connect_url = _settings["hub_connect_url"]
if "vcluster_values" not in c.VClusterSpawner:
    with open(os.path.join(_dir, "vcluster.yaml")) as _f:
        c.VClusterSpawner.vcluster_values = yaml.safe_load(_f) or {}

"""VClusterSpawner options from the vcluster-spawner chart's values (rendered by helm into
vcluster-spawner-chart.json and vcluster.yaml next to this file, in the chart's ConfigMap).

Loaded before the other jupyterhub_config.d snippets; options set earlier in the hub's
configuration (e.g. Zero to JupyterHub's hub.config or extraConfig) win, empty values leave the
spawner's default. VCLUSTER_SPAWNER_CHART_DIR overrides where the two files are read from.
"""
import json
import os

import yaml

c = get_config()  # noqa: F821

_dir = os.environ.get("VCLUSTER_SPAWNER_CHART_DIR") or os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_dir, "vcluster-spawner-chart.json")) as _f:
    _settings = json.load(_f)
for _name, _value in _settings.items():
    if _value in ("", None, []) or _name in c.VClusterSpawner:
        continue
    setattr(c.VClusterSpawner, _name, _value)
if "vcluster_values" not in c.VClusterSpawner:
    with open(os.path.join(_dir, "vcluster.yaml")) as _f:
        c.VClusterSpawner.vcluster_values = yaml.safe_load(_f) or {}

"""jupyterhub-idle-culler as a hub-managed service: idle servers are stopped, and the spawner
then applies its stop action to the vCluster (sleep, or delete in dynamic mode).

Settings (``c.VClusterHub.*``, set before this file is loaded): ``cull_timeout`` seconds of
inactivity (default 3600), ``cull_every`` seconds between checks (default 300). Named servers
are stopped, never removed, and users are never deleted: removing deletes the vCluster.
"""
import sys

c = get_config()  # noqa: F821

_timeout = int(c.VClusterHub.get("cull_timeout", 3600))
_every = int(c.VClusterHub.get("cull_every", 300))

c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={_timeout}",
                f"--cull-every={_every}"],
}]
c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles", [])) + [{
    "name": "idle-culler",
    "description": "Stop idle servers (never remove them or their users)",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]

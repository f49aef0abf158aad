"""The vCluster lifecycle service (vcluster_spawner.services.lifecycle), hub-managed.

Applies the cluster policy the culler cannot: the stop action for a vCluster left running
without a server past the grace period (drift), deletion of vClusters asleep longer than
``lifecycle_delete_asleep_after`` seconds (dynamic mode, or static with
``lifecycle_delete_in_static_mode``); never touches home storage; logs every decision.

Settings (``c.VClusterHub.*``, set before this file is loaded): ``lifecycle_interval`` seconds
(default 60), ``lifecycle_delete_asleep_after`` seconds (default 604800, 0 = never),
``lifecycle_delete_in_static_mode`` (default False), ``lifecycle_grace_period`` seconds (default:
the spawner's grace period plus the interval), ``lifecycle_pool_interval`` seconds between two
passes over the warm pools (default 10; the pools are the spawner's ``warm_pool_size``). It reads the hub's own configuration file for the
spawner settings and talks to the host cluster with the hub's credentials (in-cluster service
account, or the KUBECONFIG the hub has).
"""
import sys

from vcluster_spawner.hubconfig import hub_config_file, kube_environment

c = get_config()  # noqa: F821


_hub = c.VClusterHub
_command = [sys.executable, "-m", "vcluster_spawner.services.lifecycle", f"--hub-config={hub_config_file()}",
            f"--interval={float(_hub.get('lifecycle_interval', 60))}",
            f"--delete-asleep-after={float(_hub.get('lifecycle_delete_asleep_after', 7 * 24 * 3600))}"]
if "lifecycle_grace_period" in _hub:
    _command.append(f"--grace-period={float(_hub.lifecycle_grace_period)}")
if "lifecycle_pool_interval" in _hub:
    _command.append(f"--pool-interval={float(_hub.lifecycle_pool_interval)}")
if _hub.get("lifecycle_delete_in_static_mode", False):
    _command.append("--delete-asleep-in-static-mode")

c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [{
    "name": "vcluster-lifecycle", "command": _command, "environment": kube_environment(),
}]
c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles", [])) + [{
    "name": "vcluster-lifecycle",
    "description": "Read users, their servers and the spawner state naming their vCluster",
    "scopes": ["list:users", "read:users", "read:servers", "admin:server_state"],
    "services": ["vcluster-lifecycle"],
}]

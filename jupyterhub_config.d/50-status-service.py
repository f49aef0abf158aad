"""The vCluster status page (vcluster_spawner.services.status), hub-managed, at
``/services/vcluster-status/`` with hub OAuth: users see their own vCluster, admins everyone's,
with sleep/wake/delete actions. Every user may open it (the ``user`` role gets
``access:services!service=vcluster-status``); it is linked from the hub's Services menu.

Settings (``c.VClusterHub.*``, set before this file is loaded): ``status_port`` (default 10101,
on 127.0.0.1), ``status_kubeconfig_secret`` (host Secret template of the downloadable
kubeconfig, default "vc-{name}-external").
"""
import sys

from vcluster_spawner.hubconfig import hub_config_file, kube_environment

c = get_config()  # noqa: F821


_hub = c.VClusterHub
_command = [sys.executable, "-m", "vcluster_spawner.services.status", f"--hub-config={hub_config_file()}"]
if "status_kubeconfig_secret" in _hub:
    _command.append(f"--StatusService.kubeconfig_secret_template={_hub.status_kubeconfig_secret}")

c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [{
    "name": "vcluster-status", "display": True, "oauth_no_confirm": True,
    "url": f"http://127.0.0.1:{int(_hub.get('status_port', 10101))}",
    "command": _command, "environment": kube_environment(),
}]
_roles = list(c.JupyterHub.get("load_roles", []))
_roles.append({
    "name": "vcluster-status",
    "description": "Read users and servers (admin flag, spawner state naming the vCluster)",
    "scopes": ["list:users", "read:users", "read:servers", "admin:server_state"],
    "services": ["vcluster-status"],
})
# every user may open the page (it shows them only their own vCluster)
_user = next((r for r in _roles if r.get("name") == "user"), None)
if _user is None:
    _roles.append({"name": "user", "scopes": ["self", "access:services!service=vcluster-status"]})
else:
    _user["scopes"] = list(_user.get("scopes", ["self"])) + ["access:services!service=vcluster-status"]
c.JupyterHub.load_roles = _roles

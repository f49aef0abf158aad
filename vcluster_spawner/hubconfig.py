"""Helpers for the ``jupyterhub_config.d/`` snippets that start the hub-managed services."""

from __future__ import annotations

import os

# what a service needs from the hub's environment to reach the cluster and run helm: the hub
# hands the processes it spawns only a few variables of its own (PATH, VIRTUAL_ENV, LANG, ...)
KUBE_ENVIRONMENT = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "HOME",
                    "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME", "PYTHONPATH")


def hub_config_file() -> str:
    """Absolute path of the configuration file the running hub loads, so that its services read
    the same spawner settings. "" when no hub runs (a service loading the configuration itself)."""
    from jupyterhub.app import JupyterHub

    return os.path.abspath(JupyterHub.instance().config_file) if JupyterHub.initialized() else ""


def kube_environment() -> dict[str, str]:
    return {k: os.environ[k] for k in KUBE_ENVIRONMENT if k in os.environ}

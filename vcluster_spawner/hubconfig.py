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


def load_config_d(c, directory: str | os.PathLike, names: tuple[str, ...] = ()) -> None:
    """Run the ``*.py`` snippets of ``directory`` (or only ``names``), in name order, on the
    configuration ``c``, as Zero to JupyterHub runs its ``jupyterhub_config.d``: in the same
    configuration object, so a snippet sees (and leaves alone) what was set before it, and
    extends lists such as ``JupyterHub.services`` instead of replacing them. (traitlets'
    ``load_subconfig`` would hand each snippet an empty configuration and replace lists.)"""
    paths = sorted(os.path.join(directory, n) for n in names) if names else \
        sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".py"))
    for path in paths:
        with open(path) as f:
            code = compile(f.read(), path, "exec")
        exec(code, {"c": c, "get_config": lambda: c, "__file__": path, "__name__": "jupyterhub_config_d"})

"""The user's vCluster on the hub's own pages: home, spawn and progress.

``install(c)`` (called by jupyterhub_config.d/10-vcluster-spawner.py) adds this package's
``templates/`` to ``JupyterHub.template_paths`` and the template variable ``vcluster``, whose
``guidance(user)`` the templates call (the hub renders them asynchronously, so Jinja awaits it).
The state comes from ``services.inspect``, the status page's own reading of the cluster, and the
sentences from ``guidance.py``; the idle policy is read from the hub's configured services (the
culler's ``--timeout``, the lifecycle service's ``--delete-asleep-after``), so the pages promise
what the running services will do.
"""

from __future__ import annotations

import datetime
import logging
import re
from pathlib import Path

from .guidance import Guidance, Policy, guidance

TEMPLATES = Path(__file__).parent / "templates"
CULLER_DEFAULT_TIMEOUT = 600.0   # jupyterhub-idle-culler's own default for --timeout
LIFECYCLE_DEFAULT_DELETE_AFTER = 7 * 24 * 3600.0   # services/lifecycle.py, delete_asleep_after

log = logging.getLogger("vcluster_spawner.hubpages")


def _flag(command: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in a service's command."""
    for i, arg in enumerate(command):
        match = re.fullmatch(rf"--{re.escape(name)}(?:=(.*))?", str(arg))
        if match:
            return match.group(1) if match.group(1) is not None else (command[i + 1] if i + 1 < len(command) else "")
    return None


def idle_policy(services: list[dict], mode: str) -> tuple[float | None, float | None]:
    """(cull_timeout, delete_asleep_after) in seconds from the hub's services: None where no
    service will act (no culler; no lifecycle service, deletion off, or static mode without
    ``--delete-asleep-in-static-mode``)."""
    cull_timeout = delete_after = None
    for service in services:
        command = [str(a) for a in service.get("command") or []]
        if any("jupyterhub_idle_culler" in a for a in command):
            cull_timeout = float(_flag(command, "timeout") or CULLER_DEFAULT_TIMEOUT)
        if any("vcluster_spawner.services.lifecycle" in a for a in command):
            after = float(_flag(command, "delete-asleep-after") or LIFECYCLE_DEFAULT_DELETE_AFTER)
            static_too = _flag(command, "delete-asleep-in-static-mode") is not None
            if after > 0 and (mode == "dynamic" or static_too):
                delete_after = after
    return cull_timeout, delete_after


def policy_of(spawner, services: list[dict]) -> Policy:
    """What ``spawner``'s settings and the hub's services mean for its user."""
    cull_timeout, delete_after = idle_policy(services, spawner.vcluster_mode)
    return Policy(spawner.vcluster_mode, spawner.effective_stop_action,
                  home_mount_path=spawner.home_mount_path if spawner.home_enabled else None,
                  s3=bool(spawner.s3_credentials or spawner.s3_credentials_secret_template),
                  cull_timeout=cull_timeout, delete_asleep_after=delete_after,
                  survival_notice=spawner.survival_notice)


class ClusterPages:
    """The template variable ``vcluster``; ``config``: the hub's configuration, read when a page
    is rendered (snippets loaded after this one add the services)."""

    def __init__(self, config):
        self.config = config

    def policy(self, spawner) -> Policy:
        return policy_of(spawner, list(self.config.JupyterHub.get("services", [])))

    async def guidance(self, user) -> Guidance | None:
        """What ``user`` (the hub's User) is told about their vCluster; None when the hub's
        spawner is not this one, or the cluster cannot be read (the page then shows nothing
        rather than failing)."""
        from .services.inspect import VClusterView, inspect
        from .spawner import VClusterSpawner

        spawner = getattr(user, "spawner", None) if user is not None else None
        if not isinstance(spawner, VClusterSpawner):
            return None
        try:
            found = await spawner.lifecycle.resolve()   # the ownership gate, as for every caller
            ref = found.ref
            if ref is None:
                return None
            view = await inspect(spawner.ops, ref) if found.owned else VClusterView(ref, "absent")
        except Exception as e:   # a name template that cannot be expanded yet, say
            log.warning("state of %s's vCluster for the hub's pages: %s", user.name, e)
            return None
        spawners = list(user.spawners.values())
        last_activity = max((s.orm_spawner.last_activity for s in spawners if s.orm_spawner.last_activity),
                            default=None)
        if last_activity is not None and last_activity.tzinfo is None:   # the hub stores naive UTC
            last_activity = last_activity.replace(tzinfo=datetime.timezone.utc)
        return guidance(ref.name, view.state, self.policy(spawner), now=datetime.datetime.now(datetime.timezone.utc),
                        since=view.since, detail=view.detail, last_activity=last_activity,
                        server_active=any(s.active for s in spawners))


def install(c) -> None:
    """The templates and the template variable, on the hub's configuration ``c``."""
    paths = list(c.JupyterHub.get("template_paths", []))
    if str(TEMPLATES) not in paths:
        c.JupyterHub.template_paths = [*paths, str(TEMPLATES)]
    variables = dict(c.JupyterHub.get("template_vars", {}))
    variables.setdefault("vcluster", ClusterPages(c))
    c.JupyterHub.template_vars = variables

"""What both services share: the hub's configuration, the hub REST API, per-user spawners.

The services read the hub's own configuration file (``--hub-config``), so names, chart,
values, mode and stop action are exactly the spawner's; cluster operations are the spawner's
``ops`` (``VClusterOps``), never re-implemented here.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import signal
from types import SimpleNamespace
from urllib.parse import quote

import aiohttp
from traitlets import Unicode, default
from traitlets.config import Application, Config, PyFileConfigLoader

from ..vcluster import Ref

log = logging.getLogger("vcluster_spawner.services")


class HubService(Application):
    """What both services are: INFO logging (every decision and action is logged at INFO) and
    the spawner settings read from the hub's own configuration file."""

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    hub_config = Unicode(
        "", config=True,
        help="""The hub's jupyterhub_config.py: the spawner settings (names, mode, stop action,
        grace period, chart, values) are read from it. Default: "" (spawner defaults).""")

    def start(self):
        asyncio.run(self.run())   # run(): each service's own

    @classmethod
    def main(cls, argv=None) -> int:
        """The command line entry point. Not traitlets' ``launch_instance``: that makes the
        service the process's singleton Application, and the hub snippets it loads call
        ``JupyterHub.instance()`` (MultipleInstanceError)."""
        app = cls()
        app.initialize(argv)
        app.start()
        return 0


def stop_signal() -> asyncio.Event:
    """Set on SIGINT or SIGTERM (the hub stops services with SIGINT, then SIGTERM). Explicit
    handlers, because a process started with SIGINT ignored (e.g. under a background shell job)
    would otherwise ignore the hub's SIGINT and be killed only after the hub's timeout."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def load_hub_config(path: str | None) -> Config:
    """The hub's configuration (the file and the snippets it loads), or an empty one."""
    if not path:
        return Config()
    loader = PyFileConfigLoader(os.path.basename(path), os.path.dirname(os.path.abspath(path)))
    return loader.load_config()


def spawner_for(config: Config, user: dict):
    """A VClusterSpawner for a hub user (a REST API user model; ``{"name": ...}`` where the hub
    is not asked) that is never started: its traits, names and ``lifecycle``. Its vCluster is
    the one saved in a server's state, which wins over the name templates (they may have
    changed since); a user id is never invented: a template that needs one and a user with no
    saved state is an error (``names.UnknownUserId``). Call it on the event loop (KubeSpawner's
    constructor needs one)."""
    from ..names import expand, user_fields
    from ..spawner import VClusterSpawner

    name = user["name"]
    hub_user = SimpleNamespace(name=name, id=None, url=f"/user/{quote(name, safe='')}/", spawners={},
                               created=parse_time(user.get("created")))
    spawner = VClusterSpawner(config=config, user=hub_user, _mock=True)
    spawner.vcluster = saved_ref(user) or spawner.vcluster
    if spawner.vcluster is None:
        expand(spawner.vcluster_namespace_template, user_fields(name, None), 63)   # UnknownUserId says why
    return spawner


class Spawners:
    """One never-started spawner per user, saved vCluster and profile (``spawner_for``), built
    once: KubeSpawner's constructor reads the kube config synchronously (a short file read, once
    per user and process). The profile the user last started with is applied (``last_options``),
    so a profile's own settings (its ``stop_action``, say) are the ones the service acts on."""

    def __init__(self, config: Config):
        self.config = config
        self._built: dict = {}

    async def __call__(self, user: dict):
        options = last_options(user)
        key = (user["name"], saved_ref(user), json.dumps(options, sort_keys=True))
        if key not in self._built:
            spawner = spawner_for(self.config, user)
            if options:
                spawner.user_options = options
                try:
                    await spawner.load_user_options()
                except Exception as e:   # a profile since removed from the configuration
                    log.warning("user %s: the options of their last start no longer apply (%s); using the "
                                "spawner's settings without a profile", user["name"], e)
                    spawner = spawner_for(self.config, user)
            self._built[key] = spawner
        return self._built[key]


def last_options(user: dict) -> dict:
    """The options (profile) of the user's most recently active server, {} when none."""
    servers = sorted((user.get("servers") or {}).values(), key=lambda s: s.get("last_activity") or "", reverse=True)
    return next((s["user_options"] for s in servers if s.get("user_options")), {})


def parse_time(text: str | None) -> datetime.datetime | None:
    """The hub's and Kubernetes' UTC timestamps (``…Z``) as aware datetimes."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def saved_ref(user: dict) -> Ref | None:
    """The user's vCluster as saved in a server's spawner state (the hub API shows it with
    ``admin:server_state``)."""
    for server in (user.get("servers") or {}).values():
        saved = (server.get("state") or {}).get("vcluster")
        if saved:
            return Ref(saved["namespace"], saved["name"])
    return None


def active_servers(user: dict) -> dict[str, dict]:
    """Servers that run or are starting/stopping (the hub's own notion of active)."""
    return {name: s for name, s in (user.get("servers") or {}).items() if s.get("ready") or s.get("pending")}


class HubAPI:
    """The hub REST API with this service's token (``JUPYTERHUB_API_TOKEN``/``_URL``, which the
    hub sets for the services it manages)."""

    def __init__(self, url: str | None = None, token: str | None = None):
        self.url = (url or os.environ["JUPYTERHUB_API_URL"]).rstrip("/")
        self._token = token or os.environ["JUPYTERHUB_API_TOKEN"]
        self._http: aiohttp.ClientSession | None = None

    async def request(self, method: str, path: str, **kwargs):
        if self._http is None:
            self._http = aiohttp.ClientSession(headers={"Authorization": f"token {self._token}"},
                                               timeout=aiohttp.ClientTimeout(total=60))
        async with self._http.request(method, self.url + path, **kwargs) as r:
            if r.status == 404:
                return None
            r.raise_for_status()
            return await r.json() if r.content_type == "application/json" else None

    async def users(self) -> list[dict]:
        """Every user with every server, stopped ones included (paginated)."""
        users, offset = [], 0
        while True:
            page = await self.request("GET", f"/users?include_stopped_servers=1&offset={offset}&limit=200",
                                      headers={"Accept": "application/jupyterhub-pagination+json"})
            items = page["items"] if isinstance(page, dict) else page
            users += items
            nxt = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not nxt:
                return users
            offset = nxt["offset"]

    async def user(self, name: str) -> dict | None:
        return await self.request("GET", f"/users/{quote(name, safe='')}?include_stopped_servers=1")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

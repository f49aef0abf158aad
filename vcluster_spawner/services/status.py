"""Status page: every user's vCluster at a glance (a hub-managed service with hub OAuth).

A user sees their own vCluster, an admin everyone's: state (running, asleep, provisioning,
absent, error) and since when, servers, resource requests, age, and a download of the user's
external kubeconfig (host Secret ``kubeconfig_secret_template``, when it exists). Above the
table, users read their own cluster in sentences (guidance.py, as on the hub's pages): what to
do now (start, wake, wait), how to use kubectl from the notebook's terminal, what survives a
stop and when the idle policy acts next. Admins can sleep, wake and delete a vCluster, each after a confirmation page;
sleep and delete are refused while the user has an active server (stop it in the admin panel:
the spawner then applies its own stop action).

Run by the hub (see jupyterhub_config.d/50-status-service.py)::

    python -m vcluster_spawner.services.status --hub-config=/etc/jupyterhub/jupyterhub_config.py
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import secrets
import sys
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Integer, Unicode

from ..gate import Directory, Found
from ..guidance import guidance
from ..hubpages import policy_of
from ..pool import WarmPool
from ..vcluster import Ref, State, Status, Superseded
from . import pages
from .common import HubAPI, HubService, Spawners, active_servers, load_hub_config, parse_time, stop_signal
from .inspect import VClusterView, inspect, read_kubeconfig
from .warmpool import POOL_USER, PoolView, pool_specs, pool_views, prometheus_text

ACTIONS = ("sleep", "wake", "delete")


class StatusService(HubService):
    name = "vcluster-status"
    description = __doc__

    kubeconfig_secret_template = Unicode(
        "vc-{name}-external", config=True,
        help="""Host Secret, in the user's vCluster namespace, holding the kubeconfig users download
        (for the vCluster's external address). Fields: {name}, {namespace} of the vCluster,
        {username}. Default: "vc-{name}-external" (vCluster's ``exportKubeConfig.additionalSecrets``
        as the spawner configures it).""")
    kubeconfig_secret_key = Unicode(
        "config", config=True, help="Key of the kubeconfig in that Secret. Default: \"config\".")
    admin_actions = Bool(True, config=True, help="Offer admins sleep, wake and delete. Default: True.")
    concurrency = Integer(
        8, config=True, help="At most this many vClusters are inspected at once for one page. Default: 8.")

    aliases = {"hub-config": "StatusService.hub_config", "log-level": "Application.log_level"}

    def initialize(self, argv=None):
        super().initialize(argv)
        config = self.config_of_hub = load_hub_config(self.hub_config)
        self.spawners = Spawners(config)
        self._pool_specs: list | None = None
        self.hub_services = list(config.JupyterHub.get("services", []))   # the idle policy's source
        self.hub = HubAPI()
        self.prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/vcluster-status/")
        self.hub_home = os.environ.get("JUPYTERHUB_BASE_URL", "/") + "hub/home"
        self.hub_spawn = os.environ.get("JUPYTERHUB_BASE_URL", "/") + "hub/spawn"

    async def lookup(self, user: dict, directory: Directory | None = None) -> tuple[object, Found]:
        """(spawner, the ownership gate's answer) for a hub user model (a never-started spawner:
        traits, names, ``lifecycle``). Nothing of a vCluster the gate does not find the user's
        is read or shown (``directory``: the admin view's one list of namespaces)."""
        spawner = await self.spawners(user)
        return spawner, await spawner.lifecycle.resolve(directory)

    async def pools(self) -> list[PoolView]:
        """The warm pools as their members show them (one namespace list)."""
        if self._pool_specs is None:
            self._pool_specs = await pool_specs(self.config_of_hub)
        if not self._pool_specs:
            return []
        members, _ = await WarmPool(self._pool_specs[0].settings.ops).inventory()
        return pool_views(self._pool_specs, members, datetime.datetime.now(datetime.timezone.utc))

    def kubeconfig_secret(self, username: str, ref) -> str:
        return self.kubeconfig_secret_template.format(name=ref.name, namespace=ref.namespace, username=username)

    def make_app(self) -> web.Application:
        p = self.prefix
        return web.Application([
            (p, IndexHandler),
            (p + "oauth_callback", HubOAuthCallbackHandler),
            (p + r"users/([^/]+)/kubeconfig", KubeconfigHandler),
            (p + r"users/([^/]+)/(" + "|".join(ACTIONS) + ")", ActionHandler),
            (p + "metrics", MetricsHandler),
        ], service=self, cookie_secret=secrets.token_bytes(32), xsrf_cookies=True,
            login_url=p + "oauth_callback")   # unused: HubOAuth redirects to the hub's login

    async def run(self) -> None:
        url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
        server = HTTPServer(self.make_app(), xheaders=True)
        server.listen(url.port, url.hostname)
        self.log.info("status page on %s%s", url.geturl(), self.prefix)
        try:
            await stop_signal().wait()   # until the hub stops the service
        finally:
            server.stop()
            await self.hub.close()



class BaseHandler(HubOAuthenticated, web.RequestHandler):
    @property
    def service(self) -> StatusService:
        return self.settings["service"]

    async def prepare(self):
        # authenticate asynchronously here: HubAuthenticated.get_current_user would otherwise
        # make a blocking request to the hub on the event loop
        model = await self.hub_auth.get_user(self, sync=False)
        try:
            self._hub_auth_user_cache = self.check_hub_user(model) if model else None
        except UserNotAllowed:
            raise web.HTTPError(403, "not allowed") from None
        if self._hub_auth_user_cache is None:
            # not logged in: start the OAuth dance (HubOAuth redirects to the hub's login)
            self.redirect(self.get_login_url())
            return
        self.username = self._hub_auth_user_cache["name"]
        me = await self.service.hub.user(self.username)
        self.is_admin = bool(me and me.get("admin"))

    async def target(self, username: str) -> dict:
        """The hub model of ``username``, if the current user may see it (self, or an admin)."""
        if username != self.username and not self.is_admin:
            raise web.HTTPError(403, "you can see your own virtual cluster only")
        user = await self.service.hub.user(username)
        if user is None:
            raise web.HTTPError(404, "no such user")
        return user

    def take_flash(self) -> tuple[str, bool]:
        """The outcome of the last action (a signed cookie this service set: a link cannot put
        words on the page), shown once."""
        cookie = self.get_signed_cookie("flash", max_age_days=1)
        if not cookie:
            return "", False
        self.clear_cookie("flash", path=self.service.prefix)
        flash = json.loads(cookie)
        return flash["message"], flash["error"]

    def render_page(self, title: str, body: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(pages.page(title, body, self.username, self.service.hub_home))

    def write_error(self, status_code, **kwargs):
        reason = self._reason
        if "exc_info" in kwargs and isinstance(kwargs["exc_info"][1], web.HTTPError):
            reason = kwargs["exc_info"][1].log_message or reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(pages.page(f"{status_code}", f"<div class='flash err'>{pages.escape(reason)}</div>",
                               getattr(self, "username", ""), self.service.hub_home))


class IndexHandler(BaseHandler):
    async def get(self):
        service = self.service
        users = await service.hub.users() if self.is_admin else [await self.target(self.username)]
        limit = asyncio.Semaphore(service.concurrency)
        # the admin view: one list of namespaces for every row
        directory = await Directory.read((await service.spawners(POOL_USER)).ops) if self.is_admin else None

        guides: list[str] = []

        async def one(user):
            async with limit:
                spawner, found = await service.lookup(user, directory)
                ref = found.ref or Ref("-", "-")
                view = await inspect(spawner.ops, ref) if found.owned else VClusterView(ref, "absent")
                config = await read_kubeconfig(spawner.ops, ref, service.kubeconfig_secret(user["name"], ref),
                                               service.kubeconfig_secret_key) if found.owned else None
                if user["name"] == self.username:   # the sentences the hub's pages show too
                    told = guidance(ref.name, view.state, policy_of(spawner, service.hub_services),
                                    now=datetime.datetime.now(datetime.timezone.utc), since=view.since,
                                    detail=view.detail, last_activity=parse_time(user.get("last_activity")),
                                    server_active=bool(active_servers(user)))
                    download = f"{service.prefix}users/{quote(user['name'], safe='')}/kubeconfig" if config else None
                    guides.append(pages.guide(told, service.hub_spawn, download))
                return pages.row(user["name"], view, user.get("servers") or {}, service.prefix,
                                 self.is_admin and service.admin_actions, config is not None)
        rows = await asyncio.gather(*(one(u) for u in sorted(users, key=lambda u: u["name"])))
        flash, error = self.take_flash()
        title = "Virtual clusters" if self.is_admin else "Your virtual cluster"
        pools = pages.pools(await service.pools()) if self.is_admin else ""
        self.render_page(title, "".join(guides) + pages.table(rows, self.is_admin and service.admin_actions, flash,
                                                             error=error) + pools)


class MetricsHandler(BaseHandler):
    """The warm pools' gauges for Prometheus (admins; a scraper sends an admin's API token
    with ``Authorization: token ...``); the hub's own ``/hub/metrics`` has the spawner's counters."""

    async def get(self):
        if not self.is_admin:
            raise web.HTTPError(403, "only admins may read the metrics")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(prometheus_text(await self.service.pools()))


class KubeconfigHandler(BaseHandler):
    async def get(self, username):
        user = await self.target(username)
        spawner, found = await self.service.lookup(user)
        config = None
        if found.owned:   # never a Secret of a namespace the gate does not find the user's
            config = await read_kubeconfig(spawner.ops, found.ref, self.service.kubeconfig_secret(username, found.ref),
                                           self.service.kubeconfig_secret_key)
        if config is None:
            self.render_page("Kubeconfig", "<div class='flash err'>The kubeconfig of this virtual cluster is "
                             "not available for download (the virtual cluster is absent, or exports none for an "
                             "outside address). In your notebook's terminal, kubectl works as it is: KUBECONFIG "
                             "is set there.</div>", 404)
            return
        self.set_header("Content-Type", "application/yaml")
        self.set_header("Content-Disposition", f'attachment; filename="kubeconfig-{quote(username, safe="")}.yaml"')
        self.set_header("Cache-Control", "no-store")
        self.finish(config)


class ActionHandler(BaseHandler):
    async def _prepare_action(self, username):
        if not (self.is_admin and self.service.admin_actions):
            raise web.HTTPError(403, "only admins may change virtual clusters")
        user = await self.target(username)
        spawner, found = await self.service.lookup(user)
        if not found.owned:
            raise web.HTTPError(404, f"{username} has no virtual cluster")
        return user, spawner, found.ref

    async def get(self, username, action):
        user, spawner, ref = await self._prepare_action(username)
        view = await inspect(spawner.ops, ref)
        self.render_page("Confirm", pages.confirm(username, action, view, self.service.prefix,
                                                  self.xsrf_token.decode()))

    async def post(self, username, action):
        user, spawner, ref = await self._prepare_action(username)
        log = self.service.log
        if action in ("sleep", "delete") and active_servers(user):
            self._back(f"{username} has active servers: stop them in the admin panel first", error=True)
            return
        # the vCluster as the admin saw it on the confirmation page: if a start claimed it
        # since, a sleep or delete does nothing (lifecycle.py)
        seen = Status(State.RUNNING, claimed=self.get_body_argument("claimed", "") or None)
        log.info("admin %s: %s vCluster %s of %s", self.username, action, ref, username)
        try:
            if action == "sleep":
                await spawner.lifecycle.sleep(decided_on=seen)
            elif action == "wake":
                await spawner.lifecycle.wake()
            else:
                await spawner.lifecycle.delete(decided_on=seen)
        except Superseded:
            self._back(f"{action} of {ref}: not done, the virtual cluster changed since you looked "
                       "(a server started, say); look again", error=True)
            return
        except Exception as e:
            log.error("admin %s: %s of %s failed: %s", self.username, action, ref, e)
            self._back(f"{action} of {ref} failed: {e}", error=True)
            return
        finally:
            await spawner._close_virtual()
        self._back(f"{action}: done for {ref}")

    def _back(self, message: str, error: bool = False) -> None:
        self.set_signed_cookie("flash", json.dumps({"message": message, "error": error}), expires_days=None,
                               path=self.service.prefix, httponly=True, samesite="Strict")
        self.redirect(self.service.prefix)


if __name__ == "__main__":
    sys.exit(StatusService.main())

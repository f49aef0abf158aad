"""A real JupyterHub (with its real configurable-http-proxy) as a subprocess, for tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote as url_quote

import aiohttp
import yarl

from localcluster import ClusterState
from localcluster.processes import die_with_parent, free_port, wait_for

from .vclusters import vcluster_chart

ROOT = Path(__file__).resolve().parent.parent
CONFIG_D = ROOT / "jupyterhub_config.d"
NOTEBOOK_IMAGE = "quay.io/jupyterhub/k8s-singleuser-sample:4.1.0"


def quote(name: str) -> str:
    """A user or server name in an API path, escaped as the hub escapes it."""
    return url_quote(name, safe="@~")


def find_chp() -> str:
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vcluster-spawner" / "node"
    for candidate in sorted(cache.glob("chp-*/node_modules/.bin/configurable-http-proxy")):
        return str(candidate)
    raise FileNotFoundError("configurable-http-proxy not found: run `make chp` (make test does)")



def _hub_child() -> None:
    """The hub's signal dispositions as a service manager gives them: a test session started as a
    background job ignores SIGINT, the hub's services would inherit that, and the hub stops
    them with SIGINT (third-party ones, like the idle culler, then wait out its timeouts)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    die_with_parent()


class Hub:
    """``jupyterhub`` with VClusterSpawner against the local cluster; ``spawner_config`` is
    Python appended to the generated jupyterhub_config.py."""

    def __init__(self, workdir: Path, cluster: ClusterState, spawner_config: str = "", *, restart_of: Hub | None = None,
                 snippets: tuple[str, ...] = (), kubeconfig: Path | None = None):
        """``restart_of``: a stopped hub whose database, ports and token this one takes over.
        ``snippets``: files of jupyterhub_config.d/ loaded after ``spawner_config`` (as the chart
        loads them after its own settings). ``kubeconfig``: the hub's (and its helm's) identity
        on the host; default: cluster admin. The spawner installs upstream's vCluster chart,
        ``vcluster_chart()``, on either cluster."""
        self.snippets = snippets
        # a real control plane starts in 20-40 s alone, several at once on 2 cores take minutes
        self.start_timeout = 600
        self.workdir = workdir
        self.cluster = cluster
        self.kubeconfig = kubeconfig or (restart_of.kubeconfig if restart_of else cluster.admin_kubeconfig)
        if restart_of:
            self.token, self.port = restart_of.token, restart_of.port
            self.hub_port, self.proxy_api_port = restart_of.hub_port, restart_of.proxy_api_port
        else:
            self.token = secrets.token_hex(16)
            self.port, self.hub_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spawner_config = spawner_config
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "jupyterhub.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(textwrap.dedent(f"""
            c = get_config()  # noqa
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.command = [{find_chp()!r}]
            c.JupyterHub.db_url = "sqlite:///{self.workdir}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret_file = "{self.workdir}/cookie_secret"
            c.JupyterHub.pid_file = "{self.workdir}/jupyterhub.pid"
            c.JupyterHub.cleanup_servers = False
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.allow_named_servers = True
            c.JupyterHub.services = [{{"name": "test", "api_token": {self.token!r}}}]
            c.JupyterHub.load_roles = [{{"name": "test-admin", "services": ["test"], "scopes": [
                "admin:users", "admin:servers", "access:servers", "list:users", "read:users", "read:metrics"]}}]
            c.JupyterHub.spawner_class = "vcluster"
            c.VClusterSpawner.vcluster_chart = {str(vcluster_chart())!r}
            c.VClusterSpawner.vcluster_api_url_template = "https://{{cluster_ip}}:443"
            c.VClusterSpawner.helm_binary = {str(self.cluster.binaries / 'helm')!r}
            c.VClusterSpawner.image = {NOTEBOOK_IMAGE!r}
            c.VClusterSpawner.sleep_grace_period = 0
            c.VClusterSpawner.home_storage_class = "local-rwx"
            c.VClusterSpawner.user_kubeconfig_server_template = "https://{{cluster_ip}}:443"
            c.VClusterSpawner.start_timeout = {self.start_timeout}
            c.VClusterSpawner.http_timeout = 90
        """) + textwrap.dedent(self.spawner_config)
            + (f"\nfrom vcluster_spawner.hubconfig import load_config_d\n"
               f"load_config_d(c, {str(CONFIG_D)!r}, {tuple(self.snippets)!r})\n" if self.snippets else ""))
        return config

    async def start(self) -> Hub:
        config = self.write_config()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "HELM_CACHE_HOME": str(self.workdir / "helm-cache"),
               "HELM_CONFIG_HOME": str(self.workdir / "helm-config"),
               "HELM_DATA_HOME": str(self.workdir / "helm-data")}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config), "--debug"], cwd=self.workdir, env=env,
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_hub_child)

        async def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyterhub exited:\n{self.log_tail()}")
            status, _ = await self.api("GET", "/")
            return status == 200
        await wait_for(up, timeout=60, what="JupyterHub API")
        return self

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 30)
        # a killed hub leaves its proxy behind, as in production; the next hub reuses the port
        if kill:
            subprocess.run(["pkill", "-f", f"--api-port {self.proxy_api_port}"], check=False)

    async def request(self, method: str, url: str, body=None, timeout: float = 60) -> tuple[int, object]:
        """``url`` is sent as it is (already escaped, as the hub gives user URLs)."""
        async with aiohttp.ClientSession() as http:
            async with http.request(method, yarl.URL(url, encoded=True), json=body,
                                    headers={"Authorization": f"token {self.token}"}, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                text = await r.text()
                try:
                    return r.status, json.loads(text) if text else None
                except json.JSONDecodeError:
                    return r.status, text

    async def api(self, method: str, path: str, body=None, timeout: float = 60):
        return await self.request(method, f"{self.url}/hub/api{path}", body, timeout)

    async def add_user(self, name: str) -> None:
        status, body = await self.api("POST", f"/users/{quote(name)}")
        assert status in (201, 409), body

    def server_path(self, user: str, server: str = "") -> str:
        path = f"/users/{quote(user)}"
        return f"{path}/servers/{quote(server)}" if server else f"{path}/server"

    async def start_server(self, user: str, server: str = "", options: dict | None = None,
                           timeout: float = 300) -> dict:
        """Start and wait until ready (or failed); returns the progress events seen. The
        progress stream is read while the spawn is pending, as the spawn page does (the
        spawner replays its phases from the beginning to a late reader)."""
        post = asyncio.ensure_future(self.api("POST", self.server_path(user, server), options or {}, timeout=timeout))

        async def pending_or_done():
            if post.done():
                return True
            model = await self.user_model(user)
            return (model.get("servers") or {}).get(server, {}).get("pending") == "spawn"
        await wait_for(pending_or_done, timeout=timeout, interval=0.05, what=f"spawn of {user}/{server!r} pending")
        events = await self.wait_progress(user, server, timeout)
        status, body = await post
        if status == 400 and not (events and events[-1].get("failed")):
            # failed before the hub's slow_spawn_timeout: the POST itself carries the message
            events.append({"failed": True, "message": body["message"]})
        assert status in (201, 202, 400), (status, body)
        return events

    async def wait_progress(self, user: str, server: str = "", timeout: float = 300) -> list[dict]:
        """Read the progress event stream until it ends (as the spawn page does)."""
        path = self.server_path(user, server) + "/progress"
        events = []
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"},
                                timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                async for line in r.content:
                    if line.startswith(b"data:"):
                        events.append(json.loads(line[5:]))
        return events

    async def stop_server(self, user: str, server: str = "", remove: bool = False, timeout: float = 120) -> None:
        status, body = await self.api("DELETE", self.server_path(user, server), {"remove": True} if remove else None)
        assert status in (202, 204), (status, body)

        async def stopped():
            _, model = await self.api("GET", f"/users/{quote(user)}")
            s = (model.get("servers") or {}).get(server)
            return s is None
        await wait_for(stopped, timeout=timeout, what=f"server {user}/{server!r} stopped")

    async def operator_cli(self, *args: str) -> str:
        """``python -m vcluster_spawner -f <this hub's config> ARGS``; returns its output."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vcluster_spawner", "-f", str(self.write_config()), *args,
            env={**os.environ, "KUBECONFIG": str(self.cluster.admin_kubeconfig)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        return out.decode()

    async def login(self, username: str) -> aiohttp.ClientSession:
        """A browser-like session logged in as ``username`` (DummyAuthenticator, any password);
        the caller closes it."""
        # the hub is addressed by IP: aiohttp keeps cookies for IP hosts only when "unsafe"
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with http.get(f"{self.url}/hub/login") as r:
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', await r.text()).group(1)
        async with http.post(f"{self.url}/hub/login", data={"username": username, "password": "x", "_xsrf": xsrf},
                             allow_redirects=False) as r:
            assert r.status == 302, (r.status, await r.text())
        return http

    async def user_model(self, user: str) -> dict:
        _, model = await self.api("GET", f"/users/{quote(user)}")
        return model

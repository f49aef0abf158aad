"""Server-rendered HTML of the status page (no JavaScript, escaped everywhere)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from html import escape
from urllib.parse import quote

from ..guidance import Guidance
from .inspect import VClusterView

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1f2328}
header{background:#24292f;color:#fff;padding:14px 28px;display:flex;justify-content:space-between;align-items:center}
header a{color:#c9d1d9;text-decoration:none;margin-left:18px}
main{padding:24px 28px;max-width:1200px}
h1{font-size:20px;margin:0}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de;border-radius:6px}
th,td{text-align:left;padding:10px 12px;border-bottom:1px solid #eaeef2;vertical-align:top;font-size:14px}
th{background:#f6f8fa;font-weight:600}
.state{display:inline-block;padding:2px 10px;border-radius:12px;font-size:12px;font-weight:600}
.running{background:#dafbe1;color:#116329}.asleep{background:#ddf4ff;color:#0550ae}
.provisioning{background:#fff8c5;color:#7d4e00}.absent{background:#eaeef2;color:#57606a}
.error{background:#ffebe9;color:#a40e26}
.muted{color:#57606a;font-size:12px}
form.inline{display:inline}
button,.button{border:1px solid #d0d7de;background:#f6f8fa;border-radius:6px;padding:3px 10px;font-size:13px;
  cursor:pointer;color:#24292f;text-decoration:none;margin-right:4px}
button.danger{color:#a40e26}
.box{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:20px;max-width:560px}
.flash{padding:10px 14px;border-radius:6px;margin-bottom:16px;background:#ddf4ff}
.flash.err{background:#ffebe9}
.guide{max-width:760px;margin-bottom:20px}.guide h2{font-size:17px;margin:0 0 8px}.guide h3{font-size:15px;margin:16px 0 4px}
.guide p{margin:4px 0;line-height:1.45}.guide.ephemeral{border-left:4px solid #bf8700}
@media (prefers-color-scheme: dark){
body{background:#0d1117;color:#e6edf3}header{background:#161b22}
table,.box{background:#161b22;border-color:#30363d}th{background:#21262d}th,td{border-color:#30363d}
.muted{color:#8b949e}button,.button{background:#21262d;border-color:#30363d;color:#e6edf3}
.flash{background:#0c2d6b}.flash.err{background:#5a1e24}a{color:#58a6ff}}
"""


def page(title: str, body: str, user: str, hub_home: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{STYLE}</style></head>"
            f"<body><header><h1>{escape(title)}</h1><nav><span>{escape(user)}</span>"
            f"<a href='{escape(hub_home)}'>Hub home</a></nav></header><main>{body}</main></body></html>")


def ago(when: datetime.datetime | None) -> str:
    if when is None:
        return ""
    seconds = int((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{max(seconds, 0)} s"


def _memory(value: Decimal) -> str:
    return f"{value / 2**20:.0f} Mi"


def _servers(servers: dict) -> str:
    if not servers:
        return "<span class=muted>none</span>"
    items = []
    for name, s in sorted(servers.items()):
        state = "pending " + s["pending"] if s.get("pending") else ("ready" if s.get("ready") else "stopped")
        items.append(f"{escape(name or 'default')}: {escape(state)}")
    return "<br>".join(items)


def row(username: str, view: VClusterView, servers: dict, prefix: str, admin: bool, kubeconfig: bool) -> str:
    """One user's table row; admin actions link to their confirmation pages."""
    user_path = f"{prefix}users/{quote(username, safe='')}"
    since = (f"<div class=muted title='{escape(view.since.isoformat())}'>since {ago(view.since)} ago</div>"
             if view.since else "")
    detail = f"<div class=muted>{escape(view.detail)}</div>" if view.detail else ""
    if view.woken_ahead and view.state in ("running", "provisioning"):
        detail += (f"<div class='muted woken-ahead'>woken ahead of a start (spawn page opened at "
                   f"{escape(view.woken_ahead)})</div>")
    requests = (f"{view.cpu_requests.normalize():f} CPU<br>{_memory(view.memory_requests)}"
                f"<div class=muted>{view.pods} pod(s)</div>") if view.state != "absent" else ""
    download = (f"<a class=button href='{user_path}/kubeconfig'>kubeconfig</a>" if kubeconfig
                else "<span class=muted>kubectl in the notebook's terminal</span>")
    actions = ""
    if admin:
        actions = "".join(
            f"<a class=button href='{user_path}/{a}'>{a}</a>"
            for a, allowed in (("wake", view.state == "asleep"),
                               ("sleep", view.state in ("running", "provisioning", "error")),
                               ("delete", view.state != "absent")) if allowed)
    return (f"<tr data-user='{escape(username)}'><td>{escape(username)}</td>"
            f"<td><code>{escape(str(view.ref))}</code></td>"
            f"<td><span class='state {view.state}'>{view.state}</span>{since}{detail}</td>"
            f"<td>{_servers(servers)}</td><td>{requests}</td><td>{ago(view.created)}</td>"
            f"<td>{download}</td>" + (f"<td>{actions}</td>" if admin else "") + "</tr>")


def guide(told: Guidance, spawn_url: str, download_url: str | None) -> str:
    """The user's own vCluster in sentences: where it stands, what to do now, how to reach it
    with kubectl, what survives a stop (guidance.py, as on the hub's pages)."""
    button = {"start": f"<p><a class=button href='{escape(spawn_url)}'>Start your server</a></p>",
              "wake": f"<p><a class=button href='{escape(spawn_url)}'>Start your server (wakes it)</a></p>",
              "wait": "<p><a class=button href=''>Look again</a></p>"}.get(told.action, "")
    download = (f"<p>From your own computer: <a href='{escape(download_url)}'>download its kubeconfig</a> "
                "and point <code>KUBECONFIG</code> at it.</p>" if download_url else "")
    policy = f"<p class=next-policy>{escape(told.next_policy)}</p>" if told.next_policy else ""
    return (f"<section class='box guide{' ephemeral' if told.ephemeral else ''}' aria-labelledby=guide-heading "
            f"data-state='{escape(told.state)}'>"
            f"<h2 id=guide-heading>{escape(told.headline)}</h2>"
            f"<p class=next-step>{escape(told.next_step)}</p>{button}"
            f"<h3>Using kubectl</h3><p>In your notebook, open a terminal (File → New → Terminal): "
            f"<code>kubectl</code> and other Kubernetes tools reach your virtual cluster as they are "
            f"(<code>KUBECONFIG</code> is set; its context is <code>{escape(told.cluster)}</code>).</p>{download}"
            f"<h3>What survives a stop</h3><p class=on-stop>{escape(told.on_stop)}</p>"
            f"<p class=survival>{escape(told.survival)}</p>{policy}</section>")


def table(rows: list[str], admin: bool, flash: str = "", error: bool = False) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("User", "vCluster", "State", "Servers", "Requests", "Age",
                                              "Access") + (("Actions",) if admin else ()))
    note = f"<div class='flash{' err' if error else ''}'>{escape(flash)}</div>" if flash else ""
    return f"{note}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def pools(views: list) -> str:
    """The warm pools (services/warmpool.py ``PoolView``), for admins."""
    if not views:
        return ""
    rows = "".join(
        f"<tr data-pool='{escape(v.profile or 'default')}'><td>{escape(v.profile or '(no profile)')}</td>"
        f"<td><code>{escape(v.key)}</code></td><td>{v.size}</td><td class=ready>{v.ready}</td>"
        f"<td>{v.starting}</td><td>{'' if v.oldest_ready_age is None else f'{v.oldest_ready_age:.0f} s'}</td></tr>"
        for v in views)
    return ("<h2>Warm pools</h2><table class=pools><thead><tr><th>Profile</th><th>Key</th><th>Size</th>"
            f"<th>Ready</th><th>Starting</th><th>Oldest ready</th></tr></thead><tbody>{rows}</tbody></table>")


def confirm(username: str, action: str, view: VClusterView, prefix: str, xsrf: str) -> str:
    consequences = {
        "sleep": "Its control plane stops and every pod in it is deleted; its state is kept.",
        "wake": "Its control plane starts again.",
        "delete": "The vCluster and everything inside it are deleted. The user's home storage is kept.",
    }[action]
    path = f"{prefix}users/{quote(username, safe='')}/{action}"
    return (f"<div class=box><p><b>{escape(action.capitalize())}</b> the vCluster "
            f"<code>{escape(str(view.ref))}</code> of <b>{escape(username)}</b> "
            f"(now <span class='state {view.state}'>{view.state}</span>)?</p><p>{consequences}</p>"
            f"<form method=post action='{path}'><input type=hidden name=_xsrf value='{escape(xsrf)}'>"
            f"<input type=hidden name=claimed value='{escape(view.claimed or '')}'>"
            f"<button class='{'danger' if action == 'delete' else ''}' type=submit>Yes, {escape(action)}</button>"
            f"<a class=button href='{prefix}'>Cancel</a></form></div>")

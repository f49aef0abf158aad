"""What a user is told about their vCluster: its state, what stopping the server does to it,
what survives, when the idle policy acts next, and what to do now (pure functions).

The hub's home, spawn and progress pages (``hubpages.py`` and ``templates/``), the start's
progress stream and the status page all say it with these sentences, so a user reads the same
thing wherever they look (docs/hub.md, "What users are told").
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

STATES = ("running", "provisioning", "asleep", "absent", "error")   # as services/inspect.py reports them


@dataclass(frozen=True)
class Policy:
    """The operator's settings as they bear on one user."""

    mode: str                                  # "static" | "dynamic" (VClusterSpawner.vcluster_mode)
    stop_action: str                           # "sleep" | "delete" | "none", the effective one
    home_mount_path: str | None = None         # None: no home storage
    s3: bool = False                           # the notebook is given S3 credentials
    cull_timeout: float | None = None          # seconds idle before the culler stops a server; None: no culler
    delete_asleep_after: float | None = None   # seconds asleep before the lifecycle service deletes it; None: never
    survival_notice: str = ""                  # the operator's own wording; fields {home}, {cluster}

    @property
    def ephemeral(self) -> bool:
        """A stop deletes the cluster: nothing in it but what lives outside survives."""
        return self.stop_action == "delete"


@dataclass(frozen=True)
class Guidance:
    cluster: str          # the vCluster's name, as the status page and the kubeconfig's context name it
    state: str            # one of STATES
    headline: str         # one sentence: the state
    on_stop: str          # what stopping the server does to the cluster
    survival: str         # what is kept and what is not
    next_policy: str      # when the idle policy acts next ("" when it never does)
    next_step: str        # what the user can do now
    action: str           # the page's button for it: "start", "wake", "wait" or "" (none)
    ephemeral: bool       # a stop deletes the cluster: the survival sentence is a warning
    since: datetime.datetime | None = None


def when(moment: datetime.datetime) -> str:
    """A moment as users read it: "2 Dec 14:02 UTC"."""
    return moment.astimezone(datetime.timezone.utc).strftime("%-d %b %H:%M UTC")


def duration(seconds: float) -> str:
    """"90 min", "2 h", "7 days": the largest unit that counts it whole, or at least twice."""
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if (seconds >= size and seconds % size == 0) or seconds >= 2 * size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''}"
    return f"{int(seconds)} s"


def _kept(policy: Policy) -> tuple[str, bool]:
    """What lives outside the cluster, and whether that is more than one thing (the verb's number)."""
    parts = ([f"your home directory ({policy.home_mount_path})"] if policy.home_mount_path else []) + (
        ["your S3 storage"] if policy.s3 else [])
    return " and ".join(parts), len(parts) > 1


def survival(policy: Policy, cluster: str) -> str:
    """One plain sentence on what survives a stop (the operator's wording when they set one)."""
    if policy.survival_notice:
        return policy.survival_notice.format(home=policy.home_mount_path or "", cluster=cluster)
    kept, plural = _kept(policy)
    if policy.ephemeral:
        if not kept:
            return (f"Nothing in {cluster} survives a stop: keep your work outside it (for example in a "
                    "git repository).")
        return (f"Only {kept} survive{'' if plural else 's'} a stop: everything else you create in "
                f"{cluster} (pods, services, secrets, installed charts, files outside your home) is deleted.")
    sentence = "Your virtual cluster keeps everything in it while it is stopped or asleep"
    if policy.delete_asleep_after:
        sentence += (f", until it has been asleep for {duration(policy.delete_asleep_after)}: then it is deleted"
                     + (f" and only {kept} remain{'' if plural else 's'}" if kept else ""))
    elif kept:
        sentence += f"; {kept} {'are' if plural else 'is'} kept in any case"
    return sentence + "."


def on_stop(policy: Policy) -> str:
    return {"sleep": "Stopping your server puts your virtual cluster to sleep; it wakes when you start again.",
            "delete": "Stopping your server deletes your virtual cluster and everything in it.",
            "none": "Stopping your server leaves your virtual cluster running."}[policy.stop_action]


def _after_idle(policy: Policy) -> str:
    return {"sleep": "put to sleep", "delete": "deleted", "none": "left running"}[policy.stop_action]


def next_policy(state: str, policy: Policy, *, now: datetime.datetime, since: datetime.datetime | None,
                last_activity: datetime.datetime | None, server_active: bool) -> str:
    """When the idle policy will next act on the cluster, if it will."""
    if state in ("running", "provisioning") and server_active and policy.cull_timeout:
        if last_activity is not None:
            at = max(last_activity + datetime.timedelta(seconds=policy.cull_timeout), now)
            return (f"If your server stays idle, it is stopped at about {when(at)} and your virtual cluster is "
                    f"{_after_idle(policy)}.")
        return (f"After {duration(policy.cull_timeout)} without activity your server is stopped and your virtual "
                f"cluster is {_after_idle(policy)}.")
    if state == "asleep" and policy.delete_asleep_after:
        if since is not None:
            at = since + datetime.timedelta(seconds=policy.delete_asleep_after)
            return f"Unless you start your server before, your virtual cluster is deleted at about {when(at)}."
        return (f"Unless you start your server within {duration(policy.delete_asleep_after)}, your virtual cluster "
                "is deleted.")
    return ""


def headline(state: str, cluster: str, policy: Policy, since: datetime.datetime | None, detail: str = "") -> str:
    if state == "running":
        return f"Your virtual cluster {cluster} is running."
    if state == "provisioning":
        return f"Your virtual cluster {cluster} is starting."
    if state == "asleep":
        return f"Your virtual cluster {cluster} is asleep" + (f" since {when(since)}." if since else ".")
    if state == "absent":
        if policy.mode == "static":
            return f"Your virtual cluster {cluster} has not been set up yet."
        return f"You have no virtual cluster at the moment: starting your server creates {cluster}."
    return f"Your virtual cluster {cluster} has a problem" + (f": {detail.rstrip('.')}." if detail else ".")


def next_step(state: str, policy: Policy, server_active: bool, detail: str = "") -> str:
    if state == "absent":
        if policy.mode == "static":
            return "Ask the administrators to set it up; until then your server cannot start."
        return "Start your server to create it (it takes a little longer than a start that wakes one)."
    if state == "asleep":
        return "Start your server to wake it."
    if state == "provisioning":
        return "Wait: it is starting, and your server with it. This page shows it running when it is ready."
    if state == "running":
        if server_active:
            return ("Use it from your notebook's terminal: kubectl and other Kubernetes tools work there as they "
                    "are (KUBECONFIG is set).")
        return "Start your server to use it."
    return ("Stop and start your server; if that does not help, tell the administrators"
            + (f", quoting: {detail}" if detail else "."))


def action(state: str, policy: Policy, server_active: bool) -> str:
    if state == "asleep":
        return "wake"
    if state == "provisioning":
        return "wait"
    if (state == "absent" and policy.mode == "dynamic") or (state == "running" and not server_active):
        return "start"
    return ""


def guidance(cluster: str, state: str, policy: Policy, *, now: datetime.datetime,
             since: datetime.datetime | None = None, detail: str = "",
             last_activity: datetime.datetime | None = None, server_active: bool = False) -> Guidance:
    """Everything a user is told about their vCluster in ``state`` (one of STATES)."""
    if state not in STATES:
        raise ValueError(f"unknown vCluster state {state!r}; one of {', '.join(STATES)}")
    return Guidance(
        cluster=cluster, state=state, since=since, ephemeral=policy.ephemeral,
        headline=headline(state, cluster, policy, since, detail),
        on_stop=on_stop(policy),
        survival=survival(policy, cluster),
        next_policy=next_policy(state, policy, now=now, since=since, last_activity=last_activity,
                                server_active=server_active),
        next_step=next_step(state, policy, server_active, detail),
        action=action(state, policy, server_active))

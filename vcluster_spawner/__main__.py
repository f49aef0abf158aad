"""Operator command line: manage users' vClusters with the hub's own configuration.

    python -m vcluster_spawner [-f jupyterhub_config.py] provision USER... [--asleep]
    python -m vcluster_spawner [-f jupyterhub_config.py] status|sleep|wake|delete USER...
    python -m vcluster_spawner [-f jupyterhub_config.py] delete-home USER... --yes-delete-data
    python -m vcluster_spawner [-f jupyterhub_config.py] adopt USER...
    python -m vcluster_spawner [-f jupyterhub_config.py] orphans

Every command finds a user's vCluster through the ownership gate (vcluster_spawner/gate.py):
the namespace that records the user as its owner, never one inferred from a name.

``provision`` pre-creates static-mode vClusters exactly as the spawner would (same names,
chart and values) and converges them to running, or with ``--asleep`` to asleep; re-running
it upgrades existing vClusters to the current values. ``delete`` removes a vCluster
as ``vcluster delete`` does (the user's home storage is not touched). ``delete-home`` is the
one command that deletes a user's home data: for a hub user, their vCluster and then their
home; for a user the hub no longer has (or without the hub), only the retired homes that
record the name, never a live one a newcomer with the name may have; each volume is handed
back to its provisioner with reclaim policy Delete. ``adopt`` records USER as the owner of the
namespace their name template gives when it records no owner (one made by an earlier version
of the spawner, or by an administrator for that user), or their name from before the hub lost
its database or before their removal: the handing over is this explicit command, never a
name alone; a namespace that records someone else, or a free warm pool member, is refused.
``orphans`` lists managed namespaces whose recorded owner is no longer a hub user (retired
ones included), for an administrator to act on.

Users are looked up in the hub (``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``, a token
with ``admin:users`` and ``admin:server_state``): an unknown user is refused, owners are
compared by name and the hub's creation time, and a user's vCluster is the one saved in a
server's state if it is still theirs. Without a hub to ask, users are known by name only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from traitlets.config import Config, PyFileConfigLoader

from .vcluster import NotOwned
from .watches import stop_host_watches


async def _hub_user(hub, username: str, *, removed_ok: bool = False) -> dict:
    if hub is None:
        return {"name": username}
    user = await hub.user(username)
    if user is None:
        if removed_ok:   # delete-home of a removed user: their retired homes only
            return {"name": username, "removed": True}
        raise LookupError(f"{username!r} is not a user of the hub at {hub.url}")
    return user


async def _run(args) -> int:
    from .services.common import HubAPI, spawner_for

    config = PyFileConfigLoader(args.config).load_config() if args.config else Config()
    hub = HubAPI() if os.environ.get("JUPYTERHUB_API_URL") and os.environ.get("JUPYTERHUB_API_TOKEN") else None
    if args.command == "orphans":
        try:
            return await _orphans(config, hub)
        finally:
            await stop_host_watches()
    failures = 0
    try:
        for username in args.users:
            spawner = None
            try:
                user = await _hub_user(hub, username, removed_ok=args.command == "delete-home")
                spawner = spawner_for(config, user)
                failures += not await _command(args, spawner, removed=user.get("removed", hub is None))
            except Exception as e:
                failures += 1
                print(f"{username}: {args.command} failed: {e}", file=sys.stderr)
                if getattr(e, "detail", None):   # helm's own output says why
                    print(e.detail, file=sys.stderr)
            finally:
                if spawner is not None:
                    await spawner._close_virtual()
    finally:
        if hub is not None:
            await hub.close()
        await stop_host_watches()
    return 1 if failures else 0


async def _command(args, spawner, *, removed: bool) -> bool:
    """One user; every command finds the user's vCluster through the ownership gate (gate.py)."""
    username, lifecycle = spawner.user.name, spawner.lifecycle
    if args.command == "status":
        found = await lifecycle.resolve()
        if not found.owned:
            print(f"{username}: no virtual cluster of theirs" + (f" ({found.ref} would be made)" if found.ref else ""))
            return True
        status = await lifecycle.ops.status(found.ref)
        since = f" since {status.since}" if status.since else ""
        print(f"{username}: {found.ref} {status.state.value}{since}")
    elif args.command == "provision":
        await lifecycle.provision(spawner._virtual_client(), asleep=args.asleep,
                                  report=lambda _, message: print(f"{username}: {message}", flush=True))
        print(f"{username}: {lifecycle.ref} {'asleep' if args.asleep else 'running'}")
    elif args.command == "sleep":
        await lifecycle.sleep()
        print(f"{username}: {lifecycle.ref} asleep")
    elif args.command == "wake":
        await lifecycle.wake()
        print(f"{username}: {lifecycle.ref} waking")
    elif args.command == "delete":
        await lifecycle.delete()
        print(f"{username}: {lifecycle.ref} deleted")
    elif args.command == "adopt":
        ref = await _adopt(spawner)
        print(f"{username}: namespace {ref.namespace} now records {username!r} as its owner")
    elif args.command == "delete-home":
        if not args.yes_delete_data:
            raise SystemExit("delete-home deletes users' home data for good; add --yes-delete-data")
        for line in await _delete_homes(spawner, removed=removed):
            print(f"{username}: {line}")
    return True


async def _adopt(spawner):
    """Record the user as the owner of the namespace their name template gives: one that records
    no owner (an earlier version's, an administrator's), or this user's name from before the hub
    lost its database. Never a namespace that records someone else, nor a free warm pool member."""
    from .home import HOME_NAMESPACE_LABEL
    from .ownership import OWNER_ANNOTATION, OWNER_CREATED_ANNOTATION, REMOVED_OWNER_ANNOTATION, Owner
    from .pool import POOL_MEMBER
    from .vcluster import read_or_none

    ops, ref = spawner.ops, spawner.template_vcluster
    if ref is None:
        raise NotOwned("the name template needs the hub's user id; adopt needs a template without {userid}")
    namespace = await read_or_none(ops.core.read_namespace, ref.namespace)
    if namespace is None:
        raise NotOwned(f"namespace {ref.namespace} does not exist (provision creates it)")
    annotations, labels = namespace.metadata.annotations or {}, namespace.metadata.labels or {}
    recorded = Owner.recorded(annotations)
    if recorded is not None and recorded.name != spawner.owner.name:
        raise NotOwned(f"namespace {ref.namespace} belongs to {recorded.describe()}; not changed")
    if recorded is None and labels.get(POOL_MEMBER) == "true":
        raise NotOwned(f"namespace {ref.namespace} is a free warm pool member; it is nobody's to adopt")
    if REMOVED_OWNER_ANNOTATION in annotations:
        print(f"{spawner.owner.name}: namespace {ref.namespace} was retired: {annotations[REMOVED_OWNER_ANNOTATION]}")
    # the name only: the user's next start records which hub user it is (also after the hub
    # lost its database, when every user is new to it); the same for the user's home
    owner = {"metadata": {"annotations": {OWNER_ANNOTATION: spawner.owner.name, OWNER_CREATED_ANNOTATION: None,
                                          REMOVED_OWNER_ANNOTATION: None}}}
    await ops.core.patch_namespace(ref.namespace, owner)
    homes = await ops.core.list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}={ref.namespace}")
    for pv in homes.items:
        if (Owner.recorded(pv.metadata.annotations) or spawner.owner).name == spawner.owner.name:
            await ops.core.patch_persistent_volume(pv.metadata.name, owner)
    spawner.use_vcluster(ref)
    await spawner.lifecycle.ensure_namespace(create=False)   # the spawner's labels, Pod Security among them
    return ref


async def _delete_homes(spawner, *, removed: bool) -> list[str]:
    """``delete-home``: a hub user's own home (the one the gate finds theirs, after their
    vCluster), and the retired homes that record the name. A user the hub no longer has, or a
    command run without the hub: retired homes only, so a newcomer who has the name keeps theirs."""
    lifecycle, done = spawner.lifecycle, []
    if not removed:
        found = await lifecycle.resolve()
        if found.owned:
            await _namespace_settled(spawner, found.ref)
            await lifecycle.delete()
            volume = await spawner.homes.delete(spawner.home_spec, found.ref, spawner.owner, spawner.home_bind_timeout)
            if volume:
                done.append(f"home volume {volume} released for deletion")
    for pv in await spawner.homes.retired(spawner.owner):
        done.append(f"home volume {await _delete_retired(spawner, pv)} released for deletion")
    return done or ["no home volume found"]


async def _namespace_settled(spawner, ref) -> None:
    """Wait until the user's namespace is not being deleted (the user's removal deletes it)."""
    from .vcluster import poll_until, read_or_none

    async def settled():
        ns = await read_or_none(spawner.ops.core.read_namespace, ref.namespace)
        return ns is None or not ns.metadata.deletion_timestamp
    await poll_until(settled, spawner.home_bind_timeout, f"namespace {ref.namespace} is still being deleted")


async def _delete_retired(spawner, pv: dict) -> str:
    """A retired home is handed back to its provisioner through a namespace of its own, made
    for the deletion and removed afterwards: the namespace it was labelled for may be a
    newcomer's by now."""
    from .home import RETIRED_HOME_LABEL
    from .names import NAMESPACE_MAX, dns1035_label
    from .ownership import Owner, namespace_labels
    from .vcluster import Ref, ignoring

    name = dns1035_label(f"{pv['metadata']['labels'][RETIRED_HOME_LABEL]}-home-deletion", NAMESPACE_MAX)
    ref = Ref(name, name)
    await _namespace_settled(spawner, ref)   # a previous run's, being deleted
    # recorded for no hub user (no one's creation time is year 1): the gate never gives it to anyone
    nobody = Owner("vcluster-spawner/home-deletion", "0001-01-01T00:00:00Z")
    await spawner.ops.ensure_namespace(ref, nobody, namespace_labels(nobody, spawner.pod_security_level),
                                       create=True, hub_binding=spawner.hub_binding)
    try:
        return await spawner.homes.delete(spawner.home_spec, ref, spawner.owner, spawner.home_bind_timeout, pv=pv)
    finally:
        await ignoring(spawner.ops.core.delete_namespace(ref.namespace), 404)


async def _orphans(config, hub) -> int:
    """Managed namespaces whose recorded owner is not a user of the hub (or that record none,
    retired ones included), for an administrator to act on."""
    from .ownership import REMOVED_OWNER_ANNOTATION, Owner
    from .pool import POOL_MEMBER
    from .services.common import spawner_for
    from .services.warmpool import POOL_USER

    if hub is None:
        raise SystemExit("orphans needs the hub (JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN) to know its users")
    try:
        users = {u["name"]: u for u in await hub.users()}
        found = 0
        for metadata in await spawner_for(config, POOL_USER).ops.managed_namespaces():
            annotations, labels = metadata.get("annotations") or {}, metadata.get("labels") or {}
            recorded = Owner.recorded(annotations)
            if recorded is None and labels.get(POOL_MEMBER) == "true" and REMOVED_OWNER_ANNOTATION not in annotations:
                continue   # a free warm pool member: the keeper's
            user = users.get(recorded.name) if recorded else None
            if user is not None and Owner(user["name"], user.get("created") or "").owns(annotations):
                continue
            found += 1
            if REMOVED_OWNER_ANNOTATION in annotations:
                why = f"retired: {annotations[REMOVED_OWNER_ANNOTATION]}"
            elif recorded is None:
                why = "records no owner"
            else:
                why = f"records {recorded.describe()}, " + ("not a hub user" if user is None
                                                            else "a hub user created at another time")
            print(f"{metadata['name']}: {why}")
        print(f"{found} namespace(s) without a current owner: delete one (its vCluster first: helm uninstall) "
              "or hand it over with adopt")
        return 0
    finally:
        await hub.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcluster_spawner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-f", "--config", help="a jupyterhub_config.py holding the VClusterSpawner settings")
    parser.add_argument("command", choices=["provision", "status", "sleep", "wake", "delete", "delete-home", "adopt",
                                            "orphans"])
    parser.add_argument("users", nargs="*", metavar="USER", help="JupyterHub user names (none for orphans)")
    parser.add_argument("--asleep", action="store_true", help="provision: put the vCluster to sleep once ready")
    parser.add_argument("--yes-delete-data", action="store_true", help="delete-home: confirm deleting the data")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

"""Operator command line: manage users' vClusters with the hub's own configuration.

    python -m vcluster_spawner [-f jupyterhub_config.py] provision USER... [--asleep]
    python -m vcluster_spawner [-f jupyterhub_config.py] status|sleep|wake|delete USER...
    python -m vcluster_spawner [-f jupyterhub_config.py] delete-home USER... --yes-delete-data
    python -m vcluster_spawner [-f jupyterhub_config.py] adopt USER...

``provision`` pre-creates static-mode vClusters exactly as the spawner would (same names,
chart and values) and converges them to running, or with ``--asleep`` to asleep; re-running
it upgrades existing vClusters to the current values. ``delete`` removes a vCluster
as ``vcluster delete`` does (the user's home storage is not touched). ``delete-home`` is the
one command that deletes a user's home data: it deletes the vCluster first, then hands the
home volume back to its provisioner with reclaim policy Delete. ``adopt`` records USER as the
owner of an existing namespace that records no owner (one made by an earlier version of the
spawner, or by an administrator for that user): the spawner never takes over a namespace by
its name alone; a namespace that records someone else is refused.

Users are looked up in the hub (``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``, a token
with ``admin:users`` and ``admin:server_state``): an unknown user is refused, and a user's
vCluster is the one saved in a server's state. Without a hub to ask, users are known by name:
name templates that use ``{userid}`` then cannot be resolved and are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from traitlets.config import Config, PyFileConfigLoader

from .vcluster import NotOwned
from .watches import stop_host_watches


async def _hub_user(hub, username: str) -> dict:
    if hub is None:
        return {"name": username}
    user = await hub.user(username)
    if user is None:
        raise LookupError(f"{username!r} is not a user of the hub at {hub.url}")
    return user


async def _run(args) -> int:
    from .services.common import HubAPI, spawner_for

    config = PyFileConfigLoader(args.config).load_config() if args.config else Config()
    hub = HubAPI() if os.environ.get("JUPYTERHUB_API_URL") and os.environ.get("JUPYTERHUB_API_TOKEN") else None
    failures = 0
    try:
        for username in args.users:
            spawner = None
            try:
                spawner = spawner_for(config, await _hub_user(hub, username))
                failures += not await _command(args, spawner)
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


async def _command(args, spawner) -> bool:
    username, lifecycle = spawner.user.name, spawner.lifecycle
    ref = lifecycle.ref
    if args.command in ("sleep", "wake", "delete", "delete-home"):
        await lifecycle.check_owned()
    if args.command == "status":
        status = await lifecycle.ops.status(ref)
        since = f" since {status.since}" if status.since else ""
        print(f"{username}: {ref} {status.state.value}{since}")
    elif args.command == "provision":
        await lifecycle.provision(spawner._virtual_client(), asleep=args.asleep,
                                  report=lambda _, message: print(f"{username}: {message}", flush=True))
        print(f"{username}: {ref} {'asleep' if args.asleep else 'running'}")
    elif args.command == "sleep":
        await lifecycle.sleep()
        print(f"{username}: {ref} asleep")
    elif args.command == "wake":
        await lifecycle.wake()
        print(f"{username}: {ref} waking")
    elif args.command == "delete":
        await lifecycle.delete()
        print(f"{username}: {ref} deleted")
    elif args.command == "adopt":
        await _adopt(spawner, ref, lifecycle.ops)
        print(f"{username}: namespace {ref.namespace} now records {username!r} as its owner")
    elif args.command == "delete-home":
        if not args.yes_delete_data:
            raise SystemExit("delete-home deletes users' home data for good; add --yes-delete-data")
        await _namespace_settled(spawner, ref, lifecycle.ops)   # one being deleted with its user: gone first
        if await lifecycle.owned():   # else removed with its user: nothing to uninstall
            await lifecycle.delete()
        volume = await _delete_home(spawner, ref, lifecycle.ops)
        print(f"{username}: " + (f"home volume {volume} released for deletion" if volume else "no home volume found"))
    return True


async def _adopt(spawner, ref, ops) -> None:
    from .home import HOME_NAMESPACE_LABEL
    from .ownership import OWNER_ANNOTATION, OWNER_CREATED_ANNOTATION, Owner
    from .vcluster import read_or_none

    namespace = await read_or_none(ops.core.read_namespace, ref.namespace)
    if namespace is None:
        raise NotOwned(f"namespace {ref.namespace} does not exist (provision creates it)")
    recorded = Owner.recorded(namespace.metadata.annotations)
    if recorded is not None and recorded.name != spawner.owner.name:
        raise NotOwned(f"namespace {ref.namespace} belongs to {recorded.describe()}; not changed")
    # the name only: the user's next start records which hub user it is (also after the hub
    # lost its database, when every user is new to it); the same for the user's home
    owner = {"metadata": {"annotations": {OWNER_ANNOTATION: spawner.owner.name, OWNER_CREATED_ANNOTATION: None}}}
    await ops.core.patch_namespace(ref.namespace, owner)
    homes = await ops.core.list_persistent_volume(label_selector=f"{HOME_NAMESPACE_LABEL}={ref.namespace}")
    for pv in homes.items:
        if (Owner.recorded(pv.metadata.annotations) or spawner.owner).name == spawner.owner.name:
            await ops.core.patch_persistent_volume(pv.metadata.name, owner)
    await spawner.lifecycle.ensure_namespace(create=False)   # the spawner's labels, Pod Security among them


async def _namespace_settled(spawner, ref, ops) -> None:
    """Wait until the user's namespace is not being deleted (the user's removal deletes it)."""
    from .vcluster import poll_until, read_or_none

    async def settled():
        ns = await read_or_none(ops.core.read_namespace, ref.namespace)
        return ns is None or not ns.metadata.deletion_timestamp
    await poll_until(settled, spawner.home_bind_timeout, f"namespace {ref.namespace} is still being deleted")


async def _delete_home(spawner, ref, ops):
    """The release claim lives in the user's namespace; after the user's removal that namespace
    is gone: it is made again for the deletion and removed afterwards."""
    from .vcluster import ignoring, read_or_none

    existed = await read_or_none(ops.core.read_namespace, ref.namespace) is not None
    if not existed:
        await spawner.lifecycle.ensure_namespace(create=True)
    try:
        return await spawner.homes.delete(spawner.home_spec, ref, spawner.owner, spawner.home_bind_timeout)
    finally:
        if not existed:
            await ignoring(ops.core.delete_namespace(ref.namespace), 404)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcluster_spawner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-f", "--config", help="a jupyterhub_config.py holding the VClusterSpawner settings")
    parser.add_argument("command", choices=["provision", "status", "sleep", "wake", "delete", "delete-home", "adopt"])
    parser.add_argument("users", nargs="+", metavar="USER", help="JupyterHub user names")
    parser.add_argument("--asleep", action="store_true", help="provision: put the vCluster to sleep once ready")
    parser.add_argument("--yes-delete-data", action="store_true", help="delete-home: confirm deleting the data")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

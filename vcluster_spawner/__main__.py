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
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from types import SimpleNamespace

from traitlets.config import Config, PyFileConfigLoader

from .vcluster import NotOwned


def _spawner(config: Config, username: str):
    from .spawner import VClusterSpawner

    user = SimpleNamespace(name=username, id=0, url=f"/user/{username}/", spawners={})
    return VClusterSpawner(config=config, user=user, _mock=True)


async def _run(args) -> int:
    config = Config()
    if args.config:
        loader = PyFileConfigLoader(args.config)
        config = loader.load_config()
    failures = 0
    for username in args.users:
        spawner = _spawner(config, username)
        ref, ops = spawner.vcluster, spawner.ops
        try:
            if args.command in ("sleep", "wake", "delete", "delete-home") and \
                    await ops.owns_namespace(ref, spawner.owner) is False:
                raise NotOwned(f"namespace {ref.namespace} does not belong to {username!r}; left alone")
            if args.command == "status":
                status = await ops.status(ref)
                since = f" since {status.since}" if status.since else ""
                print(f"{username}: {ref} {status.state.value}{since}")
            elif args.command == "provision":
                await _provision(spawner, ref, ops, asleep=args.asleep)
                print(f"{username}: {ref} {'asleep' if args.asleep else 'running'}")
            elif args.command == "sleep":
                await ops.sleep(ref)
                print(f"{username}: {ref} asleep")
            elif args.command == "wake":
                await ops.wake(ref)
                print(f"{username}: {ref} waking")
            elif args.command == "delete":
                await ops.delete(ref)
                print(f"{username}: {ref} deleted")
            elif args.command == "adopt":
                await _adopt(spawner, ref, ops)
                print(f"{username}: namespace {ref.namespace} now records {username!r} as its owner")
            elif args.command == "delete-home":
                if not args.yes_delete_data:
                    raise SystemExit("delete-home deletes users' home data for good; add --yes-delete-data")
                await _namespace_settled(spawner, ref, ops)   # one being deleted with its user: gone first
                if await ops.owns_namespace(ref, spawner.owner):   # else removed with its user: nothing to uninstall
                    await ops.delete(ref)
                volume = await _delete_home(spawner, ref, ops)
                print(f"{username}: " + (f"home volume {volume} released for deletion" if volume
                                         else "no home volume found"))
        except Exception as e:
            failures += 1
            print(f"{username}: {args.command} failed: {e}", file=sys.stderr)
            if getattr(e, "detail", None):   # helm's own output says why
                print(e.detail, file=sys.stderr)
        finally:
            await spawner._close_virtual()
    return 1 if failures else 0


async def _provision(spawner, ref, ops, *, asleep: bool) -> None:
    """Install or upgrade, then converge to the state asked for: running, or asleep.

    ``helm upgrade`` restores the chart's replica count (its three-way merge undoes the
    pause's ``replicas: 0``; checked with helm 3.22), so an asleep vCluster comes back up:
    with ``asleep`` it is paused again at once, without it the pause annotations are cleared
    and it is waited for. A new vCluster runs until ready once before it sleeps, so its first
    wake finds it initialised."""
    from .vcluster import State

    name = spawner.user.name
    was_asleep = (await ops.status(ref)).state == State.ASLEEP
    print(f"{name}: {'upgrading' if was_asleep else 'installing'} {ref} ({spawner.chart})", flush=True)
    await spawner.ensure_namespace(create=True)
    await ops.apply_namespace_objects(ref, spawner.rendered_namespace_objects())
    await ops.install(ref, spawner.chart, spawner.effective_values())
    if was_asleep and asleep:
        await ops.sleep(ref)
        return
    if was_asleep:
        await ops.wake(ref)
    await ops.wait_ready(ref, spawner._virtual_client(), spawner.vcluster_ready_timeout,
                         lambda step: print(f"{name}: {step} ready", flush=True))
    if asleep:
        await ops.sleep(ref)


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
    await spawner.ensure_namespace(create=False)   # the spawner's labels, Pod Security among them


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
        await spawner.ensure_namespace(create=True)
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

"""Runs inside a freshly forked pod process: private mount namespace, bind mounts, exec.

Usage (by the local kubelet only): ``python -m localcluster.podexec SPEC.json``. The spec has
``argv``, ``env``, ``cwd``, ``mounts`` ([source, target, read_only]) and, for a pod with a
network namespace of its own, ``netns`` (its path). The mounts are only
visible to this process and its children: other pods and the host keep their own view.
Mount points that do not exist yet are created on the host file system, as empty
directories or files, because a bind mount needs a target.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

from localcluster import podnetns

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(
        _libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
        f"mount {source} -> {target}",
    )


def enter_private_mount_namespace() -> None:
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS) (the local kubelet must run as root)")
    # Without this, mounts made here would propagate back to the host's shared mounts.
    _mount(None, "/", MS_REC | MS_PRIVATE)


def bind(source: str, target: str) -> None:
    """``source``: a ``/proc/self/fd/N`` path of a source opened before the first mount (``main``)."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    _mount(source, target, MS_BIND | MS_REC)


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    enter_private_mount_namespace()
    if spec.get("netns"):   # the pod's own network namespace (localcluster/podnetns.py)
        podnetns.enter(spec["netns"])
    # Every source is opened before the first mount: a volume mounted at /tmp would otherwise
    # hide sources that live under /tmp (the cluster's state directory, often). The mount is
    # then made from the open descriptor's /proc/self/fd path, which the new mount cannot hide.
    mounts = [(os.open(source, os.O_PATH), target, read_only) for source, target, read_only in spec["mounts"]]
    # Deepest targets last, so a mount inside another mount is not hidden by it; read-only only
    # once all are made, as a mount point inside a read-only volume (vCluster's CoreDNS mounts
    # /etc/coredns/custom inside /etc/coredns) is made in it first.
    for fd, target, _ in sorted(mounts, key=lambda m: m[1].count("/")):
        bind(f"/proc/self/fd/{fd}", target)
        os.close(fd)
    for _, target, read_only in mounts:
        if read_only:
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
    cwd = spec.get("cwd") or "/"
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)
    argv, env = spec["argv"], spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        print(f"localcluster: executable {argv[0]!r} not found on PATH={env.get('PATH')}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1])

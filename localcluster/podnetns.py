"""A network namespace of its own for a pod whose programs bind fixed loopback ports.

Pods here are processes on one machine, each with a loopback address as its pod IP. That works
for programs that bind their pod IP, but not for one that binds fixed ports on 127.0.0.1 or on
0.0.0.0: the real vCluster binds 127.0.0.1:6443, :10257, :2381 and :10099 and its proxy
0.0.0.0:8443 (docs/real-vcluster.md), so a second vCluster, or any other pod serving 8443,
could not start. A pod whose image rule says ``network: own`` therefore gets a network
namespace (``ip netns``: only a loopback device, on which the whole of 127.0.0.0/8 is local,
its pod IP included), shared by all its containers, and two kinds of relay:

- in: a listener on the pod IP in the machine's namespace for each port the pod declares or
  probes, forwarding into the pod's namespace (probes, Services and other pods reach it as
  any pod);
- out: a listener on the host API's address inside the pod's namespace, forwarding to the host
  API (the only thing outside such a pod needs; other destinations are unreachable from it).

A socket belongs to the namespace it was created in, so relays create the inner socket in a
short-lived thread that enters the pod's namespace (``setns`` applies to the calling thread
only) and ends there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
log = logging.getLogger("localcluster.podnetns")
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def enter(path: str) -> None:
    """Move the calling thread (a process about to exec: all of it) into namespace ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


async def _inside(path: str, make: Callable[[], socket.socket]) -> socket.socket:
    """``make()`` run in a thread of its own that enters namespace ``path`` and then ends, so
    no thread is ever left, or reused, in a pod's namespace."""
    loop = asyncio.get_running_loop()
    made: asyncio.Future = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not made.done():
            outcome()

    def run() -> None:
        try:
            enter(path)
            sock = make()
        except BaseException as e:   # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, functools.partial(made.set_exception, e))
        else:
            loop.call_soon_threadsafe(settle, functools.partial(made.set_result, sock))
    threading.Thread(target=run, name=f"netns {path}", daemon=True).start()
    return await made


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(client: tuple[asyncio.StreamReader, asyncio.StreamWriter], connect) -> None:
    reader, writer = client
    try:
        up_reader, up_writer = await connect()
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


class PodNetwork:
    """One pod's namespace and its relays; ``create`` makes it, ``remove`` ends it."""

    def __init__(self, name: str, pod_ip: str):
        self.name = name
        self.path = f"{NETNS_DIR}/{name}"
        self.pod_ip = pod_ip
        self._servers: list[asyncio.Server] = []

    @classmethod
    async def create(cls, name: str, pod_ip: str, ports: list[int], host_api: tuple[str, int]) -> PodNetwork:
        net = cls(name, pod_ip)
        await _ip("netns", "add", name)
        try:
            await _ip("-n", name, "link", "set", "lo", "up")
            for port in sorted(set(ports)):
                net._servers.append(await asyncio.start_server(
                    lambda r, w, port=port: _splice((r, w), lambda: net._connect_inside(port)), pod_ip, port))
            listener = await _inside(net.path, lambda: socket.create_server(host_api))
            net._servers.append(await asyncio.start_server(
                lambda r, w: _splice((r, w), lambda: asyncio.open_connection(*host_api)), sock=listener))
        except BaseException:
            await net.remove()
            raise
        return net

    async def _connect_inside(self, port: int):
        def connect():
            sock = socket.create_connection((self.pod_ip, port), timeout=5)
            sock.setblocking(False)
            return sock
        return await asyncio.open_connection(sock=await _inside(self.path, connect))

    async def connectable(self, port: int) -> bool:
        """A TCP probe inside the pod's namespace (the relay in front of it always accepts)."""
        try:
            _, writer = await asyncio.wait_for(self._connect_inside(port), 1)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

    async def remove(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        with contextlib.suppress(RuntimeError):
            await _ip("netns", "delete", self.name)


async def _ip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")

"""A network namespace of its own for a pod whose programs bind fixed loopback ports.

Pods here are processes on one machine, each with a loopback address as its pod IP. That works
for programs that bind their pod IP, but not for one that binds fixed ports on 127.0.0.1 or on
0.0.0.0: the real vCluster binds 127.0.0.1:6443, :10257, :2381 and :10099 and its proxy
0.0.0.0:8443 (docs/real-vcluster.md), so a second vCluster, or any other pod serving 8443,
could not start. A pod whose image rule says ``network: own`` therefore gets a network
namespace (``ip netns``: only a loopback device, on which the whole of 127.0.0.0/8 is local,
its pod IP included), shared by all its containers, and two kinds of relay (TCP, or UDP for
DNS; ``relay.py``):

- in: a listener on the pod IP in the machine's namespace for each port the pod declares or
  probes or its image rule names, forwarding into the pod's namespace (probes, Services and
  other pods reach it as any pod);
- out: a listener inside the pod's namespace for each address outside the pod is told of (the
  host API, the cluster DNS, the Kubernetes API and nameservers its containers are given),
  forwarding to the same address in the machine's namespace; other destinations are
  unreachable from it.

A socket belongs to the namespace it was created in, so relays create the inner socket in a
short-lived thread that enters the pod's namespace (``setns`` applies to the calling thread
only) and ends there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import ipaddress
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable

from .relay import UdpRelay, splice, udp_socket_to

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


class PodNetwork:
    """One pod's namespace and its relays; ``create`` makes it, ``remove`` ends it."""

    def __init__(self, name: str, pod_ip: str):
        self.name = name
        self.path = f"{NETNS_DIR}/{name}"
        self.pod_ip = pod_ip
        self._servers: list[asyncio.Server | UdpRelay] = []

    @classmethod
    async def create(cls, name: str, pod_ip: str, inbound: set[tuple[int, str]],
                     outbound: set[tuple[str, int, str]]) -> PodNetwork:
        """``inbound``: (port, protocol) pairs served inside; ``outbound``: (address, port,
        protocol) the pod reaches outside. Protocol: ``TCP`` or ``UDP``."""
        net = cls(name, pod_ip)
        await _ip("netns", "add", name)
        try:
            await _ip("-n", name, "link", "set", "lo", "up")
            # 127.0.0.0/8 is local on lo already; an outside address (the node's nameserver) is
            # made local too, so its relay can listen there
            for host in sorted({host for host, _, _ in outbound if not ipaddress.ip_address(host).is_loopback}):
                await _ip("-n", name, "addr", "add", f"{host}/32", "dev", "lo")
            for port, protocol in sorted(inbound):
                await net._relay((pod_ip, port), protocol, listen_inside=False)
            for host, port, protocol in sorted(outbound):
                await net._relay((host, port), protocol, listen_inside=True)
        except BaseException:
            await net.remove()
            raise
        return net

    async def _relay(self, address: tuple[str, int], protocol: str, *, listen_inside: bool) -> None:
        """A listener on ``address`` on one side of the namespace boundary, forwarding to the
        same address on the other."""
        if protocol == "UDP":
            def listen():
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(address)
                return sock
            if listen_inside:
                self._servers.append(await UdpRelay.serve(
                    lambda: asyncio.to_thread(udp_socket_to, address), sock=await _inside(self.path, listen)))
            else:
                self._servers.append(await UdpRelay.serve(
                    lambda: _inside(self.path, lambda: udp_socket_to(address)), address=address))
        elif listen_inside:
            listener = await _inside(self.path, lambda: socket.create_server(address))
            self._servers.append(await asyncio.start_server(
                lambda r, w: splice(r, w, lambda: asyncio.open_connection(*address)), sock=listener))
        else:
            self._servers.append(await asyncio.start_server(
                lambda r, w: splice(r, w, lambda: self._connect_inside(address[1])), *address))

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

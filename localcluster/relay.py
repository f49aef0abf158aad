"""The relays the stand-in network is made of (the Service proxy, pods' own network namespaces).

TCP: each accepted connection is spliced to one the caller opens. UDP has no connections, so a
relay keeps, per client address, a socket of its own towards the upstream chosen for that
client, and sends the upstream's replies back from the address the client wrote to (what
kube-proxy's conntrack entries do for a UDP Service; DNS is the UDP user here). A client's
socket closes after ``UDP_IDLE_SECONDS`` without traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable

UDP_IDLE_SECONDS = 30.0

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


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


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connect: Connect) -> None:
    """Carries one accepted TCP connection to the one ``connect`` opens, both ways; a refused
    upstream closes the client's connection (as a rejected SYN would)."""
    try:
        up_reader, up_writer = await connect()
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


def udp_socket_to(address: tuple[str, int]) -> socket.socket:
    """A non-blocking UDP socket connected to ``address`` (made in the calling thread's network
    namespace)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, client: tuple[str, int]):
        self.relay, self.client = relay, client
        self.transport: asyncio.DatagramTransport | None = None
        self.last_used = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.last_used = time.monotonic()
        self.relay.reply(data, self.client)

    def error_received(self, exc: Exception) -> None:   # e.g. ICMP port unreachable: the client retries
        pass


class UdpRelay(asyncio.DatagramProtocol):
    """Listens on one UDP socket; ``upstream()`` makes the socket a new client's datagrams go to
    (``None``: nobody serves, the datagram is dropped)."""

    def __init__(self, upstream: Callable[[], Awaitable[socket.socket | None]]):
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple[str, int], asyncio.Future[_Upstream | None]] = {}
        self._reaper: asyncio.Task | None = None

    @classmethod
    async def serve(cls, upstream, *, sock: socket.socket | None = None,
                    address: tuple[str, int] | None = None) -> UdpRelay:
        """A relay listening on ``sock`` (already bound) or on ``address``."""
        loop = asyncio.get_running_loop()
        relay = cls(upstream)
        await loop.create_datagram_endpoint(lambda: relay, sock=sock, local_addr=address)
        relay._reaper = asyncio.create_task(relay._reap())
        return relay

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, client) -> None:
        session = self.clients.get(client)
        if session is None:
            session = self.clients[client] = asyncio.ensure_future(self._open(client))
        session.add_done_callback(lambda done: self._forward(done, data))

    async def _open(self, client) -> _Upstream | None:
        try:
            sock = await self.upstream()
            if sock is not None:
                _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: _Upstream(self, client), sock=sock)
                return protocol
        except OSError:
            pass
        self.clients.pop(client, None)   # the client's next datagram tries again
        return None

    def _forward(self, session: asyncio.Future, data: bytes) -> None:
        upstream = _opened(session)
        if upstream is None or upstream.transport is None:
            return
        upstream.last_used = time.monotonic()
        upstream.transport.sendto(data)

    def reply(self, data: bytes, client) -> None:
        if self.transport is not None:
            self.transport.sendto(data, client)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE_SECONDS / 3)
            now = time.monotonic()
            for client, session in list(self.clients.items()):
                upstream = _opened(session)
                if upstream is not None and now - upstream.last_used > UDP_IDLE_SECONDS:
                    self.clients.pop(client, None)
                    if upstream.transport is not None:
                        upstream.transport.close()

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for session in self.clients.values():
            upstream = _opened(session)
            if upstream is not None and upstream.transport is not None:
                upstream.transport.close()
            session.cancel()
        self.clients.clear()
        if self.transport is not None:
            self.transport.close()


def _opened(session: asyncio.Future) -> _Upstream | None:
    if not session.done() or session.cancelled() or session.exception() is not None:
        return None
    return session.result()

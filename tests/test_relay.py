"""The UDP relay the stand-in Service proxy and pod networks use (real sockets, no cluster)."""

from __future__ import annotations

import asyncio
import socket

from localcluster import relay
from localcluster.relay import UdpRelay, udp_socket_to


class Echo(asyncio.DatagramProtocol):
    """Answers each datagram with its own address and the payload, so a test sees which
    upstream socket carried it."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(f"{addr[1]}:".encode() + data, addr)


async def ask(client: socket.socket, address, payload: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    client.sendto(payload, address)
    return await asyncio.wait_for(loop.sock_recv(client, 4096), 5)


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def test_each_client_gets_its_own_upstream_socket_and_its_replies_only(monkeypatch):
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    upstream = echo.get_extra_info("sockname")
    opened = []

    async def open_upstream():
        opened.append(1)
        return udp_socket_to(upstream)

    monkeypatch.setattr(relay, "UDP_IDLE_SECONDS", 0.3)
    listener = await UdpRelay.serve(open_upstream, address=("127.0.0.1", 0))
    address = listener.transport.get_extra_info("sockname")
    a, b = client_socket(), client_socket()
    try:
        a1, b1, a2 = await ask(a, address, b"a1"), await ask(b, address, b"b1"), await ask(a, address, b"a2")
        assert a1.endswith(b":a1") and b1.endswith(b":b1") and a2.endswith(b":a2")
        assert a1.split(b":")[0] == a2.split(b":")[0] != b1.split(b":")[0]   # one upstream socket per client
        assert len(opened) == 2
        await asyncio.sleep(0.6)   # idle: the client's upstream socket is closed, the next datagram opens one
        assert (await ask(a, address, b"a3")).endswith(b":a3") and len(opened) == 3
    finally:
        listener.close()
        echo.close()
        a.close()
        b.close()


async def test_nobody_to_serve_drops_the_datagram_and_the_next_one_tries_again():
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    serving = []

    async def open_upstream():
        return udp_socket_to(echo.get_extra_info("sockname")) if serving else None

    listener = await UdpRelay.serve(open_upstream, address=("127.0.0.1", 0))
    address = listener.transport.get_extra_info("sockname")
    client = client_socket()
    try:
        client.sendto(b"lost", address)
        await asyncio.sleep(0.2)
        serving.append(True)
        assert (await ask(client, address, b"found")).endswith(b":found")
    finally:
        listener.close()
        echo.close()
        client.close()

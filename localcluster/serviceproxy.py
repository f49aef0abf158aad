"""A stand-in for kube-proxy: Service cluster IPs answer on this machine.

Cluster IPs come from a loopback range (see ``controlplane``), so the proxy can listen on
``<clusterIP>:<port>`` for every TCP and UDP port of every ClusterIP Service and forward each
connection (for UDP: each client, ``relay.UdpRelay``) to a Ready pod matching the Service's
selector.

It selects pods itself instead of reading EndpointSlices: the API server rejects loopback
addresses in EndpointSlices and Endpoints ("may not be in the loopback range"), so the
endpointslice controller cannot publish the local pods. One shared watch each for Services
and pods.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
from dataclasses import dataclass, field

from kubernetes_asyncio import client

from .kube import watch_forever
from .relay import UdpRelay, splice, udp_socket_to

log = logging.getLogger("localcluster.serviceproxy")


@dataclass
class _Service:
    selector: dict[str, str]
    ports: dict[str, int | str] = field(default_factory=dict)      # port name -> targetPort
    # (cluster IP, port, protocol) -> its listener
    listeners: dict[tuple[str, int, str], asyncio.AbstractServer | UdpRelay] = field(default_factory=dict)
    rotation: itertools.count = field(default_factory=itertools.count)


@dataclass(frozen=True)
class _Pod:
    namespace: str
    labels: dict
    ip: str
    named_ports: dict[str, int]


class ServiceProxy:
    def __init__(self, api: client.ApiClient, service_cidr: str):
        self.core = client.CoreV1Api(api)
        self.network = ipaddress.ip_network(service_cidr)
        self.services: dict[tuple[str, str], _Service] = {}
        self.ready_pods: dict[str, _Pod] = {}   # uid -> pod

    async def on_service(self, event_type: str, svc) -> None:
        key = (svc.metadata.namespace, svc.metadata.name)
        old = self.services.pop(key, None)
        wanted: dict[tuple[str, int, str], str] = {}
        state = _Service(selector=svc.spec.selector or {})
        if event_type != "DELETED" and svc.spec.selector:
            for ip in svc.spec.cluster_ips or []:
                if ip != "None" and ipaddress.ip_address(ip) in self.network:
                    for port in svc.spec.ports or []:
                        if (port.protocol or "TCP") in ("TCP", "UDP"):
                            wanted[(ip, port.port, port.protocol or "TCP")] = port.name or ""
                            state.ports[port.name or ""] = port.target_port or port.port
        listeners = old.listeners if old else {}
        for addr in list(listeners):
            if addr not in wanted:
                listeners.pop(addr).close()
        for addr, name in wanted.items():
            if addr not in listeners:
                ip, port, protocol = addr
                try:
                    if protocol == "UDP":
                        listeners[addr] = await UdpRelay.serve(
                            lambda k=key, n=name: self._udp_upstream(k, n), address=(ip, port))
                    else:
                        listeners[addr] = await asyncio.start_server(
                            lambda r, w, k=key, n=name: self._forward(k, n, r, w), ip, port)
                except OSError as e:
                    log.warning("cannot listen on %s:%s/%s for service %s/%s: %s", *addr, *key, e)
        state.listeners = listeners
        if event_type != "DELETED":
            self.services[key] = state

    async def on_pod(self, event_type: str, pod) -> None:
        uid = pod.metadata.uid
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if event_type == "DELETED" or not ready or not pod.status.pod_ip or pod.metadata.deletion_timestamp:
            self.ready_pods.pop(uid, None)
            return
        named = {p.name: p.container_port for c in pod.spec.containers for p in (c.ports or []) if p.name}
        self.ready_pods[uid] = _Pod(pod.metadata.namespace, pod.metadata.labels or {}, pod.status.pod_ip, named)

    def _targets(self, key: tuple[str, str], port_name: str) -> list[tuple[str, int]]:
        svc = self.services.get(key)
        if svc is None:
            return []
        target = svc.ports.get(port_name)
        found = []
        for pod in self.ready_pods.values():
            if pod.namespace == key[0] and all(pod.labels.get(k) == v for k, v in svc.selector.items()):
                port = target if isinstance(target, int) or str(target).isdigit() else pod.named_ports.get(target)
                if port is not None:
                    found.append((pod.ip, int(port)))
        return sorted(found)

    def _pick(self, key: tuple[str, str], port_name: str) -> tuple[str, int] | None:
        targets = self._targets(key, port_name)
        return targets[next(self.services[key].rotation) % len(targets)] if targets else None

    async def _forward(self, key, port_name, reader, writer) -> None:
        target = self._pick(key, port_name)
        if target is None:
            writer.close()  # like kube-proxy's REJECT for a Service without endpoints
            return
        await splice(reader, writer, lambda: asyncio.open_connection(*target))

    async def _udp_upstream(self, key, port_name):
        target = self._pick(key, port_name)
        return udp_socket_to(target) if target else None

    async def run(self) -> None:
        try:
            await asyncio.gather(
                watch_forever(self.core.list_service_for_all_namespaces, self.on_service, what="services"),
                watch_forever(self.core.list_pod_for_all_namespaces, self.on_pod, what="pods (service proxy)"),
            )
        finally:
            for state in self.services.values():
                for server in state.listeners.values():
                    server.close()

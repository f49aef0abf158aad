"""Loaded by every Python process the local kubelet starts (via PYTHONPATH).

All pods share this machine's network namespace, so two servers listening on 0.0.0.0:8888
would collide. In a real cluster each pod has its own network namespace and 0.0.0.0 means
"the pod's IP"; this hook gives wildcard binds exactly that meaning by binding to the pod IP
from LOCALCLUSTER_POD_IP instead.
"""

import os
import socket

_pod_ip = os.environ.get("LOCALCLUSTER_POD_IP")

if _pod_ip:
    _WILDCARDS = ("", "0.0.0.0", "::", None)
    _bind = socket.socket.bind
    _getaddrinfo = socket.getaddrinfo

    def _pod_bind(self, address):
        if self.family == socket.AF_INET and isinstance(address, tuple) and address[0] in _WILDCARDS:
            address = (_pod_ip,) + tuple(address[1:])
        return _bind(self, address)

    def _pod_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        # Passive look-ups for a wildcard host feed bind(): answer with the pod IP only, so no
        # IPv6 wildcard socket is opened beside it.
        if host in _WILDCARDS and flags & socket.AI_PASSIVE:
            host, family = _pod_ip, socket.AF_INET
        return _getaddrinfo(host, port, family, type, proto, flags)

    socket.socket.bind = _pod_bind
    socket.getaddrinfo = _pod_getaddrinfo

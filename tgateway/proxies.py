"""Reverse proxies in front of the gateway: which client a request really comes from.

One policy for every HTTP port (gateway API, Blossom, the tracker's HTTP and WebSocket front
ends), built from the top-level ``trusted_proxies`` key. A connection from a trusted proxy names
its client in ``X-Forwarded-For``: the hops are read from the right, and the first one that is
not itself a trusted proxy is the client (a client cannot forge its way past the proxy that
appended the address it saw). A connection from anywhere else is its own client, whatever it
says. The rate limiters key on that address and the tracker lists it as the peer's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

_CACHE_MAX = 65536


class ProxyPolicy:
    """Which connections may name the client address (X-Forwarded-For, the tracker's ``ip=``)."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self._nets = [ipaddress.ip_network(n, strict=False) for n in trusted]
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._nets)

    def trusts(self, host: str) -> bool:
        hit = self._cache.get(host)
        if hit is None:
            try:
                addr = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                hit = False
            else:
                if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                hit = any(addr in net for net in self._nets)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[host] = hit
        return hit

    def client(self, peer_host: str, forwarded_for: bytes | None, ip_param: bytes | None = None) -> str:
        """The address to record for a request arriving from ``peer_host``."""
        if not self._nets or not self.trusts(peer_host):
            return peer_host
        if forwarded_for:
            for hop in reversed(forwarded_for.decode("latin-1").split(",")):
                hop = hop.strip()
                if hop and not self.trusts(hop):
                    return hop
        if ip_param:
            return ip_param.decode("latin-1")
        return peer_host

    def request_client(self, request: Any) -> str:
        """The client of a twisted.web request (its peer address, or whom a trusted proxy names)."""
        addr = request.getClientAddress()
        host = str(getattr(addr, "host", None) or "unknown")
        if not self._nets:
            return host
        return self.client(host, request.getHeader(b"x-forwarded-for"))


NO_PROXIES = ProxyPolicy(())

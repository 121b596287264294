"""Joining the DHT: bootstrap node entries (``host:port``) and resolving their names."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger
from zope.interface import directlyProvides

__all__ = ["bootstrap_addresses", "is_ip", "parse_host_port", "resolve_host"]

log = Logger()


def parse_host_port(text: str, default_port: int = 6881) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``v4`` or ``host``. Raises ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host, port = text, default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad host:port {text!r}")
    return host, port


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve_host(reactor: Any, host: str, ipv6: bool) -> list[str]:
    """Up to 4 addresses of ``host`` in one family, through the reactor's name resolver ([] on
    failure, logged)."""
    resolver = getattr(reactor, "nameResolver", None)
    if resolver is None:
        return []
    found: list[str] = []
    done: Deferred[None] = Deferred()

    class Receiver:
        def resolutionBegan(self, resolution: Any) -> None:
            pass

        def addressResolved(self, address: Any) -> None:
            if isinstance(address, (IPv4Address, IPv6Address)) and address.host not in found:
                found.append(address.host)

        def resolutionComplete(self) -> None:
            done.callback(None)

    receiver = Receiver()
    directlyProvides(receiver, IResolutionReceiver)
    try:
        resolver.resolveHostName(receiver, host, 0, [IPv6Address if ipv6 else IPv4Address])
        await done
    except Exception:
        log.failure("resolving DHT bootstrap node {host} failed", host=host)
    return found[:4]


async def bootstrap_addresses(reactor: Any, entries: Iterable[str],
                              ipv6: bool) -> list[tuple[str, int]]:
    """The addresses of ``dht.bootstrap_nodes`` entries in one family: IP addresses as given,
    host names resolved through the reactor (up to 4 each); a malformed entry is logged and
    skipped."""
    addrs: list[tuple[str, int]] = []
    for entry in entries:
        try:
            host, port = parse_host_port(entry)
        except ValueError:
            log.warn("bad DHT bootstrap node {entry!r}", entry=entry)
            continue
        if is_ip(host):
            if (":" in host) == ipv6:
                addrs.append((host, port))
            continue
        for ip in await resolve_host(reactor, host, ipv6):
            addrs.append((ip, port))
    return addrs

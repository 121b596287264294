"""The one guard for outgoing connections that a request can cause (mirror, bunker relays, ...).

A user who names a URL makes the gateway connect where the URL says: to its own loopback
services, to the cloud metadata address, to hosts on the private network. :class:`OutgoingGuard`
stops that, in three steps, for every connection attempt:

1. **resolve first**, as the connection would: a host that is not a strict IP literal goes
   through ``getaddrinfo`` (the system resolver, which Twisted's own name resolver also uses), so
   every numeric spelling (``2130706433``, ``0x7f000001``, ``127.1``, ``017700000001``) is read
   the way the C library reads it, as 127.0.0.1;
2. **check every address** it resolved to (:func:`is_public_address`): refuse when any one is
   loopback, private, shared (100.64/10), link-local, multicast, reserved, unspecified or
   otherwise not global unicast, including IPv6 forms that carry an IPv4 address (IPv4-mapped
   ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``: the embedded address is
   checked) and the names ``localhost`` / ``*.localhost``;
3. **connect to the checked address itself** (``TCP4ClientEndpoint``/``TCP6ClientEndpoint``
   on the IP), never to the name again, so a second DNS answer cannot swap in another target
   (DNS rebinding). TLS keeps the host name for SNI and certificate checks.

``allow_private`` switches step 2 off (the config switches ``blossom_server.mirror_allow_private``
and ``nostr.allow_private_bunker_relays``: tests, or a deployment whose targets live on its own
network); resolution and connecting to the resolved address stay the same.

Refusals raise :class:`AddressRefused`, failed look-ups :class:`ResolveError`; both happen
before any connection is attempted. Callers translate them into their own errors.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

__all__ = [
    "AddressRefused",
    "GuardedEndpoint",
    "NetGuardError",
    "OutgoingGuard",
    "ResolveError",
    "Resolver",
    "is_public_address",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], "Deferred[list[str]]"]
TcpEndpointFactory = Callable[[str, int], IStreamClientEndpoint]

_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: embeds an IPv4


class NetGuardError(Exception):
    """An outgoing connection was not attempted. ``host`` is the name or address asked for."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(message)
        self.message = message
        self.host = host


class AddressRefused(NetGuardError):
    """The host is (or resolves to) an address outgoing connections may not reach."""

    def __init__(self, host: str, address: str | None = None) -> None:
        if address is None or address == host:
            message = f"{host} is a local or private address"
        else:
            message = f"{host} resolves to a local or private address ({address})"
        super().__init__(message, host)
        self.address = address


class ResolveError(NetGuardError):
    """The host name could not be resolved."""

    def __init__(self, host: str) -> None:
        super().__init__(f"cannot resolve {host}", host)


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return bool(ip.is_global) and not (
        ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
        or ip.is_unspecified or ip.is_private
    )


def _public_v6(ip: ipaddress.IPv6Address) -> bool:
    if ip.ipv4_mapped is not None:
        return _public_v4(ip.ipv4_mapped)
    if ip in _NAT64:
        return _public_v4(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        return _public_v4(ip.sixtofour)
    if ip not in _GLOBAL_UNICAST_V6:  # ::/8 (IPv4-compatible, ...), fc00::/7, fe80::/10, ff00::/8
        return False
    return bool(ip.is_global) and not (
        ip.is_multicast or ip.is_reserved or ip.is_private or ip.is_link_local
        or ip.is_site_local or ip.teredo is not None
    )


def is_public_address(address: str | IPAddress) -> bool:
    """True when ``address`` (an IP literal; an IPv6 zone is ignored) is global unicast.

    Raises ``ValueError`` for something that is not an IP address.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    return _public_v6(ip)


def _local_name(name: str) -> bool:
    name = name.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _literal(host: str) -> str | None:
    """The address when ``host`` is a strict IP literal (brackets and zone allowed), else None."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return None
    return bare


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and str(sockaddr[0]) not in seen:
            seen.append(str(sockaddr[0]))
    return seen


def system_resolver(reactor: Any) -> Resolver:
    """``getaddrinfo`` in the reactor's thread pool (what Twisted's default resolver runs)."""

    def resolve(host: str, port: int) -> Deferred[list[str]]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), _getaddrinfo, host, port)

    return resolve


class OutgoingGuard:
    """Resolves, checks and connects; one per kind of target (one config switch each).

    ``resolver``: ``(host, port) -> Deferred[list of address strings]`` (default: the system
    resolver in the reactor's thread pool). ``tcp_endpoint``: ``(address, port) -> endpoint``
    for the checked address (default: ``TCP4ClientEndpoint``/``TCP6ClientEndpoint``; tests
    pass an in-memory one).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        tcp_endpoint: TcpEndpointFactory | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.reactor = reactor
        self.allow_private = allow_private
        self._resolver = resolver
        self._tcp_endpoint = tcp_endpoint
        self.connect_timeout = connect_timeout

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address ``host`` stands for, each checked; raises :class:`AddressRefused` when
        any one may not be reached (unless ``allow_private``), :class:`ResolveError` when the
        name does not resolve. Nothing is connected here."""
        name = host.strip()
        literal = _literal(name)
        if literal is not None:
            addresses = [literal]
        else:
            if not self.allow_private and _local_name(name):
                raise AddressRefused(name)
            resolver = self._resolver or system_resolver(self.reactor)
            try:
                addresses = list(await resolver(name, port))
            except Exception:
                raise ResolveError(name) from None
            if not addresses:
                raise ResolveError(name)
        if not self.allow_private:
            for address in addresses:
                try:
                    public = is_public_address(address)
                except ValueError:
                    public = False
                if not public:
                    raise AddressRefused(name, address)
        return addresses

    def endpoint(self, host: str, port: int, tls: bool = False) -> GuardedEndpoint:
        """An endpoint that resolves and checks ``host`` on every ``connect`` and connects to a
        checked address (TLS with ``host`` as the server name when ``tls``). The signature fits
        :data:`tgateway.nostr.pool.EndpointFactory`."""
        return GuardedEndpoint(self, host, port, tls)

    def _address_endpoint(self, address: str, port: int) -> IStreamClientEndpoint:
        if self._tcp_endpoint is not None:
            return self._tcp_endpoint(address, port)
        bare = address.split("%", 1)[0] if ":" in address else address
        if ":" in bare:
            return TCP6ClientEndpoint(  # type: ignore[no-untyped-call]
                self.reactor, address, port, timeout=self.connect_timeout)
        return TCP4ClientEndpoint(self.reactor, bare, port, timeout=self.connect_timeout)


@implementer(IStreamClientEndpoint)
class GuardedEndpoint:
    """See :meth:`OutgoingGuard.endpoint`. ``connect`` fails with a :class:`NetGuardError`
    before any connection when the target is refused; otherwise it tries the checked addresses
    in order and returns the first connection made."""

    def __init__(self, guard: OutgoingGuard, host: str, port: int, tls: bool) -> None:
        self.guard = guard
        self.host = host
        self.port = port
        self.tls = tls

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(protocol_factory))

    async def _connect(self, protocol_factory: Any) -> Any:
        addresses = await self.guard.resolve(self.host, self.port)
        error: BaseException | None = None
        for address in addresses:
            endpoint = self.guard._address_endpoint(address, self.port)
            if self.tls:
                name = _literal(self.host) or self.host
                endpoint = wrapClientTLS(optionsForClientTLS(name), endpoint)
            try:
                return await endpoint.connect(protocol_factory)
            except Exception as e:
                error = e
        assert error is not None
        raise error

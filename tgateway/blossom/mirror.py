"""BUD-04 mirror: fetch a blob from a URL with treq, refusing non-public targets.

The target check runs on the *resolved* addresses, at connection time, for the first request
and for every redirect: :class:`GuardedEndpointFactory` resolves the host name, refuses when
any address is loopback, private, link-local, shared, multicast or otherwise not global
(unless ``allow_private``), and then connects to the address it checked (so a second DNS
answer cannot swap in another target). HTTPS keeps the host name for SNI and certificate
checks.

:func:`fetch_into` streams the response body into a sink (the content store's ingest) with
backpressure; nothing holds the whole blob in memory.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss

from tgateway.errors import ApiError, BadRequest, Forbidden

MAX_URL = 4096
CONNECT_TIMEOUT = 10.0


class MirrorError(ApiError):
    """The origin could not be fetched (502 unless a more precise status applies)."""

    status = 502
    code = "mirror_failed"


def is_public_address(host: str) -> bool:
    """True when ``host`` (an IP literal) is a global unicast address."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return False
    if ip.is_private or ip.is_reserved:
        return False
    return bool(ip.is_global)


def parse_mirror_url(url: object) -> str:
    """Validate the ``url`` field of a mirror request (http or https, with a host)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise BadRequest("mirror body must be {\"url\": \"http(s)://...\"}", code="invalid_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadRequest("mirror url is not a valid URL", code="invalid_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("mirror url must be http:// or https://", code="invalid_url")
    if port == 0:
        raise BadRequest("mirror url has port 0", code="invalid_url")
    if parts.username or parts.password:
        raise BadRequest("mirror url must not carry credentials", code="invalid_url")
    return url


Resolver = Callable[[str, int], "Deferred[list[str]]"]


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


def thread_resolver(host: str, port: int) -> Deferred[list[str]]:
    return deferToThread(_getaddrinfo, host, port)


class _GuardedEndpoint:
    def __init__(self, factory: GuardedEndpointFactory, scheme: str, host: str, port: int):
        self._f = factory
        self._scheme = scheme
        self._host = host
        self._port = port

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(protocol_factory))

    async def _connect(self, protocol_factory: Any) -> Any:
        host = self._host.strip("[]")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            addresses = [host]
        except ValueError:
            try:
                addresses = await self._f.resolver(host, self._port)
            except Exception:
                raise MirrorError(f"cannot resolve {host}", code="mirror_dns") from None
        if not addresses:
            raise MirrorError(f"cannot resolve {host}", code="mirror_dns")
        if not self._f.allow_private:
            for a in addresses:
                if not is_public_address(a):
                    raise Forbidden(
                        f"mirror target {host} resolves to a non-public address",
                        code="mirror_forbidden",
                    )
        address = addresses[0]
        reactor = self._f.reactor
        if ":" in address:
            inner: Any = TCP6ClientEndpoint(  # type: ignore[no-untyped-call]
                reactor, address, self._port, timeout=CONNECT_TIMEOUT)
        else:
            inner = TCP4ClientEndpoint(reactor, address, self._port, timeout=CONNECT_TIMEOUT)
        if self._scheme == "https":
            inner = wrapClientTLS(optionsForClientTLS(host), inner)
        return await inner.connect(protocol_factory)


class GuardedEndpointFactory:
    """``Agent.usingEndpointFactory`` endpoints that only connect to checked addresses."""

    def __init__(self, reactor: Any, *, allow_private: bool, resolver: Resolver | None = None):
        self.reactor = reactor
        self.allow_private = allow_private
        self.resolver: Resolver = resolver or thread_resolver

    def endpointForURI(self, uri: Any) -> _GuardedEndpoint:
        scheme = uri.scheme.decode("ascii")
        if scheme not in ("http", "https"):
            raise BadRequest("mirror url must be http:// or https://", code="invalid_url")
        return _GuardedEndpoint(self, scheme, uri.host.decode("idna"), uri.port)


def guarded_agent(reactor: Any, *, allow_private: bool, resolver: Resolver | None = None) -> Any:
    """A twisted.web Agent (wrap it in ``treq.client.HTTPClient``) through the guard."""
    pool = HTTPConnectionPool(reactor, persistent=False)  # type: ignore[no-untyped-call]
    return Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
        reactor, GuardedEndpointFactory(reactor, allow_private=allow_private, resolver=resolver),
        pool=pool,
    )


def _discard(data: bytes) -> None:
    raise MirrorError("unwanted body")


class _BodySink(Protocol):
    """Delivers a response body to ``write``; pause/resume reach the TCP transport.

    With a ``clock``, the download fails when the origin sends nothing for ``idle_timeout``
    seconds while we are reading (time spent paused by our own backpressure does not count).
    """

    def __init__(
        self, write: Callable[[bytes], None], clock: Any = None, idle_timeout: float = 30.0
    ) -> None:
        self._write = write
        self.done: Deferred[None] = Deferred()
        self.error: BaseException | None = None
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._timer: Any = None

    def _arm(self) -> None:
        self._disarm()
        if self._clock is not None and not self.done.called:
            self._timer = self._clock.callLater(self._idle_timeout, self._stalled)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _stalled(self) -> None:
        self._timer = None
        self._fail(MirrorError("the origin stopped sending", code="mirror_timeout"))

    def _fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
        if self.transport is not None and hasattr(self.transport, "stopProducing"):
            self.transport.stopProducing()

    def connectionMade(self) -> None:
        self._arm()

    def pause(self) -> None:
        self._disarm()
        if self.transport is not None and hasattr(self.transport, "pauseProducing"):
            self.transport.pauseProducing()

    def resume(self) -> None:
        self._arm()
        if self.transport is not None and hasattr(self.transport, "resumeProducing"):
            self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.error is not None:
            return
        if self._timer is not None:
            self._timer.reset(self._idle_timeout)
        try:
            self._write(data)
        except BaseException as e:
            self._fail(e)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._disarm()
        if self.done.called:
            return
        if self.error is not None:
            self.done.errback(self.error)
        elif reason is None or reason.check(  # type: ignore[no-untyped-call]
                ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(MirrorError("the origin closed the connection early"))


async def fetch_into(
    client: Any,
    url: str,
    *,
    max_size: int,
    begin: Callable[[int | None, str | None], Any],
    timeout: float = 30.0,
    clock: Any = None,
) -> None:
    """GET ``url`` and stream the body to ``begin(content_length, content_type)``'s result.

    ``begin`` returns an object with ``write(bytes)`` and ``set_flow_control(pause, resume)``
    (an :class:`~tgateway.storage.ingest.Ingest`); it may raise (size, quota) before any body
    byte is read. ``timeout``: for the response headers, and (with ``clock``) for each silence
    of the origin while the body is read. Raises MirrorError (502) for network errors, non-200
    answers and stalls, PayloadTooLarge for a declared or actual size above ``max_size``.
    """
    from tgateway.errors import PayloadTooLarge

    try:
        response = await client.get(url, timeout=timeout, headers={b"accept": [b"*/*"]})
    except ApiError:
        raise
    except Exception as e:
        inner = getattr(e, "reasons", None)
        if inner:
            for r in inner:
                if isinstance(r, Failure) and isinstance(r.value, ApiError):
                    raise r.value from None
        raise MirrorError(f"cannot fetch the mirror url: {type(e).__name__}") from None
    try:
        if response.code != 200:
            raise MirrorError(f"the origin answered {response.code}", code="mirror_failed")
        length_h = response.headers.getRawHeaders(b"content-length")
        length: int | None = None
        if length_h:
            try:
                length = int(length_h[-1])
            except ValueError:
                length = None
        if length is not None and length > max_size:
            raise PayloadTooLarge(f"the blob is {length} bytes, the limit is {max_size} bytes")
        ctype_h = response.headers.getRawHeaders(b"content-type")
        ctype = ctype_h[-1].decode("latin-1") if ctype_h else None
        sink_target = begin(length, ctype)
    except BaseException:
        drop = _BodySink(_discard)  # reads nothing: closes the connection
        drop.done.addErrback(lambda _: None)
        response.deliverBody(drop)
        raise
    sink = _BodySink(sink_target.write, clock, timeout)
    sink_target.set_flow_control(sink.pause, sink.resume)
    response.deliverBody(sink)
    await sink.done


__all__ = [
    "GuardedEndpointFactory",
    "MirrorError",
    "fetch_into",
    "guarded_agent",
    "is_public_address",
    "parse_mirror_url",
]

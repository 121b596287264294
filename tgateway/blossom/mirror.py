"""BUD-04 mirror: fetch a blob from a URL with twisted.web's Agent, through the outgoing-connection
guard.

Every connection (the first request and each redirect) goes through
:class:`tgateway.netguard.OutgoingGuard`: the host is resolved first, every address is checked
(unless ``blossom_server.mirror_allow_private``), and the connection goes to the checked address
itself. A refused target is a 403 ``mirror_forbidden``, a name that does not resolve a 502
``mirror_dns``; nothing is connected in either case. Redirects are followed (``RedirectAgent``),
each through the guard. IPv6 literals (``http://[2001:db8::1]/x``) are fetched like any other
address: the request URI is built here (:func:`request_uri`) because treq's, through hyperlink's
``to_uri``, IDNA-encodes every host and fails on an IPv6 literal (``InvalidCodepoint``,
python-hyper/hyperlink#68).

:func:`fetch_into` streams the response body into a sink (the upload handler's, which feeds the
content store's ingest) with backpressure; nothing holds the whole blob in memory.
:class:`MirrorSource` is a mirror as a source of the one upload handler (:mod:`tgateway.uploads`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from hyperlink import URL
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, RedirectAgent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from zope.interface import implementer

from tgateway.errors import ApiError, BadRequest, Forbidden, NotFound
from tgateway.http.converters import parse_blob_address
from tgateway.netguard import AddressRefused, NetGuardError, OutgoingGuard, Resolver
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile
from tgateway.uploads import Facts, OpenSink

MAX_URL = 4096
CONNECT_TIMEOUT = 10.0


class MirrorError(ApiError):
    """The origin could not be fetched (502 unless a more precise status applies)."""

    status = 502
    code = "mirror_failed"


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


def request_uri(url: str) -> bytes:
    """``url`` (checked by :func:`parse_mirror_url`) as the ASCII URI to request: path and query
    percent-encoded, a host name IDNA-encoded, an IPv6 literal kept as it is."""
    parsed = URL.from_text(url)
    host = parsed.host
    if ":" not in host:
        return parsed.to_uri().to_text().encode("ascii")
    placeholder = "ipv6-literal.invalid"
    text = parsed.replace(host=placeholder).to_uri().to_text()
    return text.replace("//" + placeholder, f"//[{host}]", 1).encode("ascii")


def _uri_host(raw: bytes) -> str:
    """The host of a twisted ``URI`` as text: IP literals as they are (``::1`` has no IDNA
    form), names decoded from IDNA."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("idna")


class _MirrorEndpoint:
    """The guard's endpoint, with its refusals turned into the mirror's HTTP errors."""

    def __init__(self, guard: OutgoingGuard, scheme: str, host: str, port: int) -> None:
        self._inner = guard.endpoint(host, port, tls=scheme == "https")
        self._host = host

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(protocol_factory))

    async def _connect(self, protocol_factory: Any) -> Any:
        try:
            return await self._inner.connect(protocol_factory)
        except AddressRefused as e:
            raise Forbidden(f"mirror target {e.message}", code="mirror_forbidden") from None
        except NetGuardError as e:
            raise MirrorError(e.message, code="mirror_dns") from None


class GuardedEndpointFactory:
    """``Agent.usingEndpointFactory`` endpoints that only connect to checked addresses."""

    def __init__(self, reactor: Any, *, allow_private: bool, resolver: Resolver | None = None):
        self.guard = OutgoingGuard(reactor, allow_private=allow_private, resolver=resolver,
                                   connect_timeout=CONNECT_TIMEOUT)

    def endpointForURI(self, uri: Any) -> _MirrorEndpoint:
        scheme = uri.scheme.decode("ascii")
        if scheme not in ("http", "https"):
            raise BadRequest("mirror url must be http:// or https://", code="invalid_url")
        return _MirrorEndpoint(self.guard, scheme, _uri_host(uri.host), uri.port)


def guarded_agent(reactor: Any, *, allow_private: bool, resolver: Resolver | None = None) -> Any:
    """A twisted.web Agent that follows redirects and connects only through the guard."""
    pool = HTTPConnectionPool(reactor, persistent=False)  # type: ignore[no-untyped-call]
    agent = Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
        reactor, GuardedEndpointFactory(reactor, allow_private=allow_private, resolver=resolver),
        pool=pool,
    )
    return RedirectAgent(agent)


def _discard(data: bytes) -> None:
    raise MirrorError("unwanted body")


class _BodySink(Protocol):
    """Delivers a response body to ``write``; pause/resume reach the TCP transport.

    With a ``clock``, the download fails when the origin sends nothing for ``idle_timeout``
    seconds while we are reading (time spent paused by our own backpressure does not count).
    """

    def __init__(
        self, write: Callable[[bytes], None], clock: IReactorTime | None = None,
        idle_timeout: float = 30.0,
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
    agent: Any,
    url: str,
    *,
    max_size: int,
    begin: Callable[[int | None, str | None], Any],
    timeout: float = 30.0,
    clock: IReactorTime | None = None,
) -> None:
    """GET ``url`` with ``agent`` (:func:`guarded_agent`) and stream the body to
    ``begin(content_length, content_type)``'s result.

    ``begin`` returns an object with ``write(bytes)`` and ``set_flow_control(pause, resume)``
    (an upload's :class:`~tgateway.uploads.Sink`); it may raise (size, quota) before any body
    byte is read. ``timeout``: for the response headers, and (with ``clock``) for each silence
    of the origin while the body is read. Raises MirrorError (502) for network errors, non-200
    answers and stalls, PayloadTooLarge for a declared or actual size above ``max_size``.
    """
    from tgateway.errors import PayloadTooLarge

    if clock is None:
        from twisted.internet import reactor

        clock = cast(IReactorTime, reactor)
    request: Deferred[Any] = agent.request(
        b"GET", request_uri(url), Headers({b"accept": [b"*/*"], b"user-agent": [b"tgateway"]}))
    request.addTimeout(timeout, clock)
    try:
        response = await request
    except ApiError:
        raise
    except TimeoutError:
        raise MirrorError(f"the origin did not answer within {timeout:g} s",
                          code="mirror_timeout") from None
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


class MirrorSource:
    """The blob at ``url`` as an upload source: the origin's Content-Length and Content-Type
    are known once it answers (``length``: what the client declared in ``X-Content-Length``).
    Failures other than an ApiError become a 502 :class:`MirrorError`."""

    def __init__(self, agent: Any, url: str, *, max_size: int, clock: IReactorTime,
                 length: int | None = None, timeout: float = 30.0) -> None:
        self.agent = agent
        self.url = url
        self.max_size = max_size
        self.clock = clock
        self.length = length
        self.timeout = timeout

    async def pour(self, open_sink: OpenSink) -> Facts:
        declared: list[str | None] = [None]

        def begin(length: int | None, content_type: str | None) -> Any:
            declared[0] = content_type
            return open_sink(length)

        try:
            await fetch_into(self.agent, self.url, max_size=self.max_size, begin=begin,
                             timeout=self.timeout, clock=self.clock)
        except ApiError:
            raise
        except CancelledError:
            raise MirrorError("the mirror download timed out") from None
        except BaseException as e:
            raise MirrorError(f"mirror failed: {type(e).__name__}") from None
        return Facts(declared_type=declared[0])


@implementer(IConsumer)
class _SinkConsumer:
    """A stored file's range producer writing into an upload's sink (reactor side)."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.sink.set_flow_control(producer.pauseProducing, producer.resumeProducing)

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.sink.write(data)


class StoredBlobSource:
    """A mirror of a URL of this very server (``<our public URL>/<sha256>[.ext]``): the bytes
    are read from the content store instead of fetched over HTTP from ourselves (which the
    outgoing-connection guard refuses anyway when this server has a private or loopback
    address). They still go through the upload handler: hashed again, the token's ``x`` tags,
    size, quota, checks."""

    def __init__(self, store: ContentStore, f: StoredFile) -> None:
        self.store = store
        self.file = f
        self.length: int | None = f.size

    async def pour(self, open_sink: OpenSink) -> Facts:
        sink = open_sink(self.length)
        await self.store.reader.producer(self.file, 0, self.file.size,
                                         _SinkConsumer(sink)).start()
        return Facts(declared_type=self.file.mime, name=self.file.name)


def own_blob(url: str, base_url: str) -> str | None:
    """The SHA-256 that ``url`` names when it is a blob URL of the server at ``base_url``
    (same scheme, host and port; path ``/<sha256>[.ext]``), else None."""
    try:
        u, b = urlsplit(url), urlsplit(base_url)
        same = (u.scheme, (u.hostname or "").rstrip("."), u.port or _DEFAULT_PORT[u.scheme]) == (
            b.scheme, (b.hostname or "").rstrip("."), b.port or _DEFAULT_PORT[b.scheme])
    except (ValueError, KeyError):
        return None
    prefix = b.path.rstrip("/") + "/"
    if not same or not u.path.startswith(prefix):
        return None
    try:
        return parse_blob_address(u.path[len(prefix):])
    except NotFound:
        return None


_DEFAULT_PORT = {"http": 80, "https": 443}


__all__ = [
    "GuardedEndpointFactory",
    "MirrorError",
    "MirrorSource",
    "StoredBlobSource",
    "own_blob",
    "fetch_into",
    "guarded_agent",
    "parse_mirror_url",
]

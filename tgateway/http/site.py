"""The twisted.web Site, Request and channel of every HTTP port that takes uploads.

- :class:`StreamingRequest`: for the Site's streaming routes, the handler starts as soon as the
  headers are in and reads the body through a :class:`~tgateway.http.body.BodyStream`;
  ``Expect: 100-continue`` is answered only when the handler starts reading; other requests keep
  twisted.web's behaviour with the body capped at ``max_request_body`` (413 without reading it);
- :class:`_Channel`: 512 KiB reads and writes, a deadline for each request head
  (:mod:`tgateway.deadlines`), pipelined requests taken up only once the transport has drained;
- :class:`StreamingSite`: the Site that names the streaming routes, and records every finished
  request in its :class:`~tgateway.http.stats.HttpStats` (route, status, latency, bytes sent).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http import _getContentFile

from tgateway.deadlines import HEAD_TIMEOUT, HeadDeadline

from .body import BodyStream
from .stats import HttpStats, route_of

IO_SIZE = 512 * 1024


class StreamingRequest(server.Request):
    """A Request that streams the body of the Site's streaming routes to the handler.

    Every response says ``X-Content-Type-Options: nosniff``: browsers take the declared type
    and never guess one (user content shares these origins; see ``tgateway.http.send``)."""

    body_stream: BodyStream | None = None
    route: str | None = None  # the Klein rule that took it (tgateway.http.app)
    _t0 = 0.0  # when the request line came
    _early = False
    _body_limit: int | None = None
    _body_seen = 0
    _continue_pending = False

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        seconds = getattr(getattr(self.channel, "site", None), "seconds", None)
        if seconds is not None:
            self._t0 = seconds()
        self.responseHeaders.setRawHeaders(b"x-content-type-options", [b"nosniff"])

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        site = getattr(channel, "site", None)
        command = getattr(channel, "_command", b"")
        raw_path = getattr(channel, "_path", b"")
        path = raw_path.split(b"?", 1)[0]
        is_streaming = getattr(site, "is_streaming_route", None)
        if is_streaming is not None and is_streaming(command, path):
            limit = getattr(site, "max_stream_body", None)
            expect = self.requestHeaders.getRawHeaders(b"expect")
            if expect:
                # twisted.web would send "100 Continue" as soon as the headers are in; the 100
                # goes out only when the handler starts reading the body (continue_body), so a
                # request it refuses first (size, sign-in, quota) gets no invitation to send it.
                self.requestHeaders.removeHeader(b"expect")
                version = getattr(channel, "_version", b"")
                fits = length is None or limit is None or length <= limit
                self._continue_pending = (fits and version == b"HTTP/1.1"
                                          and expect[0].lower() == b"100-continue")
            self.body_stream = BodyStream(self, length)
            self.content = self.body_stream  # type: ignore[assignment]
            self._early = True
            version = getattr(channel, "_version", b"HTTP/1.1")
            # Start the resource after the channel has finished handling the headers.
            from twisted.internet import reactor as default_reactor

            clock = getattr(site, "clock", None) or default_reactor
            clock.callLater(0, self._start_early, command, raw_path, version)
            return
        self._body_limit = getattr(site, "max_request_body", None)
        if self._body_limit is not None and length is not None and length > self._body_limit:
            # Do not read it: answer 413 at once and close the connection.
            self.content = _getContentFile(0)
            self._body_too_large = True
            self._answered_early = True
            self.requestHeaders.removeHeader(b"expect")
            version = getattr(channel, "_version", b"HTTP/1.1")
            from twisted.internet import reactor as default_reactor

            clock = getattr(site, "clock", None) or default_reactor
            clock.callLater(0, self._too_large_response, command, raw_path, version)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_stream is not None:
            self.body_stream.write(data)
            return
        if getattr(self, "_body_too_large", False):
            return
        self._body_seen += len(data)
        if self._body_limit is not None and self._body_seen > self._body_limit:
            self._body_too_large = True
            return
        super().handleContentChunk(data)

    def continue_body(self) -> None:
        """The handler is about to read the streamed body: send the ``100 Continue`` the client
        may be waiting for (once; not when body bytes came anyway or an answer has started)."""
        if not self._continue_pending:
            return
        self._continue_pending = False
        stream = self.body_stream
        if self.channel is None or self.startedWriting or (stream is not None and stream.received):
            return
        self.channel._send100Continue()

    def _start_early(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body_stream is not None and self.body_stream.failed is not None:
            return
        if self.channel is None:
            return
        server.Request.requestReceived(self, command, path, version)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._early:
            assert self.body_stream is not None
            self.body_stream.end()
            return
        if getattr(self, "_answered_early", False):
            return
        if getattr(self, "_body_too_large", False):
            self.content = _getContentFile(0)
            self._too_large_response(command, path, version)
            return
        super().requestReceived(command, path, version)

    def _too_large_response(self, command: bytes, path: bytes, version: bytes) -> None:
        import json

        if self.channel is None or self.finished:
            return
        self.channel.persistent = False

        self.method, self.uri, self.clientproto = command, path, version
        self.path = path.split(b"?", 1)[0]
        self.args = {}
        self.client = self.channel.getPeer() if self.channel else None
        self.host = self.channel.getHost() if self.channel else None
        message = f"request body is larger than {self._body_limit} bytes"
        self.setResponseCode(413)
        self.setHeader(b"content-type", b"application/json")
        self.setHeader(b"connection", b"close")
        self.setHeader(b"access-control-allow-origin", b"*")
        self.setHeader(b"x-reason", message.encode())  # Blossom clients read this (BUD-01)
        self.write(json.dumps({"error": "payload_too_large", "message": message}).encode())
        self.finish()

    def finish(self) -> None:
        # A response sent before the body was read completely ends the connection, so the
        # rest of the body is never parsed as a new request.
        stream = self.body_stream
        if stream is not None and not stream.finished and self.channel is not None:
            self.channel.persistent = False
            if not self.startedWriting:
                self.setHeader(b"connection", b"close")
        super().finish()

    def connectionLost(self, reason: Failure) -> None:
        if self.body_stream is not None and not self.body_stream.finished:
            self.body_stream.fail(reason if reason is not None else Failure(ConnectionDone()))
        super().connectionLost(reason)


class _Channel(http.HTTPChannel):
    """HTTPChannel reading (and buffering writes) in 512 KiB steps instead of 64 KiB: fewer
    trips through Python per byte for uploads and downloads; a deadline for each request head
    (``tgateway.deadlines``): the site's ``head_timeout`` seconds from its first byte, then 408
    and close, however often bytes trickle in; and pipelined requests wait for the reader.

    twisted.web reads ahead while it answers a request (up to a read of ``IO_SIZE`` bytes) and,
    when a response is done, goes on with the requests it has buffered even if the transport's
    write buffer is full: a client that pipelines small requests for large answers and reads
    none would make the server queue all the answers. Here the next request is taken up only
    once the transport has drained (it resumes the channel), so what one connection queues is
    one response's worth plus the transport's buffer."""

    _head: HeadDeadline | None = None
    _held: Any = None  # a finished request whose requestDone waits for the transport

    def connectionMade(self) -> None:
        super().connectionMade()
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = IO_SIZE
        timeout = getattr(self.factory, "head_timeout", HEAD_TIMEOUT)
        self._head = HeadDeadline(self.callLater, timeout, self._head_timed_out)

    def dataReceived(self, data: bytes) -> None:
        # In line mode with no request in hand, bytes are (part of) the next request head.
        if data and self.line_mode and not self._handlingRequest and self._head is not None:
            self._head.head_started()
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        if self._head is not None:
            self._head.head_complete()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        if self.persistent and self._waitingForTransport:
            self._held = request  # taken up again in resumeProducing
            return
        super().requestDone(request)

    def resumeProducing(self) -> None:
        super().resumeProducing()
        held, self._held = self._held, None
        if held is not None and not getattr(self.transport, "disconnecting", True):
            super().requestDone(held)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._head is not None:
            self._head.head_complete()
        held, self._held = self._held, None
        if held is not None and held in self.requests:
            self.requests.remove(held)  # already answered: nothing to tell it
        super().connectionLost(reason)

    def _head_timed_out(self) -> None:
        if self.transport is None or self._handlingRequest:
            return
        self.transport.write(_TIMEOUT_RESPONSE)
        self.persistent = False
        self.timeoutConnection()  # closes, and aborts if the client does not let go


_TIMEOUT_BODY = (b'{"error": "request_timeout", "message": "the request head took longer than the '
                 b'server waits for one"}')
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                     b"X-Content-Type-Options: nosniff\r\n"
                     b"Access-Control-Allow-Origin: *\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(_TIMEOUT_BODY)) + _TIMEOUT_BODY


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}


class StreamingSite(server.Site):
    """A Site whose listed (method, path-prefix) routes get streamed request bodies, and whose
    connections get ``head_timeout`` seconds for each request head (:mod:`tgateway.deadlines`)."""

    requestFactory = StreamingRequest
    protocol = _Channel

    def __init__(
        self,
        resource: Any,
        *,
        streaming_routes: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        max_request_body: int | None = None,
        max_stream_body: int | None = None,
        clock: IReactorTime | None = None,
        head_timeout: float = HEAD_TIMEOUT,
        stats: HttpStats | None = None,
        **kw: Any,
    ) -> None:
        if clock is not None:
            kw.setdefault("reactor", clock)  # the channels' timers run on the same clock
        super().__init__(resource, **kw)
        self.max_stream_body = max_stream_body
        self.streaming_routes = list(streaming_routes)
        self.max_request_body = max_request_body
        self.clock = clock
        self.head_timeout = head_timeout
        self.stats = stats if stats is not None else HttpStats("http")
        self.seconds = (clock if clock is not None else self.reactor).seconds

    def log(self, request: Any) -> None:
        """Called by twisted.web when a request has finished: counted in :attr:`stats`."""
        t0 = getattr(request, "_t0", 0.0)
        seconds = self.seconds() - t0 if t0 else 0.0
        method = _METHODS.get(request.method, "other")
        self.stats.record(route_of(request), method, request.code, max(0.0, seconds),
                          request.sentLength)
        super().log(request)

    def is_streaming_route(self, method: bytes, path: bytes) -> bool:
        for m, p in self.streaming_routes:
            if method == m and (path == p or (p.endswith(b"/") and path.startswith(p))):
                return True
        return False

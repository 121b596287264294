"""Streaming request bodies for twisted.web.

twisted.web normally spools a request body to memory or a temp file and parses multipart forms
in memory before any resource runs. For the routes that accept files (the Site's
``streaming_routes``) :class:`StreamingRequest` instead starts processing as soon as the headers
are in, and hands the body to the handler through a :class:`BodyStream` as it arrives:

- until the handler attaches a consumer, at most ``PREBUFFER`` bytes are held, then the TCP
  transport is paused (so auth, quota and size checks happen before the body is read);
- the consumer can pause and resume the transport (backpressure from the ingest workers);
- ``BodyStream.done`` fires when the whole body has arrived, or fails if the client went away.

Other requests keep twisted.web's behaviour, with the body capped at ``max_request_body``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http import _getContentFile

PREBUFFER = 1 << 20
IO_SIZE = 512 * 1024


class BodyTooLarge(Exception):
    pass


class BodyStream:
    """The body of a streaming request, as a push source of bytes.

    It also quacks like the file twisted.web expects in ``request.content`` (``tell`` is 0 so
    twisted.web never tries to parse it).
    """

    log = Logger()

    def __init__(self, request: StreamingRequest, length: int | None) -> None:
        self._request = request
        self.length = length
        self.received = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._consumer: Callable[[bytes], None] | None = None
        self._paused_by: set[str] = set()
        self.done: Deferred[None] = Deferred()
        self.finished = False
        self.failed: Failure | None = None

    # twisted.web file protocol (never used to read the body)
    def tell(self) -> int:
        return 0

    def seek(self, *args: Any) -> int:
        return 0

    def read(self, *args: Any) -> bytes:
        return b""

    def close(self) -> None:
        pass

    # producer side (channel -> us)
    def write(self, data: bytes) -> None:
        if self.finished or self.failed is not None:
            return
        self.received += len(data)
        if self._consumer is not None:
            try:
                self._consumer(data)
            except Exception:
                self.fail(Failure())
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= PREBUFFER:
            self.pause("prebuffer")

    def end(self) -> None:
        if self.finished or self.failed is not None:
            return
        self.finished = True
        if self._consumer is not None:
            self.done.callback(None)

    def fail(self, failure: Failure) -> None:
        if self.finished or self.failed is not None:
            return
        self.failed = failure
        self._buffer = []
        self._buffered = 0
        if not self.done.called:
            self.done.errback(failure)

    # consumer side (handler -> us)
    def consume(self, on_data: Callable[[bytes], None]) -> Deferred[None]:
        """Deliver buffered and future bytes to ``on_data``; returns ``done``.

        If ``on_data`` raises, the stream fails with that exception.
        """
        if self._consumer is not None:
            raise RuntimeError("body already consumed")
        self._consumer = on_data
        buffered, self._buffer, self._buffered = self._buffer, [], 0
        for chunk in buffered:
            if self.failed is not None:
                break
            try:
                on_data(chunk)
            except Exception:
                # the whole body may be in already (``finished``): fail anyway, or the handler
                # would see a clean end after a refused chunk and store a truncated body
                self.failed = Failure()
                self._buffer = []
                if not self.done.called:
                    self.done.errback(self.failed)
                break
        self.resume("prebuffer")
        if self.finished and not self.done.called and self.failed is None:
            self.done.callback(None)
        return self.done

    def pause(self, reason: str = "consumer") -> None:
        if not self._paused_by:
            transport = self._request.channel.transport if self._request.channel else None
            if transport is not None:
                transport.pauseProducing()
        self._paused_by.add(reason)

    def resume(self, reason: str = "consumer") -> None:
        if reason not in self._paused_by:
            return
        self._paused_by.discard(reason)
        if not self._paused_by and self._request.channel is not None:
            transport = self._request.channel.transport
            if transport is not None:
                transport.resumeProducing()


class StreamingRequest(server.Request):
    """A Request that streams the body of the Site's streaming routes to the handler."""

    body_stream: BodyStream | None = None
    _early = False
    _body_limit: int | None = None
    _body_seen = 0

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        site = getattr(channel, "site", None)
        command = getattr(channel, "_command", b"")
        raw_path = getattr(channel, "_path", b"")
        path = raw_path.split(b"?", 1)[0]
        is_streaming = getattr(site, "is_streaming_route", None)
        if is_streaming is not None and is_streaming(command, path):
            limit = getattr(site, "max_stream_body", None)
            if length is not None and limit is not None and length > limit:
                # The handler will answer 413; do not invite the client to send the body.
                self.requestHeaders.removeHeader(b"expect")
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
    trips through Python per byte for uploads and downloads."""

    def connectionMade(self) -> None:
        super().connectionMade()
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = IO_SIZE


class StreamingSite(server.Site):
    """A Site whose listed (method, path-prefix) routes get streamed request bodies."""

    requestFactory = StreamingRequest
    protocol = _Channel

    def __init__(
        self,
        resource: Any,
        *,
        streaming_routes: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        max_request_body: int | None = None,
        max_stream_body: int | None = None,
        clock: Any = None,
        **kw: Any,
    ) -> None:
        super().__init__(resource, **kw)
        self.max_stream_body = max_stream_body
        self.streaming_routes = list(streaming_routes)
        self.max_request_body = max_request_body
        self.clock = clock

    def is_streaming_route(self, method: bytes, path: bytes) -> bool:
        for m, p in self.streaming_routes:
            if method == m and (path == p or (p.endswith(b"/") and path.startswith(p))):
                return True
        return False


def body_error(e: BaseException) -> BaseException:
    """What a handler should raise when consuming a request body failed.

    ApiErrors (size, quota, bad multipart) pass through; a client that went away becomes a
    CancelledError (nothing to answer); a multipart parse failure becomes a 400.
    """
    if isinstance(e, Failure):
        e = e.value if e.value is not None else e
    from twisted.internet.defer import CancelledError

    from tgateway.errors import ApiError, BadRequest

    if isinstance(e, (ApiError, CancelledError)):
        return e
    if "ParseFailed" in type(e).__name__:
        return BadRequest(f"malformed multipart body: {e}", code="invalid_multipart")
    from twisted.internet.error import ConnectionDone, ConnectionLost
    from twisted.web.http import _DataLoss

    if isinstance(e, (ConnectionDone, ConnectionLost, _DataLoss)):
        return CancelledError("client went away during the upload")
    return e

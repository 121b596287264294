"""Streaming request bodies for twisted.web.

twisted.web normally spools a request body to memory or a temp file and parses multipart forms
in memory before any resource runs. For the routes that accept files (the Site's
``streaming_routes``) :class:`StreamingRequest` instead starts processing as soon as the headers
are in, and hands the body to the handler through a :class:`BodyStream` as it arrives:

- until the handler attaches a consumer, at most ``PREBUFFER`` bytes are held, then the TCP
  transport is paused (so auth, quota and size checks happen before the body is read);
- the consumer can pause and resume the transport (backpressure from the ingest workers);
- ``BodyStream.done`` fires when the whole body has arrived, or fails if the client went away;
- with ``consume(on_data, threaded=True)`` the handler's callback runs on a thread of its own
  (:class:`_BodyThread`): a plain TCP body with a Content-Length is then read from the socket on
  that thread, into the space the consumer names (``into``: an upload's chunk buffer, so the
  bytes are not copied again) and the reactor stays free; other bodies (chunked transfer
  encoding, TLS) are read by the reactor and queued to the thread.

``Expect: 100-continue`` on a streaming route is answered when the handler starts consuming the
body (``BodyStream.consume``), not when the headers are in: an upload the handler refuses first
(sign-in, size, quota) gets its final answer without a ``100`` inviting the body.

Other requests keep twisted.web's behaviour, with the body capped at ``max_request_body``.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http import _getContentFile

from tgateway.deadlines import HEAD_TIMEOUT, HeadDeadline

PREBUFFER = 1 << 20
IO_SIZE = 512 * 1024
THREAD_READ = 256 * 1024  # socket reads on a body thread (they stay in the core's cache)
THREAD_QUEUE = 8 << 20  # bytes the reactor queues to a body thread before pausing the socket
IDLE_TIMEOUT = 300.0  # seconds a body thread waits for the next bytes before giving up


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
        self._thread: _BodyThread | None = None

    def _reactor(self) -> Any:
        clock = getattr(getattr(self._request.channel, "site", None), "clock", None)
        if clock is None:
            from twisted.internet import reactor as clock
        return clock

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
        if self.finished or self.failed is not None or not data:
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
        if self._thread is not None:
            self._thread.end_of_body()
        elif self._consumer is not None:
            self.done.callback(None)

    def fail(self, failure: Failure) -> None:
        if self.finished or self.failed is not None:
            return
        if self._thread is not None and not self._thread.ended:
            self._thread.stop(failure)  # fails the stream once the thread is out of on_data
            return
        self._settle_failed(failure)

    def _settle_failed(self, failure: Failure) -> None:
        """Fail ``done`` even after the channel saw the whole body (a consumer thread failed)."""
        self.failed = failure
        self._buffer = []
        self._buffered = 0
        if not self.done.called:
            self.done.errback(failure)

    # consumer side (handler -> us)
    def consume(
        self,
        on_data: Callable[[Any], None],
        *,
        threaded: bool = False,
        into: Callable[[], memoryview | None] | None = None,
    ) -> Deferred[None]:
        """Deliver buffered and future bytes to ``on_data``; returns ``done``.

        If ``on_data`` raises, the stream fails with that exception. With ``threaded`` it is
        called on a thread of its own (one call at a time, in order; ``done`` fires after the
        last), with bytes-like data that is only valid during the call; without a reactor
        that runs threads (tests on a Clock) it is called on the reactor thread as usual.

        ``into`` (threaded only) may name where the next bytes should land: when the thread
        reads the socket itself, it calls ``into()`` before each read and, if it gets a
        writable view, receives into it and passes ``on_data`` the filled prefix of that view
        (None: its own buffer).
        """
        if self._consumer is not None:
            raise RuntimeError("body already consumed")
        self._request.continue_body()
        reactor = self._reactor()
        if threaded and hasattr(reactor, "callFromThread"):
            self._thread = _BodyThread(self, on_data, reactor, into)
            self._consumer = self._thread.enqueue
            buffered, self._buffer, self._buffered = self._buffer, [], 0
            self._thread.start(buffered)
            if self.finished:  # the whole body came with the headers
                self._thread.end_of_body()
            self.resume("prebuffer")
            return self.done
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


class _BodyThread:
    """Runs a streaming body's consumer on its own thread.

    When the request came over plain TCP with a Content-Length, the thread reads the rest of the
    body from the socket itself (a duplicate of its descriptor, while the reactor does not read
    it), exactly as many bytes as the channel still expects, then hands the connection back:
    the channel's body decoder is told the body is complete and the transport reads again (a
    pipelined request after the body is parsed as usual). Otherwise the reactor reads the body
    and queues it to the thread, pausing the socket while more than ``THREAD_QUEUE`` bytes wait.

    The stream's ``done`` fires (or fails) on the reactor once the thread is out of ``on_data``.
    """

    log = Logger()
    _END = object()

    def __init__(
        self,
        stream: BodyStream,
        on_data: Callable[[Any], None],
        reactor: Any,
        into: Callable[[], memoryview | None] | None = None,
    ) -> None:
        self.stream = stream
        self.on_data = on_data
        self.into = into
        self.reactor = reactor
        self.ended = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0  # guarded by _lock
        self._queue_paused = False
        self._socket: socket.socket | None = None
        self._channel: Any = None
        self._saved_timeout: Any = None
        self._stop_failure: Failure | None = None
        self._remaining = 0  # body bytes the socket still holds (set by the reading thread)

    # reactor side ------------------------------------------------------------------

    def start(self, buffered: list[bytes]) -> None:
        remaining = self._take_socket()
        if remaining is not None:
            self._remaining = remaining
            args: tuple[Any, ...] = (self._read_socket, buffered)
        else:
            for data in buffered:
                self.enqueue(data)
            args = (self._read_queue,)
        threading.Thread(target=self._run, args=args, name="tgateway-body", daemon=True).start()

    def _take_socket(self) -> int | None:
        """Take the socket off the reactor when that is safe; returns the bytes left to read."""
        from twisted.internet import tcp

        channel = self.stream._request.channel
        transport = getattr(channel, "transport", None)
        decoder = getattr(channel, "_transferDecoder", None)
        remaining = getattr(decoder, "contentLength", None)
        if (
            not isinstance(transport, tcp.Connection)
            or getattr(transport, "TLS", False)
            or type(decoder) is not http._IdentityTransferDecoder
            or not isinstance(remaining, int)
            or remaining <= 0
            or getattr(channel, "_buffer", b"")  # bytes the line parser holds
            or getattr(channel, "_dataBuffer", None)
            or getattr(transport, "disconnecting", False)
        ):
            return None
        try:
            sock = socket.socket(fileno=os.dup(transport.fileno()))
        except OSError:
            return None
        sock.settimeout(IDLE_TIMEOUT)
        self.stream.pause("thread")
        self._socket, self._channel = sock, channel
        # the channel sees no bytes while the thread reads: its idle timer must not fire
        self._saved_timeout = channel.setTimeout(None)
        return remaining

    def enqueue(self, data: bytes) -> None:
        """(reactor) Bytes the reactor read, for the thread."""
        with self._lock:
            self._queued += len(data)
            full = self._queued >= THREAD_QUEUE
        self._queue.put(data)
        if full and not self._queue_paused:
            self._queue_paused = True
            self.stream.pause("thread-queue")

    def _resume_queue(self) -> None:
        if self._queue_paused:
            self._queue_paused = False
            self.stream.resume("thread-queue")

    def end_of_body(self) -> None:
        """(reactor) The channel has the whole body."""
        if self._socket is None and not self.ended:
            self._queue.put(self._END)
        elif self.ended and not self.stream.done.called:
            self.stream.done.callback(None)

    def stop(self, failure: Failure) -> None:
        """(reactor) Give up (connection lost, server stopping): the thread leaves at once."""
        if self._stop_failure is None:
            self._stop_failure = failure
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._queue.put(self._END)

    def _ended(self, failure: Failure | None) -> None:
        """(reactor) The thread is out of ``on_data``."""
        self.ended = True
        remaining = self._remaining
        stream = self.stream
        channel = self._channel
        if self._stop_failure is not None:
            failure = self._stop_failure
        if channel is not None and getattr(channel.transport, "connected", False):
            channel.setTimeout(self._saved_timeout)
            decoder = getattr(channel, "_transferDecoder", None)
            if isinstance(decoder, http._IdentityTransferDecoder) and decoder.dataCallback:
                decoder.contentLength = remaining
                if failure is None:
                    decoder.dataReceived(b"")  # completes the request: stream.end()
            stream.resume("thread")
        self._resume_queue()
        if failure is not None:
            stream._settle_failed(failure)
        elif stream.finished and not stream.done.called:
            stream.done.callback(None)

    # thread side ------------------------------------------------------------------

    def _run(self, target: Callable[..., None], *args: Any) -> None:
        failure = None
        try:
            target(*args)
        except BaseException:
            failure = Failure()
        finally:
            if self._socket is not None:
                self._socket.close()
            self.reactor.callFromThread(self._ended, failure)

    def _read_socket(self, buffered: list[bytes]) -> None:
        assert self._socket is not None
        sock = self._socket
        on_data = self.on_data
        for data in buffered:
            on_data(data)
        remaining = self._remaining
        buffer = bytearray(min(THREAD_READ, remaining))
        own = memoryview(buffer)
        into = self.into
        try:
            while remaining:
                if self._stop_failure is not None:
                    raise ConnectionLost("the upload was stopped")
                view = into() if into is not None else None
                if view is None or not len(view) or view.readonly:
                    view = own
                try:
                    n = sock.recv_into(view[: min(len(view), remaining)])
                except TimeoutError:
                    from tgateway.errors import ApiError

                    raise ApiError(
                        f"no upload bytes for {IDLE_TIMEOUT:.0f} seconds", status=408, code="timeout"
                    ) from None
                except OSError as e:
                    raise ConnectionLost(str(e)) from None
                if n == 0:
                    raise ConnectionDone("the client closed the connection during the upload")
                remaining -= n
                self._remaining = remaining
                with view[:n] as received:
                    on_data(received)
                if view is not own:
                    view.release()
        finally:
            own.release()

    def _read_queue(self) -> None:
        on_data = self.on_data
        while True:
            data = self._queue.get()
            if data is self._END:
                if self._stop_failure is not None:
                    raise ConnectionLost("the upload was stopped")
                return
            with self._lock:
                self._queued -= len(data)
                wake = self._queued < THREAD_QUEUE // 2
            if wake and self._queue_paused:
                self.reactor.callFromThread(self._resume_queue)
            on_data(data)


class StreamingRequest(server.Request):
    """A Request that streams the body of the Site's streaming routes to the handler.

    Every response says ``X-Content-Type-Options: nosniff``: browsers take the declared type
    and never guess one (user content shares these origins; see ``tgateway.http.send``)."""

    body_stream: BodyStream | None = None
    _early = False
    _body_limit: int | None = None
    _body_seen = 0
    _continue_pending = False

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
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
        clock: Any = None,
        head_timeout: float = HEAD_TIMEOUT,
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

    def is_streaming_route(self, method: bytes, path: bytes) -> bool:
        for m, p in self.streaming_routes:
            if method == m and (path == p or (p.endswith(b"/") and path.startswith(p))):
                return True
        return False


def body_error(e: BaseException) -> BaseException:
    """What a handler should raise when consuming a request body failed.

    ApiErrors (size, quota, bad multipart) pass through; a client that went away becomes a
    CancelledError (nothing to answer).
    """
    if isinstance(e, Failure):
        e = e.value if e.value is not None else e
    from twisted.internet.defer import CancelledError

    from tgateway.errors import ApiError

    if isinstance(e, (ApiError, CancelledError)):
        return e
    from twisted.internet.error import ConnectionDone, ConnectionLost
    from twisted.web.http import _DataLoss

    if isinstance(e, (ConnectionDone, ConnectionLost, _DataLoss)):
        return CancelledError("client went away during the upload")
    return e

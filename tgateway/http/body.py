"""Streaming request bodies for twisted.web.

twisted.web normally spools a request body to memory or a temp file and parses multipart forms
in memory before any resource runs. For the routes that accept files (the Site's
``streaming_routes``) :class:`~tgateway.http.site.StreamingRequest` instead starts processing as soon as the headers
are in, and hands the body to the handler through a :class:`BodyStream` as it arrives:

- until the handler attaches a consumer, at most ``PREBUFFER`` bytes are held, then the TCP
  transport is paused (so auth, quota and size checks happen before the body is read);
- the consumer can pause and resume the transport (backpressure from the ingest workers);
- ``BodyStream.done`` fires when the whole body has arrived, or fails if the client went away;
- with ``consume(on_data, threaded=True)`` the handler's callback runs on a thread of its own
  (:class:`~tgateway.http.body_thread.BodyThread`): a plain TCP body with a Content-Length is then read from the socket on
  that thread, into the space the consumer names (``into``: an upload's chunk buffer, so the
  bytes are not copied again) and the reactor stays free; other bodies (chunked transfer
  encoding, TLS) are read by the reactor and queued to the thread.

``Expect: 100-continue`` on a streaming route is answered when the handler starts consuming the
body (``BodyStream.consume``), not when the headers are in: an upload the handler refuses first
(sign-in, size, quota) gets its final answer without a ``100`` inviting the body.

:func:`body_error` says what a handler raises when reading a body failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .body_thread import BodyThread

if TYPE_CHECKING:
    from .site import StreamingRequest

PREBUFFER = 1 << 20


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
        self._thread: BodyThread | None = None

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
            self._thread = BodyThread(self, on_data, reactor, into)
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

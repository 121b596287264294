"""The thread a streamed request body is consumed on (``BodyStream.consume(threaded=True)``).

A plain TCP body with a Content-Length is read from the socket on this thread, into the space
the consumer names, while the reactor does not read that connection; any other body is read by
the reactor and queued to the thread. Either way the consumer (an upload's ingest) runs off the
reactor. See :class:`BodyThread`.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http

if TYPE_CHECKING:
    from .body import BodyStream

THREAD_READ = 256 * 1024  # socket reads on a body thread (they stay in the core's cache)
THREAD_QUEUE = 8 << 20  # bytes the reactor queues to a body thread before pausing the socket
IDLE_TIMEOUT = 300.0  # seconds a body thread waits for the next bytes before giving up


class BodyThread:
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

"""The one bound on what a connection queues for a reader that is slow or does not read at all.

A Twisted transport takes every ``write`` into a buffer in the process, without limit: a remote
party that stops reading makes the gateway hold everything written to it. Every writer to a
remote party (the WebSocket tracker, outgoing relay connections, the peer wire) puts a
:class:`SendBound` on its transport:

* the bound registers as the transport's streaming producer (in the place of the HTTP channel,
  after a WebSocket upgrade on a twisted.web port) and sets the transport's ``bufferSize``, so
  the transport itself says when more than ``high`` bytes wait (``pauseProducing``) and when all
  of them have been sent (``resumeProducing``). That is the public producer/consumer API; no
  private buffer attribute is read.
* While paused it stops reading the transport (a party that does not read gets no further
  requests read either: they wait in its own socket), tells its owner
  (:meth:`SendOwner.sending_paused`, :meth:`SendOwner.sending_resumed`) and counts what the owner
  still writes (:meth:`SendBound.wrote`).
* The owner is told to drop the connection (:meth:`SendOwner.send_bound_exceeded`) when the bytes
  written while paused pass ``limit``, or when the transport stays paused for ``stall`` seconds.

So a connection never holds more than ``high`` + the write that crossed it + ``limit`` bytes, and
not for longer than ``stall`` seconds. What an owner does while paused fits its protocol: the
tracker drops offers and answers (best effort), a relay connection keeps its messages in the
session until the transport drains, the peer wire serves no pieces and reads no requests.

Python keeps freed memory for reuse (glibc returns heap memory to the system only from the top of
the heap), so the process's RSS after a burst of buffering stays near its peak even when every
buffer has been released: the bound is what keeps that peak small.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

__all__ = ["SendBound", "SendOwner"]


class SendOwner(Protocol):
    """What a :class:`SendBound` tells the protocol that writes to the transport."""

    def sending_paused(self) -> None:
        """More than ``high`` bytes are queued: write only what must go out."""

    def sending_resumed(self) -> None:
        """Everything queued has been sent."""

    def send_bound_exceeded(self, reason: str) -> None:
        """Drop the connection (``reason``: ``"limit"`` or ``"stalled"``)."""


@implementer(IPushProducer)
class SendBound:
    """Watches one transport for its owner (see the module docstring).

    ``paused`` is a plain attribute, cheap to test on every write. Call :meth:`attach` once the
    transport is connected, :meth:`wrote` for bytes written while ``paused``, and :meth:`detach`
    when the connection is lost.
    """

    def __init__(
        self,
        owner: SendOwner,
        clock: IReactorTime,
        *,
        high: int,
        limit: int,
        stall: float,
    ) -> None:
        self.owner = owner
        self.clock = clock
        self.high = high
        self.limit = limit
        self.stall = stall
        self.paused = False
        self.over = 0  # bytes written since the transport paused
        self.pauses = 0
        self.dropped = False  # the owner was told to drop the connection
        self._transport: Any = None
        self._timer: IDelayedCall | None = None

    def attach(self, transport: Any) -> None:
        """Become ``transport``'s streaming producer, replacing one registered before (the
        HTTP channel that handed a WebSocket connection over)."""
        if hasattr(transport, "bufferSize"):  # FileDescriptor transports pause above this
            transport.bufferSize = self.high
        try:
            transport.registerProducer(self, True)
        except RuntimeError:
            transport.unregisterProducer()
            transport.registerProducer(self, True)
        self._transport = transport

    def detach(self) -> None:
        """The connection is gone: no timer, no transport."""
        self._cancel()
        self._transport = None

    def wrote(self, n: int) -> bool:
        """Count ``n`` bytes about to be written while paused. Returns False (and has told the
        owner to drop the connection) when that takes them over ``limit``: do not write them."""
        if self.dropped:
            return False
        self.over += n
        if self.over > self.limit:
            self._exceeded("limit")
            return False
        return True

    def _exceeded(self, reason: str) -> None:
        self._cancel()
        self.dropped = True
        self.owner.send_bound_exceeded(reason)

    def _stalled(self) -> None:
        self._timer = None
        if self.paused and not self.dropped:
            self._exceeded("stalled")

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- IPushProducer: called by the transport -------------------------------------------------

    def pauseProducing(self) -> None:
        if self.paused:  # the transport repeats this on every write while it is full
            return
        self.paused = True
        self.pauses += 1
        self.over = 0
        transport = self._transport
        if transport is None or self.dropped:
            return
        self._timer = self.clock.callLater(self.stall, self._stalled)
        transport.pauseProducing()
        self.owner.sending_paused()

    def resumeProducing(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self._cancel()
        transport = self._transport
        if transport is None or self.dropped:
            return
        transport.resumeProducing()
        self.owner.sending_resumed()

    def stopProducing(self) -> None:
        self.detach()

"""An in-memory transport that queues what is written like Twisted's TCP transport does, for a
remote party that reads only when the test says so."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport


class QueueingTransport(StringTransport):
    """A StringTransport whose writes wait in ``queued`` bytes until :meth:`drain`.

    Like ``twisted.internet.abstract.FileDescriptor``: a registered streaming producer is paused
    on every write while more than ``bufferSize`` bytes wait, and resumed once all of them have
    been taken; unregistering without a producer is allowed; ``abortConnection`` drops the queue.
    """

    bufferSize = 65536
    protocol: Any = None  # set by whoever hands the connection over (autobahn's resource)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued = 0
        self.most_queued = 0
        self.taken = 0
        self.producer_paused = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        if self.aborted:
            return
        super().write(data)
        self.queued += len(data)
        self.most_queued = max(self.most_queued, self.queued)
        if self.producer is not None and self.streaming and self.queued > self.bufferSize:
            self.producer_paused = True
            self.producer.pauseProducing()

    def writeSequence(self, seq: Any) -> None:
        self.write(b"".join(seq))

    def drain(self, n: int | None = None) -> None:
        """The remote party reads ``n`` bytes (all when None)."""
        n = self.queued if n is None else min(n, self.queued)
        self.queued -= n
        self.taken += n
        if not self.queued and self.producer is not None and self.producer_paused:
            self.producer_paused = False
            self.producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    def abortConnection(self) -> None:
        self.aborted = True
        self.queued = 0
        self.loseConnection()

    @property
    def reading(self) -> bool:
        """False while the protocol's producer paused reading this transport."""
        return self.producerState != "paused"

    # Reading, as the transport's own IPushProducer face (tcp allows these while closing).
    def pauseProducing(self) -> None:
        if self.producerState != "stopped":
            self.producerState = "paused"

    def resumeProducing(self) -> None:
        if self.producerState != "stopped":
            self.producerState = "producing"

"""The range producer's lifecycle: however a range ends, it unregisters from its consumer exactly
once and settles ``done`` once (the real-socket descriptor count is in
tests/http/test_send_lifecycle.py)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.storage.disk import DiskLayout
from tgateway.storage.model import StoredFile
from tgateway.storage.reader import BlockCache, ChunkReader

PIECE = 4


class Consumer:
    """An IConsumer that records what a producer does to it."""

    def __init__(self) -> None:
        self.producer: Any = None
        self.registered = 0
        self.unregistered = 0
        self.data = b""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None, "registered twice"
        self.producer = producer
        self.registered += 1

    def unregisterProducer(self) -> None:
        self.producer = None
        self.unregistered += 1

    def write(self, data: bytes) -> None:
        self.data += data


class RangeProducerLifecycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.content = b"abcdefghijklmnop"  # four blocks of four bytes
        self.pending: list[Deferred[bytes]] = []
        self.reader = ChunkReader(Clock(), DiskLayout("/nonexistent/blobs", "/nonexistent/chunks"),
                                  BlockCache(0), read_block=self._read)
        self.file = StoredFile(sha256="00" * 32, size=len(self.content), name="f", mime="x/y",
                               storage="blob", piece_length=PIECE, info_hash="00" * 20,
                               info=b"", created_at=0.0)

    def _read(self, path: str, offset: int, length: int) -> bytes:
        return self.content[offset:offset + length]

    def test_complete_range_unregisters_once(self) -> None:
        c = Consumer()
        p = self.reader.producer(self.file, 2, 14, c)
        self.assertIsNone(self.successResultOf(p.start()))
        self.assertEqual(c.data, self.content[2:14])
        self.assertEqual((c.registered, c.unregistered), (1, 1))
        p.stopProducing()  # after the end: nothing more happens
        self.assertEqual(c.unregistered, 1)

    def test_stop_while_paused_unregisters_and_fails_done_once(self) -> None:
        c = Consumer()
        p = self.reader.producer(self.file, 0, 16, c)
        p.pauseProducing()
        d = p.start()
        self.assertNoResult(d)
        p.stopProducing()
        p.stopProducing()
        self.failureResultOf(d, ConnectionLost)
        self.assertEqual((c.registered, c.unregistered), (1, 1))
        self.assertIsNone(c.producer)
        p.resumeProducing()  # a late resume writes nothing
        self.assertEqual(c.data, b"")

    def test_cancelling_done_stops_the_producer(self) -> None:
        c = Consumer()
        p = self.reader.producer(self.file, 0, 16, c)
        p.pauseProducing()
        d = p.start()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(c.unregistered, 1)
        p.stopProducing()  # what send_file does after a cancel: no AlreadyCalledError
        self.assertEqual(c.unregistered, 1)

    def test_stop_while_a_block_is_loading(self) -> None:
        loading: Deferred[bytes] = Deferred()
        self.reader.read_block = lambda f, i: loading  # type: ignore[method-assign]
        c = Consumer()
        p = self.reader.producer(self.file, 0, 16, c)
        d = p.start()
        p.stopProducing()
        self.failureResultOf(d, ConnectionLost)
        loading.callback(b"abcd")  # the late block is dropped
        self.assertEqual(c.data, b"")
        self.assertEqual((c.registered, c.unregistered), (1, 1))

    def test_failed_read_unregisters_once(self) -> None:
        def broken(path: str, offset: int, length: int) -> bytes:
            raise OSError("disk gone")

        self.reader._read = broken
        c = Consumer()
        p = self.reader.producer(self.file, 0, 16, c)
        self.failureResultOf(p.start(), OSError)
        self.flushLoggedErrors(OSError)
        p.stopProducing()
        self.assertEqual((c.registered, c.unregistered), (1, 1))

    def test_paused_by_the_consumer_it_writes_no_more(self) -> None:
        """Without sendfile (TLS, tests), the producer writes a block at a time and stops when the
        consumer (a transport whose buffer is full) pauses it."""

        class Pausing(Consumer):
            def write(self, data: bytes) -> None:
                super().write(data)
                if len(self.data) >= 6:
                    self.producer.pauseProducing()

        c = Pausing()
        p = self.reader.producer(self.file, 0, 16, c)
        d = p.start()
        self.assertEqual(c.data, self.content[:8])  # stopped after the block that went over
        self.assertNoResult(d)
        c.data = b""
        p.resumeProducing()
        self.assertEqual(c.data, self.content[8:16])  # paused again, at the range's end
        p.resumeProducing()  # the transport drained: the range is done
        self.successResultOf(d)
        self.assertEqual((c.registered, c.unregistered), (1, 1))


class BlockCacheTests(SynchronousTestCase):
    """The chunk cache holds at most its byte budget, evicting the least recently used block."""

    def test_budget_evicts_least_recently_used(self) -> None:
        cache = BlockCache(budget=10)
        cache.put(("a", 0), b"x" * 4)
        cache.put(("a", 1), b"y" * 4)
        self.assertEqual(cache.get(("a", 0)), b"x" * 4)  # now the most recently used
        cache.put(("b", 0), b"z" * 4)  # 12 bytes > 10: ("a", 1) goes
        self.assertIsNone(cache.get(("a", 1)))
        self.assertEqual(cache.get(("a", 0)), b"x" * 4)
        self.assertEqual(cache.stats()["bytes"], 8)
        self.assertLessEqual(cache.used, cache.budget)

    def test_block_larger_than_the_budget_is_not_kept(self) -> None:
        cache = BlockCache(budget=10)
        cache.put(("a", 0), b"x" * 11)
        self.assertIsNone(cache.get(("a", 0)))
        self.assertEqual(cache.used, 0)

    def test_discard_file_frees_its_blocks(self) -> None:
        cache = BlockCache(budget=100)
        cache.put(("a", 0), b"x" * 4)
        cache.put(("b", 0), b"y" * 4)
        cache.discard_file("a")
        self.assertIsNone(cache.get(("a", 0)))
        self.assertEqual(cache.used, 4)

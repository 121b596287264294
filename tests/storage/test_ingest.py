"""The ingest on real worker threads (``SerialWorker``) and the real reactor.

tests/storage/test_store.py drives the store with inline workers; here every stage runs on its own
thread as in the gateway: bytes handed over by the reactor (``write``, paused and resumed through
flow control) or gathered on a body thread (``feed``/``reserve``), hashes and files checked
against a plain recomputation, worker failures reported, and every thread gone at the end.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tgateway.errors import ApiError, InsufficientStorage, PayloadTooLarge
from tgateway.storage import directio
from tgateway.storage.ingest import MAX_IN_FLIGHT, Ingest, IngestResult
from tgateway.storage.workers import SerialWorker, Worker

CS = 64 * 1024  # chunk (piece) size: a multiple of the O_DIRECT alignment


def _pieces(data: bytes) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + CS]).digest() for i in range(0, len(data), CS))


def _chunks(data: bytes) -> tuple[tuple[str, int], ...]:
    return tuple((hashlib.sha256(data[i:i + CS]).hexdigest(), len(data[i:i + CS]))
                 for i in range(0, len(data), CS))


def _ingest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tgateway-")
            and t.name.split("-", 1)[1] in ("lane0", "lane1", "sha256", "feed", "fsync")]


class ThreadedIngestTests(TestCase):
    def setUp(self) -> None:
        self.tmp_root = Path(tempfile.mkdtemp(prefix="tgateway-ingest-"))
        self.addCleanup(shutil.rmtree, self.tmp_root, True)
        self._n = 0
        self.before = set(_ingest_threads())

    def _workers(self, name: str) -> Worker:
        return SerialWorker(reactor, name)

    def make(self, *, chunked: bool, direct_io: bool = True, max_size: int = 1 << 40) -> Ingest:
        self._n += 1
        tmp = self.tmp_root / str(self._n)
        tmp.mkdir()
        return Ingest(tmp=tmp, piece_length=CS, chunked=chunked, max_size=max_size,
                      workers=self._workers, to_reactor=reactor.callFromThread,
                      direct_io=direct_io)

    async def _threads_gone(self) -> None:
        """Every worker thread started by the test ends (stop() was queued to each)."""
        for _ in range(200):
            if not set(_ingest_threads()) - self.before:
                return
            d: Deferred[None] = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
        self.fail(f"worker threads still running: {set(_ingest_threads()) - self.before}")

    def check_result(self, result: IngestResult, data: bytes, *, chunked: bool) -> None:
        self.assertEqual(result.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual(result.size, len(data))
        self.assertEqual(result.pieces, _pieces(data))
        self.assertEqual(result.chunks, _chunks(data))
        self.assertEqual(result.chunked_files, chunked)
        if chunked:
            for i in range(len(result.chunks)):
                self.assertEqual(result.chunk_file(i).read_bytes(), data[i * CS:(i + 1) * CS])
        else:
            self.assertEqual(result.blob_file.read_bytes(), data)

    async def test_bytes_written_from_the_reactor_are_hashed_and_stored_by_the_threads(self) -> None:
        """Every boundary case, chunked and blob, O_DIRECT and the page cache: the result is
        what a plain recomputation gives, and the temp files hold exactly the bytes."""
        for size in (1, CS - 1, CS, CS + 1, 7 * CS + 13):
            for chunked in (True, False):
                for direct in (True, False):
                    data = os.urandom(size)
                    ingest = self.make(chunked=chunked, direct_io=direct)
                    for i in range(0, size, 10_000):
                        ingest.write(data[i:i + 10_000])
                    result = await ingest.finish()
                    self.check_result(result, data, chunked=chunked)
                    await ingest.abort()
                    self.assertFalse(result.tmp.exists())
        await self._threads_gone()

    async def test_a_body_thread_feeds_into_reserved_space_without_a_copy(self) -> None:
        """The HTTP path: a thread receives into ``reserve()`` and feeds the received prefix;
        those bytes are only counted, and the few fed from elsewhere are copied."""
        data = os.urandom(5 * CS + 100)
        ingest = self.make(chunked=True)
        tail = 100

        def body_thread() -> None:
            pos = 0
            while pos < len(data) - tail:
                space = ingest.reserve()
                n = min(len(space), 3000, len(data) - tail - pos)
                space[:n] = data[pos:pos + n]
                ingest.feed(space[:n])
                pos += n
            ingest.feed(data[pos:])  # not received in place: copied

        await deferToThread(body_thread)
        result = await ingest.finish()
        self.check_result(result, data, chunked=True)
        self.assertEqual(ingest.copied, tail)
        await ingest.abort()
        await self._threads_gone()

    async def test_a_fast_source_is_paused_until_the_threads_catch_up(self) -> None:
        """More than ``MAX_IN_FLIGHT`` bytes waiting for the feeder pause the source; it is
        resumed once the workers took half of them."""
        ingest = self.make(chunked=True)
        events: list[str] = []
        resumed: Deferred[None] = Deferred()

        def pause() -> None:
            events.append("pause")

        def resume() -> None:
            events.append("resume")
            if not resumed.called:
                resumed.callback(None)

        ingest.set_flow_control(pause, resume)
        block = os.urandom(1 << 20)
        blocks: list[bytes] = []
        while "pause" not in events:
            ingest.write(block)
            blocks.append(block)
            self.assertLessEqual(len(blocks) << 20, 4 * MAX_IN_FLIGHT, "never paused")
        await resumed
        data = b"".join(blocks)
        self.assertEqual(events[:2], ["pause", "resume"])
        result = await ingest.finish()
        self.check_result(result, data, chunked=True)
        await ingest.abort()
        await self._threads_gone()

    async def test_a_full_disk_on_a_lane_thread_is_507_and_abort_leaves_nothing(self) -> None:
        """A write failing on a worker thread (ENOSPC) surfaces on the reactor as 507 at the
        next write or at ``finish``; ``abort`` removes the temporary folder and ends the threads."""
        real = directio.pwrite_all
        calls = itertools.count()

        def full(fd: int, view: memoryview, offset: int) -> None:
            if next(calls) >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(fd, view, offset)

        self.patch(directio, "pwrite_all", full)
        ingest = self.make(chunked=True, direct_io=False)
        with self.assertRaises(InsufficientStorage):
            for _ in range(50):
                ingest.write(os.urandom(CS))
            await ingest.finish()
        tmp = ingest.tmp
        await ingest.abort()
        self.assertFalse(tmp.exists())
        await self._threads_gone()

    async def test_the_size_limit_holds_on_the_feeding_thread_too(self) -> None:
        ingest = self.make(chunked=False, max_size=CS)
        errors: list[Any] = []

        def body_thread() -> None:
            try:
                ingest.feed(b"x" * CS)
                ingest.feed(b"x")
            except PayloadTooLarge as e:
                errors.append(e)

        await deferToThread(body_thread)
        self.assertEqual(len(errors), 1)
        tmp = ingest.tmp
        await ingest.abort()
        self.assertFalse(tmp.exists())
        await self._threads_gone()

    async def test_abort_in_the_middle_stops_every_thread_and_removes_the_files(self) -> None:
        ingest = self.make(chunked=True)
        for _ in range(20):
            ingest.write(os.urandom(CS))
        self.assertTrue(set(_ingest_threads()) - self.before)
        tmp = ingest.tmp
        await ingest.abort()
        self.assertFalse(tmp.exists())
        with self.assertRaises(ApiError):  # "aborted": nothing more is taken
            ingest.write(b"more")
        await self._threads_gone()

"""The one chunk reader: bytes of a stored file by piece or by range, through an LRU cache.

A stored file is a sequence of blocks of ``piece_length`` bytes (block i is BitTorrent piece i):
for a chunked file block i is chunk file i, for a blob it is a slice of the blob file. Blocks are
loaded on a small thread pool (disk reads never block the reactor), kept in a byte-budgeted LRU
cache, and shared between concurrent readers of the same block. Web downloads, webseed, Blossom
and the BitTorrent peer all read through here, so this is where a file's last access is noted
(``on_read``: :meth:`tgateway.storage.access.AccessLog.touch`, a write in memory).

The cache holds at most its byte budget; :meth:`BlockCache.sweep` (retention, every 10 minutes)
also drops the blocks nobody read since the sweep before, so an idle gateway gives memory back.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from .disk import DiskLayout
from .model import StoredFile

BlockKey = tuple[str, int]


class BlockCache:
    """LRU of blocks, bounded by a byte budget (0 disables caching)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[BlockKey, bytes] = OrderedDict()
        self._used_since_sweep: set[BlockKey] = set()
        self.swept = 0  # blocks dropped by sweeps

    def get(self, key: BlockKey) -> bytes | None:
        data = self._items.get(key)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        self._used_since_sweep.add(key)
        return data

    def put(self, key: BlockKey, data: bytes) -> None:
        if len(data) > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= len(old)
        self._items[key] = data
        self._used_since_sweep.add(key)
        self.used += len(data)
        while self.used > self.budget:
            old_key, evicted = self._items.popitem(last=False)
            self._used_since_sweep.discard(old_key)  # only cached blocks are in it
            self.used -= len(evicted)

    def sweep(self) -> int:
        """Drop the blocks not read (nor loaded) since the previous sweep; returns how many.
        Called every 10 minutes, a block stays 10 to 20 minutes after its last read."""
        idle = [k for k in self._items if k not in self._used_since_sweep]
        for key in idle:
            self.used -= len(self._items.pop(key))
        self._used_since_sweep = set()
        self.swept += len(idle)
        return len(idle)

    def discard_file(self, sha256: str) -> None:
        for key in [k for k in self._items if k[0] == sha256]:
            self.used -= len(self._items.pop(key))
            self._used_since_sweep.discard(key)

    def stats(self) -> dict[str, int]:
        return {"bytes": self.used, "budget": self.budget, "blocks": len(self._items),
                "hits": self.hits, "misses": self.misses, "swept": self.swept}


def _read_exact(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
        if len(data) != length:
            parts = [data]
            got = len(data)
            while got < length:
                more = os.pread(fd, length - got, offset + got)
                if not more:
                    raise OSError(f"{path}: short read ({got} of {length} bytes)")
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


class ChunkReader:
    log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        layout: DiskLayout,
        cache: BlockCache,
        pool: ThreadPool | None = None,
        read_block: Callable[[str, int, int], bytes] = _read_exact,
        on_read: Callable[[str], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self._on_read = on_read  # told the sha256 of every file read (its last access)
        self.layout = layout
        self.cache = cache
        self._pool = pool
        self._read = read_block
        self._loading: dict[BlockKey, Deferred[bytes]] = {}

    def block_location(self, f: StoredFile, index: int) -> tuple[str, int, int]:
        """(path, offset, length) of block ``index`` of ``f``."""
        if not 0 <= index < f.piece_count:
            raise IndexError(index)
        if f.storage == "chunked":
            chunk = f.chunks[index]
            return str(self.layout.chunk_path(chunk.sha256)), 0, chunk.size
        start = index * f.piece_length
        return str(self.layout.blob_path(f.sha256)), start, min(f.piece_length, f.size - start)

    def read_block(self, f: StoredFile, index: int) -> Deferred[bytes]:
        """Block ``index`` (piece ``index``) of ``f``, from the cache or the disk."""
        if self._on_read is not None:
            self._on_read(f.sha256)
        key = (f.sha256, index)
        data = self.cache.get(key)
        if data is not None:
            return succeed(data)
        loading = self._loading.get(key)
        if loading is None:
            path, offset, length = self.block_location(f, index)
            if self._pool is None:
                try:
                    data = self._read(path, offset, length)
                except Exception:
                    from twisted.internet.defer import fail

                    return fail()
                self.cache.put(key, data)
                return succeed(data)
            loading = deferToThreadPool(self._reactor, self._pool, self._read, path, offset, length)

            def loaded(data: bytes) -> bytes:
                self._loading.pop(key, None)
                self.cache.put(key, data)
                return data

            def failed(failure: Failure) -> Failure:
                self._loading.pop(key, None)
                return failure

            loading.addCallbacks(loaded, failed)
            self._loading[key] = loading
        # Each caller gets its own Deferred so one caller's errback does not affect others.
        d: Deferred[bytes] = Deferred()
        loading.addCallbacks(lambda data: (d.callback(data), data)[1],
                             lambda f: (d.errback(f), None)[1])
        return d

    def producer(self, f: StoredFile, start: int, end: int, consumer: IConsumer) -> RangeProducer:
        """A push producer writing bytes ``start`` to ``end`` (exclusive) of ``f`` to ``consumer``."""
        if self._on_read is not None:
            self._on_read(f.sha256)
        return RangeProducer(self, f, start, end, consumer)


@implementer(IPushProducer)
class RangeProducer:
    """Writes a byte range to a consumer, honouring pause/resume, reading ahead one block.

    ``start()`` registers with the consumer and returns a Deferred that fires (None) when every
    byte was written, or fails if the read failed or the consumer stopped us; cancelling it stops
    the producer. However it ends, the file it opened is closed and it unregisters from the
    consumer exactly once (:meth:`_finish`).
    """

    log = Logger()

    def __init__(
        self,
        reader: ChunkReader,
        f: StoredFile,
        start: int,
        end: int,
        consumer: IConsumer,
    ) -> None:
        self.reader = reader
        self.file = f
        self.pos = start
        self.end = end
        self.consumer = consumer
        self.paused = False
        self.stopped = False
        # Cancelling ``done`` (the request handler was cancelled) ends the producer too.
        self.done: Deferred[None] = Deferred(lambda d: self._finish(Failure(CancelledError())))
        self._block_index = -1
        self._block: bytes | None = None
        self._waiting = False
        self._ahead: tuple[int, Deferred[bytes]] | None = None
        self._sendfile: _SendfileTarget | None = None
        self._registered = False
        self._finished = False

    def start(self) -> Deferred[None]:
        if self.pos >= self.end:
            self._finish()
            return self.done
        self.consumer.registerProducer(self, True)
        self._registered = True
        self._sendfile = _SendfileTarget.for_consumer(self.consumer)
        if self._sendfile is not None:
            self._sendfile.write_headers()
            self._wait_for_drain()
            return self.done
        self._pump()
        return self.done

    def _wait_for_drain(self) -> None:
        """Sleep until the transport's write buffer is empty (it then resumes us)."""
        assert self._sendfile is not None
        self.paused = True
        self._sendfile.resume_when_drained()

    def _finish(self, failure: Failure | None = None) -> None:
        """The one way out, whichever way the range ends (all sent, a read failed, the consumer
        stopped us): close the file sendfile reads, unregister from the consumer (once), then
        settle ``done``. Later calls do nothing."""
        if self._finished:
            return
        self._finished = True
        self.stopped = True
        self._ahead = None
        if self._sendfile is not None:
            self._sendfile.close()
        if self._registered:
            self._registered = False
            try:
                self.consumer.unregisterProducer()
            except Exception:
                # A twisted.web Request whose connection is already gone has no channel to
                # unregister from; it is never finished, so nothing will complain later.
                self.log.debug("unregistering from a consumer that is gone failed")
        if self.done.called:
            return
        if failure is None:
            self.done.callback(None)
        else:
            self.done.errback(failure)

    def _fetch(self, index: int) -> Deferred[bytes]:
        if self._ahead is not None and self._ahead[0] == index:
            d = self._ahead[1]
            self._ahead = None
            return d
        return self.reader.read_block(self.file, index)

    def _pump(self) -> None:
        if self._sendfile is not None:
            self._pump_sendfile()
            return
        pl = self.file.piece_length
        while not self.paused and not self.stopped and not self._waiting:
            if self.pos >= self.end:
                self._finish()
                return
            index = self.pos // pl
            if index != self._block_index:
                self._block = None
                self._block_index = index
                d = self._fetch(index)
                nxt = index + 1
                if nxt * pl < self.end and self._ahead is None:
                    self._ahead = (nxt, self.reader.read_block(self.file, nxt))
                    self._ahead[1].addErrback(lambda f: None)  # reported when used
                if not d.called:
                    self._waiting = True
                    d.addCallbacks(self._got_block, self._failed)
                    return
                d.addCallbacks(self._got_block_sync, self._failed)
                if self._block is None:
                    return
            assert self._block is not None
            block = self._block
            offset = self.pos - index * pl
            stop = min(len(block), self.end - index * pl)
            # Transports want bytes: a whole block goes out without a copy.
            data = block if offset == 0 and stop == len(block) else block[offset:stop]
            self.pos += len(data)
            try:
                self.consumer.write(data)
            except Exception:
                self._failed(Failure())
                return

    def _pump_sendfile(self) -> None:
        """Zero-copy path: the kernel sends straight from the page cache to the socket."""
        target = self._sendfile
        assert target is not None
        pl = self.file.piece_length
        while not self.paused and not self.stopped:
            if self.pos >= self.end:
                self._finish()
                return
            if not target.drained():
                self._wait_for_drain()
                return
            index = self.pos // pl
            try:
                path, base, length = self.reader.block_location(self.file, index)
                offset = self.pos - index * pl
                count = min(length - offset, self.end - self.pos)
                sent = target.send(path, base + offset, count)
            except OSError:
                self.stopped = True
                self._finish(Failure())
                return
            self.pos += sent
            if sent < count:
                # The socket is full: let the transport tell us when it can take more.
                self._wait_for_drain()
                return

    def _got_block_sync(self, data: bytes) -> None:
        self._block = data

    def _got_block(self, data: bytes) -> None:
        self._waiting = False
        self._block = data
        if not self.stopped:
            self._pump()

    def _failed(self, failure: Failure) -> None:
        self._waiting = False
        self.log.failure("reading {sha256} failed", failure, sha256=self.file.sha256)
        self.stopped = True
        self._finish(failure)

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self._pump()

    def stopProducing(self) -> None:
        """The consumer is gone (the client closed, the server is stopping): end at once."""
        from twisted.internet.error import ConnectionLost

        self._finish(Failure(ConnectionLost("consumer stopped the producer")))


class _SendfileTarget:
    """A twisted.web response on a plain TCP socket, written with ``os.sendfile``.

    Used only when it is safe: a non-chunked HTTP/1.x response whose transport is a TCP
    socket with Twisted's usual write buffer. Bytes go out with sendfile only while that buffer
    is empty, so ordering with the headers is kept; when the socket is full the transport is
    marked as having paused its producer, so it resumes us once its buffer drains.
    """

    def __init__(self, request: Any, transport: Any) -> None:
        self.request = request
        self.transport = transport
        self.sock_fd = transport.socket.fileno()
        self._fd: int | None = None
        self._path: str | None = None

    @classmethod
    def for_consumer(cls, consumer: Any) -> _SendfileTarget | None:
        if not hasattr(os, "sendfile"):
            return None
        transport = getattr(consumer, "transport", None)
        channel = getattr(consumer, "channel", None)
        if transport is None or channel is None or getattr(consumer, "chunked", True):
            return None
        sock = getattr(transport, "socket", None)
        if sock is None or getattr(transport, "TLS", False) or getattr(transport, "_tlsConnection", None):
            return None
        for attr in ("dataBuffer", "offset", "_tempDataLen", "producerPaused", "startWriting"):
            if not hasattr(transport, attr):
                return None
        if type(transport).__module__ != "twisted.internet.tcp":
            return None
        return cls(consumer, transport)

    def write_headers(self) -> None:
        # Request.write with no data sends the status line and headers only.
        self.request.write(b"")

    def drained(self) -> bool:
        t = self.transport
        return len(t.dataBuffer) - t.offset == 0 and not t._tempDataLen

    def resume_when_drained(self) -> None:
        t = self.transport
        # doWrite resumes the transport's producer (the HTTP channel, which resumes the
        # request's producer: us) once everything buffered is sent and producerPaused is set.
        t.producerPaused = True
        if self.drained():
            # Nothing buffered: make the reactor watch for writability anyway.
            t.startWriting()

    def send(self, path: str, offset: int, count: int) -> int:
        if path != self._path:
            self.close()
            self._fd = os.open(path, os.O_RDONLY)
            self._path = path
            try:
                os.posix_fadvise(self._fd, offset, count, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
        assert self._fd is not None
        total = 0
        while total < count:
            try:
                n = os.sendfile(self.sock_fd, self._fd, offset + total, count - total)
            except BlockingIOError:
                break
            if n == 0:
                raise OSError(f"{path}: unexpected end of file")
            total += n
        self.request.sentLength += total
        return total

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._path = None

"""Streaming ingest: hash and write an upload as its bytes arrive.

The reactor thread hands batches of received bytes to two serial workers:

- the *hasher* computes the SHA-256 of the whole file and the SHA-1 of every piece;
- the *writer* computes the SHA-256 of every chunk (chunk i is piece i) and writes the bytes to
  temporary files: one file per chunk for a large upload, one file for a blob. Finished chunk
  files are fsynced by a third worker while the upload goes on.

hashlib releases the GIL, so the workers run in parallel with the reactor. When more than
``MAX_IN_FLIGHT`` bytes wait for the workers the source is paused (TCP backpressure), so memory
per upload stays bounded. Nothing is read twice. ``finish`` returns an :class:`IngestResult`
whose temporary files are fsynced but not yet placed; the store places them and commits the row.
``abort`` removes the temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.errors import ApiError, InsufficientStorage, PayloadTooLarge

BATCH = 1 << 20
MAX_IN_FLIGHT = 8 << 20


# --------------------------------------------------------------------------- workers


class SerialWorker:
    """Runs submitted functions one after another on its own thread."""

    def __init__(self, reactor: Any, name: str) -> None:
        self._reactor = reactor
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Deferred[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, d = item
            try:
                result = fn()
            except BaseException:
                f = Failure()
                self._reactor.callFromThread(d.errback, f)
            else:
                self._reactor.callFromThread(d.callback, result)

    def submit(self, fn: Callable[[], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._queue.put((fn, d))
        return d

    def stop(self) -> None:
        self._queue.put(None)


class InlineWorker:
    """Runs submitted functions at once, in the calling thread (tests)."""

    def submit(self, fn: Callable[[], Any]) -> Deferred[Any]:
        from twisted.internet.defer import fail, succeed

        try:
            return succeed(fn())
        except BaseException:
            return fail()

    def stop(self) -> None:
        pass


WorkerFactory = Callable[[str], Any]


# --------------------------------------------------------------------------- thread-side state


class _Hasher:
    """Whole-file SHA-256 and per-piece SHA-1 (runs on the hasher thread only)."""

    def __init__(self, piece_length: int) -> None:
        self.piece_length = piece_length
        self.whole = hashlib.sha256()
        self.piece = hashlib.sha1()
        self.fill = 0
        self.pieces: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.whole.update(data)
        view = memoryview(data)
        pl = self.piece_length
        while view:
            take = min(len(view), pl - self.fill)
            self.piece.update(view[:take])
            self.fill += take
            view = view[take:]
            if self.fill == pl:
                self.pieces.append(self.piece.digest())
                self.piece = hashlib.sha1()
                self.fill = 0

    def feed_all(self, parts: list[bytes]) -> None:
        for part in parts:
            self.feed(part)

    def close(self) -> tuple[str, bytes]:
        if self.fill:
            self.pieces.append(self.piece.digest())
            self.fill = 0
        return self.whole.hexdigest(), b"".join(self.pieces)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Writer:
    """Per-chunk SHA-256 and the temporary files (runs on the writer thread only).

    In chunked mode chunk i goes to ``<tmp>/<i>``; in blob mode everything goes to
    ``<tmp>/blob``. Closed chunk files are passed to ``sync`` to be fsynced off this thread.
    """

    def __init__(self, tmp: Path, piece_length: int, chunked: bool, sync: Any) -> None:
        self.tmp = tmp
        self.piece_length = piece_length
        self.chunked = chunked
        self.sync = sync
        self.sync_results: list[Deferred[Any]] = []
        self.chunk_hash = hashlib.sha256()
        self.fill = 0
        self.chunks: list[tuple[str, int]] = []
        self.fd: int | None = None
        if not chunked:
            self.fd = self._open(self.tmp / "blob")

    @staticmethod
    def _open(path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def feed(self, data: bytes) -> list[int]:
        """Hash and write; return the fds of finished chunk files (to fsync and close)."""
        view = memoryview(data)
        pl = self.piece_length
        done: list[int] = []
        while view:
            take = min(len(view), pl - self.fill)
            part = view[:take]
            self.chunk_hash.update(part)
            if self.fd is None:
                self.fd = self._open(self.tmp / str(len(self.chunks)))
            _write_all(self.fd, part)
            self.fill += take
            view = view[take:]
            if self.fill == pl:
                done.extend(self._end_chunk())
        return done

    def feed_all(self, parts: list[bytes]) -> list[int]:
        done: list[int] = []
        for part in parts:
            done.extend(self.feed(part))
        return done

    def _end_chunk(self) -> list[int]:
        self.chunks.append((self.chunk_hash.hexdigest(), self.fill))
        self.chunk_hash = hashlib.sha256()
        self.fill = 0
        if self.chunked and self.fd is not None:
            fd, self.fd = self.fd, None
            return [fd]
        return []

    def close(self) -> list[int]:
        fds = self._end_chunk() if self.fill else []
        if self.fd is not None:
            fds.append(self.fd)
            self.fd = None
        return fds

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _fsync_close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class IngestResult:
    """Everything known about the bytes of a finished upload. Temp files are fsynced."""

    sha256: str
    size: int
    pieces: bytes  # concatenated SHA-1 digests
    chunks: tuple[tuple[str, int], ...]  # (sha256, size) per chunk
    tmp: Path
    chunked_files: bool  # True: tmp/<i> per chunk, False: tmp/blob

    def chunk_file(self, index: int) -> Path:
        return self.tmp / str(index)

    @property
    def blob_file(self) -> Path:
        return self.tmp / "blob"


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Kernel-side copy (no hashing, no Python buffers)."""
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, length - done, offset + done)
        except OSError:
            os.lseek(src, offset + done, os.SEEK_SET)
            buf = os.read(src, min(length - done, 1 << 20))
            n = len(buf)
            _write_all(dst, memoryview(buf))
        if n == 0:
            raise OSError("unexpected end of file while copying")
        done += n


def convert_layout(result: IngestResult, want_chunked: bool) -> IngestResult:
    """Re-cut the temp files (blob <-> chunks) with kernel copies; hashes stay as computed."""
    if result.chunked_files == want_chunked:
        return result
    if want_chunked:
        src = os.open(result.blob_file, os.O_RDONLY)
        try:
            offset = 0
            for i, (_, size) in enumerate(result.chunks):
                dst = os.open(result.chunk_file(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    _copy_range(src, dst, offset, size)
                    os.fsync(dst)
                finally:
                    os.close(dst)
                offset += size
        finally:
            os.close(src)
        result.blob_file.unlink()
    else:
        dst = os.open(result.blob_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for i, (_, size) in enumerate(result.chunks):
                src = os.open(result.chunk_file(i), os.O_RDONLY)
                try:
                    _copy_range(src, dst, 0, size)
                finally:
                    os.close(src)
                result.chunk_file(i).unlink()
            os.fsync(dst)
        finally:
            os.close(dst)
    return IngestResult(
        sha256=result.sha256,
        size=result.size,
        pieces=result.pieces,
        chunks=result.chunks,
        tmp=result.tmp,
        chunked_files=want_chunked,
    )


# --------------------------------------------------------------------------- the ingest


class Ingest:
    """One upload in progress. Reactor-thread API: write / finish / abort."""

    log = Logger()

    def __init__(
        self,
        *,
        tmp: Path,
        piece_length: int,
        chunked: bool,
        max_size: int,
        workers: WorkerFactory,
    ) -> None:
        self.tmp = tmp
        self.piece_length = piece_length
        self.max_size = max_size
        self.size = 0
        self._buf: list[bytes] = []
        self._buflen = 0
        self._in_flight = 0
        self._paused = False
        self._pause: Callable[[], None] | None = None
        self._resume: Callable[[], None] | None = None
        self._error: ApiError | None = None
        self._closed = False
        self._stopped = False
        self._pending: list[Deferred[Any]] = []
        self._hasher_state = _Hasher(piece_length)
        self._hasher = workers("tgateway-hash")
        self._writer = workers("tgateway-write")
        self._syncer = workers("tgateway-fsync")
        self._writer_state = _Writer(tmp, piece_length, chunked, self._syncer)
        self.chunked_files = chunked

    # flow control ---------------------------------------------------------

    def set_flow_control(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        """Called with the source's pause/resume; ingest pauses it while workers catch up."""
        self._pause, self._resume = pause, resume

    def _check_pause(self) -> None:
        if not self._paused and self._in_flight >= MAX_IN_FLIGHT and self._pause:
            self._paused = True
            self._pause()
        elif self._paused and self._in_flight < MAX_IN_FLIGHT // 2 and self._resume:
            self._paused = False
            self._resume()

    # data -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Accept bytes. Raises PayloadTooLarge or a stored worker error (e.g. disk full)."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("write after finish/abort")
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_size:
            self._error = PayloadTooLarge(
                f"upload is larger than the limit of {self.max_size} bytes"
            )
            raise self._error
        self._buf.append(bytes(data))
        self._buflen += len(data)
        if self._buflen >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._buflen:
            return
        # The received buffers go to the workers as they are: no copy on the reactor thread.
        batch, size = self._buf, self._buflen
        self._buf, self._buflen = [], 0
        self._in_flight += size
        writer_state = self._writer_state
        hasher_state = self._hasher_state
        d1 = self._hasher.submit(lambda: hasher_state.feed_all(batch))
        d2 = self._writer.submit(lambda: writer_state.feed_all(batch))
        d2.addCallback(self._sync_chunks)
        d = gatherResults([d1, d2], consumeErrors=True)

        def done(result: Any) -> Any:
            self._in_flight -= size
            if self._pending and self._pending[0] is d:
                self._pending.pop(0)
            self._check_pause()
            return result

        d.addBoth(done)
        d.addErrback(self._worker_failed)
        self._pending.append(d)
        self._check_pause()

    def _sync_chunks(self, fds: list[int]) -> None:
        if fds:
            self._writer_state.sync_results.append(self._syncer.submit(lambda: _fsync_close(fds)))

    def _worker_failed(self, failure: Failure) -> None:
        if self._error is not None:
            return
        exc = failure.value
        inner = getattr(exc, "subFailure", None)
        if inner is not None:
            exc = inner.value
        if isinstance(exc, OSError) and exc.errno in (28, 122):  # ENOSPC, EDQUOT
            self._error = InsufficientStorage("not enough disk space to store the upload")
        else:
            self.log.failure("ingest worker failed", failure)
            self._error = ApiError("the upload could not be stored", status=500, code="internal")
        if self._paused and self._resume:
            self._paused = False
            self._resume()

    # end --------------------------------------------------------------------

    async def finish(self) -> IngestResult:
        """Wait for the workers, fsync everything, return the result (temp files in place)."""
        if self._error is not None:
            raise self._error
        self._flush()
        self._closed = True
        from twisted.internet.defer import DeferredList

        if self._pending:
            await DeferredList(list(self._pending), consumeErrors=True)
        if self._error is not None:
            raise self._error
        writer_state = self._writer_state
        fds = await self._writer.submit(writer_state.close)
        self._sync_chunks(fds)
        sha256, pieces = await self._hasher.submit(self._hasher_state.close)
        results = await DeferredList(writer_state.sync_results, consumeErrors=True)
        for ok, value in results:
            if not ok:
                self._worker_failed(value)
                raise self._error  # type: ignore[misc]
        self._stop_workers()
        return IngestResult(
            sha256=sha256,
            size=self.size,
            pieces=pieces,
            chunks=tuple(writer_state.chunks),
            tmp=self.tmp,
            chunked_files=self.chunked_files,
        )

    def abort(self) -> Deferred[None]:
        """Stop and remove every temporary file of this upload (after queued work drains)."""
        from twisted.internet.defer import succeed

        if self._stopped:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return succeed(None)
        self._closed = True
        self._buf, self._buflen = [], 0
        if self._error is None:
            self._error = ApiError("upload aborted", status=400, code="aborted")
        pending = list(self._pending)
        writer_state = self._writer_state
        from twisted.internet.defer import DeferredList

        d = DeferredList(pending + list(writer_state.sync_results), consumeErrors=True)
        d.addCallback(lambda _: self._writer.submit(writer_state.discard))
        d.addBoth(lambda _: self._syncer.submit(lambda: shutil.rmtree(self.tmp, ignore_errors=True)))
        d.addBoth(lambda _: self._stop_workers())
        return d

    def _stop_workers(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for w in (self._hasher, self._writer, self._syncer):
            w.stop()

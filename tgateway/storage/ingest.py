"""The ingest: hash and write an upload as its bytes arrive.

One *assembler* takes the bytes in order, on one thread at a time, and gathers them in the
current chunk's page-aligned buffer (copying them, or only counting them when the body reader
received them into that buffer: :meth:`Ingest.reserve`). A full buffer (chunk i, which is piece
i) goes at once to the *SHA-256 chain* thread (the file's SHA-256 and the chunk's, in order: in
one pass with the ``_sha256x2`` extension, see :mod:`tgateway.storage.hashing`, otherwise with
hashlib) and to *lane* i % LANES (the piece's SHA-1, then the write, with O_DIRECT where the
temporary folder takes it); it returns to the upload's small pool when both are done. An fsync
worker makes the chunk files durable while the upload goes on.

The assembler runs either

- on the thread that reads the body (:meth:`Ingest.feed`, used by the HTTP upload routes, whose
  body is read off the reactor: see ``tgateway.http.body``): it waits there for a free buffer,
  which is the backpressure; or
- on the upload's *feeder* worker, for bytes the reactor thread hands over with
  :meth:`Ingest.write` (mirrors, transcoder outputs, bodies the reactor reads): when more than
  ``MAX_IN_FLIGHT`` bytes wait for it the source is paused (TCP backpressure).

The hashing releases the GIL, so these threads run in parallel with the reactor and each other.
The threads are :mod:`tgateway.storage.workers`, the stages :mod:`tgateway.storage.stages`, the
writes :mod:`tgateway.storage.directio`; this module is the state machine that drives them.
Memory per upload is bounded (``POOL`` chunk buffers, plus what waits in flight). Nothing is
read twice. ``finish`` returns an :class:`IngestResult` whose temporary files are fsynced but
not yet placed; the store places them and commits the row. ``abort`` removes the temporary
folder.
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.errors import ApiError, InsufficientStorage, PayloadTooLarge

from . import directio
from .stages import Assembler, BufferPool, Lane, Sha256Chain
from .workers import Worker, WorkerFactory, call_inline

__all__ = [
    "BATCH",
    "HEAD_BYTES",
    "Ingest",
    "IngestResult",
    "LANES",
    "MAX_IN_FLIGHT",
    "POOL",
    "convert_layout",
]

BATCH = 1 << 20  # bytes the reactor gathers before handing them to the feeder
MAX_IN_FLIGHT = 8 << 20  # bytes handed to the feeder and not yet taken by it
LANES = 2
POOL = LANES + 4  # chunk buffers per upload: one filling, the others being hashed and written
HEAD_BYTES = 4096  # the first bytes of an upload, kept for MIME sniffing (IngestResult.head)


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
    head: bytes = b""  # the first HEAD_BYTES bytes (fewer for a shorter file)

    def chunk_file(self, index: int) -> Path:
        return self.tmp / str(index)

    @property
    def blob_file(self) -> Path:
        return self.tmp / "blob"



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
                    directio.copy_range(src, dst, offset, size)
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
                    directio.copy_range(src, dst, 0, size)
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
        head=result.head,
    )


# --------------------------------------------------------------------------- the ingest


class Ingest:
    """One upload in progress.

    Reactor-thread API: ``write`` / ``finish`` / ``abort`` (and ``set_flow_control``). A body
    read off the reactor uses ``feed`` instead of ``write``, from its one reading thread; the
    two are not mixed in one upload. Worker jobs report back to the reactor only when it
    matters (the source can be resumed, a job failed), not once per chunk.
    """

    log = Logger()

    def __init__(
        self,
        *,
        tmp: Path,
        piece_length: int,
        chunked: bool,
        max_size: int,
        workers: WorkerFactory,
        to_reactor: Callable[..., None] = call_inline,
        direct_io: bool = True,  # the temporary folder takes O_DIRECT (takes_direct_io)
        on_removed: Callable[[], None] | None = None,  # (reactor) the temp folder is gone
    ) -> None:
        self.tmp = tmp
        self._on_removed = on_removed
        self.piece_length = piece_length
        self.max_size = max_size
        self.size = 0
        self._to_reactor = to_reactor  # reactor.callFromThread with threaded workers
        self._buf: list[bytes] = []
        self._buflen = 0
        self._lock = threading.Lock()
        self._in_flight = 0  # guarded by _lock
        self._wake_scheduled = False  # guarded by _lock
        self._failure: Failure | None = None  # first worker failure, guarded by _lock
        self._paused = False
        self._pause: Callable[[], None] | None = None
        self._resume: Callable[[], None] | None = None
        self._error: ApiError | None = None
        self._closed = False
        self._stopped = False
        self.chunked_files = chunked
        self._blob_fd: int | None = None
        direct = direct_io and piece_length % directio.ALIGN == 0
        if not chunked:
            self._blob_fd, direct = directio.open_temp(tmp / "blob", direct)
        self.direct_io = direct
        self._pool = BufferPool(piece_length, POOL)
        self._lane_states = [Lane(tmp, piece_length, self._blob_fd, direct) for _ in range(LANES)]
        self._lanes = [workers(f"tgateway-lane{k}") for k in range(LANES)]
        self._chain = Sha256Chain()
        self._hasher = workers("tgateway-sha256")
        self._feeder = workers("tgateway-feed")
        self._syncer = workers("tgateway-fsync")
        self._assembler = Assembler(self._pool, self._store_chunk)
        self._head = b""  # the first bytes, taken from chunk 0 (assembler's thread)

    # flow control ---------------------------------------------------------

    def set_flow_control(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        """Called with the source's pause/resume; ``write`` pauses it while workers catch up."""
        self._pause, self._resume = pause, resume

    def _check_pause(self) -> None:
        with self._lock:
            in_flight = self._in_flight
        if self._error is not None:
            return
        if not self._paused and in_flight >= MAX_IN_FLIGHT and self._pause:
            self._paused = True
            self._pause()
        elif self._paused and in_flight < MAX_IN_FLIGHT // 2 and self._resume:
            self._paused = False
            self._resume()

    def _wake(self) -> None:
        with self._lock:
            self._wake_scheduled = False
        self._check_pause()

    # data -------------------------------------------------------------------

    def _count(self, size: int) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("write after finish/abort")
        self.size += size
        if self.size > self.max_size:
            self._error = PayloadTooLarge(
                f"upload is larger than the limit of {self.max_size} bytes"
            )
            raise self._error

    def write(self, data: bytes) -> None:
        """(reactor) Accept bytes; they are hashed and written on the workers.
        Raises PayloadTooLarge or a stored worker error (e.g. disk full)."""
        if not data:
            return
        self._count(len(data))
        self._buf.append(bytes(data))
        self._buflen += len(data)
        if self._buflen >= BATCH:
            self._flush()

    @property
    def copied(self) -> int:
        """Bytes copied into chunk buffers (the others were received into them)."""
        return self._assembler.copied

    def reserve(self) -> memoryview:
        """(the thread that reads the body) Free space in the current chunk buffer: the reader
        may receive into it and then ``feed`` the received prefix, which is not copied again.
        Waits while every chunk buffer is with the workers."""
        return self._assembler.reserve()

    def feed(self, data: Any) -> None:
        """(the thread that reads the body) Gather bytes into chunk buffers (copied, unless
        they were received into the space ``reserve`` gave); a full buffer goes to the workers
        at once. Waits while every chunk buffer is with the workers. ``data`` may be reused by
        the caller once this returns. Raises PayloadTooLarge or a worker's error."""
        if not len(data):
            return
        with self._lock:
            failure = self._failure
        if failure is not None and self._error is None:
            self._error = _api_error(failure)
        self._count(len(data))
        self._assembler.write(data)

    def _flush(self) -> None:
        if not self._buflen:
            return
        parts, size = self._buf, self._buflen
        self._buf, self._buflen = [], 0
        with self._lock:
            self._in_flight += size
        assembler = self._assembler

        def gather() -> None:
            try:
                for part in parts:
                    assembler.write(part)
            finally:
                self._taken(size)

        self._feeder.post(self._job(gather))
        self._check_pause()

    def _taken(self, size: int) -> None:
        """(feeder thread) ``size`` bytes left the in-flight queue: maybe wake the source."""
        with self._lock:
            self._in_flight -= size
            wake = (self._paused and not self._wake_scheduled
                    and self._in_flight < MAX_IN_FLIGHT // 2)
            if wake:
                self._wake_scheduled = True
        if wake:
            self._to_reactor(self._wake)

    def _store_chunk(self, index: int, buffer: mmap.mmap, size: int) -> None:
        """(assembler's thread) A full chunk buffer goes to the SHA-256 chain and to its lane
        at once (both only read it); it returns to the pool when both are done."""
        if index == 0:
            self._head = bytes(buffer[:min(size, HEAD_BYTES)])
        left = [2]
        chain, lane = self._chain, self._lane_states[index % LANES]

        def release() -> None:
            with self._lock:
                left[0] -= 1
                last = not left[0]
            if last:
                self._pool.give(buffer)

        def failed() -> bool:
            with self._lock:
                return self._failure is not None  # after a failure the rest is only drained

        def hash_chunk() -> None:
            try:
                if not failed():
                    chain.chunk(index, buffer, size)
            finally:
                release()

        def store() -> None:
            try:
                if not failed():
                    self._sync(lane.store(index, buffer, size))
            finally:
                release()

        self._hasher.post(self._job(hash_chunk))
        self._lanes[index % LANES].post(self._job(store))

    def _job(self, fn: Callable[[], Any]) -> Callable[[], None]:
        """Wrap a worker job: the first failure is kept and reported."""

        def run() -> None:
            try:
                fn()
            except BaseException:
                self._thread_failed(Failure())

        return run

    def _sync(self, fds: list[int]) -> None:
        """(any thread) fsync and close finished chunk files on the fsync worker."""
        if fds:
            drop = self.chunked_files and not self.direct_io  # O_DIRECT left nothing cached
            self._syncer.post(self._job(lambda: directio.fsync_close(fds, drop)))

    def _thread_failed(self, failure: Failure) -> None:
        with self._lock:
            if self._failure is not None:
                return
            self._failure = failure
        self._to_reactor(self._worker_failed, failure)

    def _worker_failed(self, failure: Failure) -> None:
        if self._error is not None:
            return
        self._error = _api_error(failure)
        if self._error.status == 500:
            self.log.failure("ingest worker failed", failure)
        if self._paused and self._resume:
            self._paused = False
            self._resume()

    def _raise_failure(self) -> None:
        with self._lock:
            failure = self._failure
        if failure is not None and self._error is None:
            self._worker_failed(failure)
        if self._error is not None:
            raise self._error

    # end --------------------------------------------------------------------

    def _drain(self, workers: list[Worker]) -> Deferred[Any]:
        """Fires when every job queued so far on ``workers`` has run (they are FIFO)."""
        from twisted.internet.defer import DeferredList

        return DeferredList([w.submit(lambda: None) for w in workers], consumeErrors=True)

    async def finish(self) -> IngestResult:
        """Wait for the workers, fsync everything, return the result (temp files in place)."""
        if self._error is not None:
            raise self._error
        self._flush()
        self._closed = True
        await self._feeder.submit(self._assembler.close)
        sha256 = await self._hasher.submit(self._chain.close)
        await self._drain(self._lanes)
        self._raise_failure()
        if self._blob_fd is not None:
            fd, self._blob_fd = self._blob_fd, None
            if self.direct_io:
                os.ftruncate(fd, self.size)  # the last chunk was written padded
            self._sync([fd])
        await self._drain([self._syncer])
        self._raise_failure()
        self._stop_workers()
        done: dict[int, tuple[int, bytes]] = {}
        for lane in self._lane_states:
            done.update(lane.done)
        ordered = [done[i] for i in range(len(done))]
        return IngestResult(
            sha256=sha256,
            size=self.size,
            pieces=b"".join(sha1 for _, sha1 in ordered),
            chunks=tuple((self._chain.chunks[i], n) for i, (n, _) in enumerate(ordered)),
            tmp=self.tmp,
            chunked_files=self.chunked_files,
            head=self._head,
        )

    def abort(self) -> Deferred[None]:
        """Stop and remove every temporary file of this upload (after queued work drains)."""
        from twisted.internet.defer import succeed

        if self._stopped:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._removed()
            return succeed(None)
        self._closed = True
        self._buf, self._buflen = [], 0
        if self._error is None:
            self._error = ApiError("upload aborted", status=400, code="aborted")

        def close_blob(_: Any) -> None:
            if self._blob_fd is not None:
                fd, self._blob_fd = self._blob_fd, None
                os.close(fd)

        d = self._feeder.submit(self._assembler.discard)
        d.addBoth(lambda _: self._drain([self._hasher, *self._lanes]))
        d.addBoth(lambda _: self._drain([self._syncer]))
        d.addBoth(close_blob)
        d.addBoth(lambda _: self._syncer.submit(lambda: shutil.rmtree(self.tmp, ignore_errors=True)))
        d.addBoth(lambda _: self._removed())
        d.addBoth(lambda _: self._stop_workers())
        return d

    def _removed(self) -> None:
        if self._on_removed is not None:
            self._on_removed()

    def _stop_workers(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for w in (self._feeder, self._hasher, *self._lanes, self._syncer):
            w.stop()
        self._pool.close()


def _api_error(failure: Failure) -> ApiError:
    """The HTTP error for a failed worker job: 507 when the disk is full, else 500."""
    exc = failure.value
    inner = getattr(exc, "subFailure", None)
    if inner is not None:
        exc = inner.value
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("not enough disk space to store the upload")
    return ApiError("the upload could not be stored", status=500, code="internal")

"""Streaming ingest: hash and write an upload as its bytes arrive.

The reactor thread cuts batches of received bytes at chunk boundaries (views, no copy) and hands
them to serial worker threads:

- the *whole-file hasher* computes the SHA-256 of the file (one sequential state);
- two *lanes* do the per-chunk work: chunk i belongs to lane i % LANES, which computes its SHA-1
  (piece i) and its SHA-256 and writes it, one part after the other while the bytes are in that
  core's cache; the lanes work on different chunks at the same time. A large upload gets one
  temporary file per chunk; a blob gets one file, written by the lanes at their offsets;
- finished chunk files are fsynced (and dropped from the page cache) by a last worker while the
  upload goes on.

hashlib releases the GIL, so the workers run in parallel with the reactor and each other. When
more than ``MAX_IN_FLIGHT`` bytes wait for the workers the source is paused (TCP backpressure),
so memory per upload stays bounded. Nothing is read twice. ``finish`` returns an
:class:`IngestResult` whose temporary files are fsynced but not yet placed; the store places
them and commits the row. ``abort`` removes the temporary folder.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import queue
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

BATCH = 1 << 20
MAX_IN_FLIGHT = 8 << 20
LANES = 2
ALIGN = 4096  # O_DIRECT buffer, offset and length alignment


# --------------------------------------------------------------------------- workers


class SerialWorker:
    """Runs queued functions one after another on its own thread.

    ``submit`` reports the result to the reactor through a Deferred; ``post`` does not (the
    function reports what matters itself), which spares the reactor a wake-up per job.
    """

    log = Logger()

    def __init__(self, reactor: Any, name: str) -> None:
        self._reactor = reactor
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Deferred[Any] | None] | None] = (
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
                if d is None:
                    self._reactor.callFromThread(self.log.failure, "worker job failed", f)
                else:
                    self._reactor.callFromThread(d.errback, f)
            else:
                if d is not None:
                    self._reactor.callFromThread(d.callback, result)

    def submit(self, fn: Callable[[], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._queue.put((fn, d))
        return d

    def post(self, fn: Callable[[], Any]) -> None:
        """Queue ``fn`` (thread-safe: workers post to each other); no result comes back."""
        self._queue.put((fn, None))

    def stop(self) -> None:
        self._queue.put(None)


class InlineWorker:
    """Runs submitted functions at once, in the calling thread (tests)."""

    log = Logger()

    def submit(self, fn: Callable[[], Any]) -> Deferred[Any]:
        from twisted.internet.defer import fail, succeed

        try:
            return succeed(fn())
        except BaseException:
            return fail()

    def post(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self.log.failure("worker job failed")

    def stop(self) -> None:
        pass


WorkerFactory = Callable[[str], Any]


# --------------------------------------------------------------------------- thread-side state


class _WholeHasher:
    """SHA-256 of the whole file (its own thread)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def feed_all(self, parts: list[bytes]) -> None:
        update = self.hash.update
        for part in parts:
            update(part)

    def close(self) -> str:
        return self.hash.hexdigest()


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class _Chunk:
    __slots__ = ("index", "sha1", "sha256", "fill", "fd")

    def __init__(self, index: int, fd: int | None) -> None:
        self.index = index
        self.sha1 = hashlib.sha1()
        self.sha256 = hashlib.sha256()
        self.fill = 0
        self.fd = fd


def _pwrite_direct(fd: int, view: memoryview, offset: int) -> None:
    """Write an aligned buffer with O_DIRECT; a filesystem that refuses it (EINVAL) gets the
    same bytes through the page cache instead."""
    try:
        _pwrite_all(fd, view, offset)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        _pwrite_all(fd, view, offset)


class _Lane:
    """The chunks ``i % LANES == k`` of one upload (runs on lane k's thread only).

    In chunked mode chunk i goes to ``<tmp>/<i>``; in blob mode to ``blob_fd`` at offset
    ``i * piece_length``. A finished chunk's file descriptor is returned to be fsynced and
    closed off this thread.

    With ``direct`` (the data folder takes O_DIRECT) a chunk is gathered in the lane's aligned
    buffer while it is hashed and written once it is complete, straight from the buffer to the
    disk: no page-cache copy, no page-cache growth, and the fsync has only metadata left to do.
    The last, shorter chunk is written padded to the alignment and truncated to its size.
    Otherwise every part is written through the page cache as it comes.
    """

    def __init__(self, tmp: Path, piece_length: int, blob_fd: int | None, direct: bool) -> None:
        self.tmp = tmp
        self.piece_length = piece_length
        self.blob_fd = blob_fd
        self.direct = direct
        self.buffer = mmap.mmap(-1, piece_length) if direct else None  # page aligned
        self.open: dict[int, _Chunk] = {}
        self.done: dict[int, tuple[str, int, bytes]] = {}  # index -> (sha256, size, sha1)

    def _open_chunk(self, index: int, direct: bool) -> int:
        return open_temp(self.tmp / str(index), direct)[0]

    def feed(self, index: int, parts: list[memoryview]) -> list[int]:
        chunk = self.open.get(index)
        if chunk is None:
            fd = None
            if self.blob_fd is None and not self.direct:
                fd = self._open_chunk(index, False)
            chunk = self.open[index] = _Chunk(index, fd)
        for part in parts:
            chunk.sha1.update(part)
            chunk.sha256.update(part)
            n = len(part)
            if self.buffer is not None:
                self.buffer[chunk.fill:chunk.fill + n] = part
            elif chunk.fd is not None:
                _pwrite_all(chunk.fd, part, chunk.fill)
            else:
                assert self.blob_fd is not None
                _pwrite_all(self.blob_fd, part, index * self.piece_length + chunk.fill)
            chunk.fill += n
        if chunk.fill == self.piece_length:
            return self._end(chunk)
        return []

    def _end(self, chunk: _Chunk) -> list[int]:
        del self.open[chunk.index]
        if self.buffer is not None:
            padded = -(-chunk.fill // ALIGN) * ALIGN
            if padded > chunk.fill:
                self.buffer[chunk.fill:padded] = bytes(padded - chunk.fill)
            view = memoryview(self.buffer)[:padded]
            try:
                if self.blob_fd is not None:
                    # the blob is truncated to the upload's size at the end
                    _pwrite_direct(self.blob_fd, view, chunk.index * self.piece_length)
                else:
                    chunk.fd = self._open_chunk(chunk.index, True)
                    _pwrite_direct(chunk.fd, view, 0)
                    if padded != chunk.fill:
                        os.ftruncate(chunk.fd, chunk.fill)
            finally:
                view.release()
        self.done[chunk.index] = (chunk.sha256.hexdigest(), chunk.fill, chunk.sha1.digest())
        return [chunk.fd] if chunk.fd is not None else []

    def close(self) -> list[int]:
        """End the last, partial chunk (if it is here); return fds to fsync and close."""
        fds: list[int] = []
        for chunk in list(self.open.values()):
            fds.extend(self._end(chunk))
        self._free()
        return fds

    def discard(self) -> None:
        for chunk in self.open.values():
            if chunk.fd is not None:
                os.close(chunk.fd)
        self.open.clear()
        self._free()

    def _free(self) -> None:
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None


def _fsync_close(fds: list[int], drop_cache: bool = False) -> None:
    """fsync and close; with ``drop_cache`` the file's pages then leave the page cache.

    A finished chunk is not read back by the upload, so its pages are handed back at once and
    the next chunks reuse them: the page cache does not grow by the size of every upload (which
    would evict what downloads are reading), and the kernel recycles warm pages instead of
    faulting in fresh ones (on a VM with a free-page-reporting balloon a fresh page costs a
    host fault; see docs/benchmarks.md, Storage)."""
    for fd in fds:
        try:
            os.fsync(fd)
            if drop_cache:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
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


def open_temp(path: Path, direct: bool) -> tuple[int, bool]:
    """Create a temporary file for writing, with O_DIRECT when asked and the filesystem takes
    it; returns the fd and whether it is O_DIRECT."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if direct:
        try:
            return os.open(path, flags | os.O_DIRECT, 0o644), True
        except OSError as e:
            if e.errno != errno.EINVAL:  # tmpfs and some others refuse O_DIRECT
                raise
    return os.open(path, flags, 0o644), False


def takes_direct_io(folder: Path) -> bool:
    """Whether files in ``folder`` can be written with O_DIRECT (the store asks once at start)."""
    probe = folder / ".direct"
    try:
        fd, direct = open_temp(probe, True)
    except OSError:
        return False
    os.close(fd)
    probe.unlink(missing_ok=True)
    return direct


class _Batch:
    """Bytes handed to the workers together; done when every worker job for it has run."""

    __slots__ = ("size", "left")

    def __init__(self, size: int, left: int) -> None:
        self.size = size
        self.left = left


def call_inline(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


class Ingest:
    """One upload in progress. Reactor-thread API: write / finish / abort.

    Worker jobs report back to the reactor only when it matters (the source can be resumed, a
    job failed), not once per batch: a 1 GiB upload is a thousand batches of four jobs.
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
    ) -> None:
        self.tmp = tmp
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
        self._dispatched = 0  # bytes handed to the lanes so far
        self.chunked_files = chunked
        self._blob_fd: int | None = None
        direct = direct_io and piece_length % ALIGN == 0
        if not chunked:
            self._blob_fd, direct = open_temp(tmp / "blob", direct)
        self.direct_io = direct
        self._whole_state = _WholeHasher()
        self._whole = workers("tgateway-sha256")
        self._lane_states = [_Lane(tmp, piece_length, self._blob_fd, direct)
                             for _ in range(LANES)]
        self._lanes = [workers(f"tgateway-lane{k}") for k in range(LANES)]
        self._syncer = workers("tgateway-fsync")

    # flow control ---------------------------------------------------------

    def set_flow_control(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        """Called with the source's pause/resume; ingest pauses it while workers catch up."""
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
        # The received buffers go to the workers as they are: the lanes get views of them cut
        # at chunk boundaries, no copy on the reactor thread.
        batch, size = self._buf, self._buflen
        self._buf, self._buflen = [], 0
        pl = self.piece_length
        pos = self._dispatched
        segments: dict[int, list[memoryview]] = {}
        for part in batch:
            view = memoryview(part)
            while view:
                index, offset = divmod(pos, pl)
                take = min(len(view), pl - offset)
                segments.setdefault(index, []).append(view[:take])
                view = view[take:]
                pos += take
        self._dispatched = pos
        tracker = _Batch(size, 1 + len(segments))
        with self._lock:
            self._in_flight += size
        whole_state = self._whole_state
        self._whole.post(self._job(lambda: whole_state.feed_all(batch), tracker))
        for index, parts in segments.items():
            lane = self._lane_states[index % LANES]

            def feed(lane: _Lane = lane, index: int = index, parts: list[memoryview] = parts) -> None:
                self._sync(lane.feed(index, parts))

            self._lanes[index % LANES].post(self._job(feed, tracker))
        self._check_pause()

    def _job(self, fn: Callable[[], Any], batch: _Batch | None) -> Callable[[], None]:
        """Wrap a worker job: failures are kept and reported; the batch is counted down."""

        def run() -> None:
            try:
                fn()
            except BaseException:
                self._thread_failed(Failure())
            finally:
                if batch is not None:
                    self._part_done(batch)

        return run

    def _sync(self, fds: list[int]) -> None:
        """(any thread) fsync and close finished chunk files on the fsync worker."""
        if fds:
            drop = self.chunked_files and not self.direct_io  # O_DIRECT left nothing cached
            self._syncer.post(self._job(lambda: _fsync_close(fds, drop), None))

    def _part_done(self, batch: _Batch) -> None:
        """(worker thread) One job of a batch ran; the last one frees the batch's bytes."""
        with self._lock:
            batch.left -= 1
            if batch.left:
                return
            self._in_flight -= batch.size
            wake = (self._paused and not self._wake_scheduled
                    and self._in_flight < MAX_IN_FLIGHT // 2)
            if wake:
                self._wake_scheduled = True
        if wake:
            self._to_reactor(self._wake)

    def _thread_failed(self, failure: Failure) -> None:
        with self._lock:
            if self._failure is not None:
                return
            self._failure = failure
        self._to_reactor(self._worker_failed, failure)

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

    def _raise_failure(self) -> None:
        with self._lock:
            failure = self._failure
        if failure is not None and self._error is None:
            self._worker_failed(failure)
        if self._error is not None:
            raise self._error

    # end --------------------------------------------------------------------

    def _drain(self, workers: list[Any]) -> Deferred[Any]:
        """Fires when every job queued so far on ``workers`` has run (they are FIFO)."""
        from twisted.internet.defer import DeferredList

        return DeferredList([w.submit(lambda: None) for w in workers], consumeErrors=True)

    async def finish(self) -> IngestResult:
        """Wait for the workers, fsync everything, return the result (temp files in place)."""
        if self._error is not None:
            raise self._error
        self._flush()
        self._closed = True
        await self._drain([self._whole, *self._lanes])
        self._raise_failure()
        for worker, lane in zip(self._lanes, self._lane_states):
            self._sync(await worker.submit(lane.close))
        if self._blob_fd is not None:
            fd, self._blob_fd = self._blob_fd, None
            if self.direct_io:
                os.ftruncate(fd, self.size)  # the last chunk was written padded
            self._sync([fd])
        sha256 = await self._whole.submit(self._whole_state.close)
        await self._drain([self._syncer])
        self._raise_failure()
        self._stop_workers()
        done: dict[int, tuple[str, int, bytes]] = {}
        for lane in self._lane_states:
            done.update(lane.done)
        ordered = [done[i] for i in range(len(done))]
        return IngestResult(
            sha256=sha256,
            size=self.size,
            pieces=b"".join(sha1 for _, _, sha1 in ordered),
            chunks=tuple((sha, n) for sha, n, _ in ordered),
            tmp=self.tmp,
            chunked_files=self.chunked_files,
        )

    def abort(self) -> Deferred[None]:
        """Stop and remove every temporary file of this upload (after queued work drains)."""
        from twisted.internet.defer import DeferredList, succeed

        if self._stopped:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return succeed(None)
        self._closed = True
        self._buf, self._buflen = [], 0
        if self._error is None:
            self._error = ApiError("upload aborted", status=400, code="aborted")

        def discard(_: Any) -> Deferred[Any]:
            ds = [w.submit(lane.discard) for w, lane in zip(self._lanes, self._lane_states)]
            return DeferredList(ds, consumeErrors=True)

        def close_blob(_: Any) -> None:
            if self._blob_fd is not None:
                fd, self._blob_fd = self._blob_fd, None
                os.close(fd)

        d = self._drain([self._whole, *self._lanes])
        d.addCallback(lambda _: self._drain([self._syncer]))
        d.addCallback(discard)
        d.addBoth(close_blob)
        d.addBoth(lambda _: self._syncer.submit(lambda: shutil.rmtree(self.tmp, ignore_errors=True)))
        d.addBoth(lambda _: self._stop_workers())
        return d

    def _stop_workers(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for w in (self._whole, *self._lanes, self._syncer):
            w.stop()

"""The thread-side stages of one upload's ingest (see :mod:`tgateway.storage.ingest`).

- :class:`BufferPool`: the upload's page-aligned chunk buffers;
- :class:`Assembler`: the bytes in order, gathered into chunk buffers (one thread at a time);
- :class:`Sha256Chain`: SHA-256 of the file and of each chunk, chunk after chunk (its own thread);
- :class:`Lane`: per chunk, the piece's SHA-1 and the write (one thread per lane).

Each object is used by one thread at a time; the ingest hands buffers from one to the next.
Writes go through :mod:`tgateway.storage.directio` (looked up there at call time).
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import directio
from .hashing import Sha256Pair, pair_available

__all__ = ["Assembler", "BufferPool", "HASH_STEP", "Lane", "Sha256Chain"]


class BufferPool:
    """Page-aligned chunk buffers of one upload (anonymous mmaps: a page costs memory only once
    it is touched, so a small upload uses what it fills). ``take`` waits while all ``count``
    buffers are out; any thread may ``give`` one back."""

    def __init__(self, size: int, count: int) -> None:
        self.size = size
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._made = 0
        self._count = count
        self._all: list[mmap.mmap] = []

    def take(self) -> mmap.mmap:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._made < self._count:
                self._made += 1
                buf = mmap.mmap(-1, self.size)
                self._all.append(buf)
                return buf
        return self._free.get()

    def give(self, buf: mmap.mmap) -> None:
        self._free.put(buf)

    def close(self) -> None:
        """Free the buffers (once every lane job has run)."""
        with self._lock:
            bufs, self._all = self._all, []
        for buf in bufs:
            try:
                buf.close()
            except BufferError:  # a view still exported: the garbage collector frees it
                pass


def _address(buffer: Any) -> int | None:
    """Where a writable buffer's first byte is in memory (None for read-only or empty ones)."""
    try:
        anchor = ctypes.c_char.from_buffer(buffer)
    except (TypeError, ValueError):
        return None
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


class Assembler:
    """The upload's bytes in order (one thread at a time: the body reader or the feeder),
    gathered in chunk buffers; a full buffer is handed to ``hand_off(index, buffer, size)``.
    Nothing else happens on this thread: for an HTTP upload it is the thread that reads the
    socket, the one step that cannot be spread over cores.

    ``write`` copies, except for bytes that were received straight into the space ``reserve``
    handed out: those are only counted in.
    """

    def __init__(self, pool: BufferPool, hand_off: Callable[[int, mmap.mmap, int], None]) -> None:
        self._pool = pool
        self._hand_off_to = hand_off
        self._index = 0
        self._buffer: mmap.mmap | None = None
        self._fill = 0
        self._reserved: tuple[int, int] | None = None  # (address, length) handed out by reserve
        self.copied = 0  # bytes that came through a copy (the rest were received in place)

    def reserve(self) -> memoryview:
        """The free end of the current chunk buffer, to receive the next bytes into; they are
        then passed to ``write`` as (a prefix of) this view."""
        if self._buffer is None:
            self._buffer = self._pool.take()
            self._fill = 0
        view = memoryview(self._buffer)[self._fill:]
        address = _address(view)
        self._reserved = None if address is None else (address, len(view))
        return view

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        reserved, self._reserved = self._reserved, None
        if reserved is not None and len(view):
            address = _address(view)
            if address == reserved[0] and len(view) <= reserved[1]:
                self._fill += len(view)  # already in place
                if self._fill == self._pool.size:
                    self._hand_off()
                return
            if address is not None and reserved[0] < address < reserved[0] + reserved[1]:
                view = memoryview(bytes(view))  # would overlap where it is copied to
        size = self._pool.size
        self.copied += len(view)
        while view:
            buffer = self._buffer
            if buffer is None:
                buffer = self._buffer = self._pool.take()
                self._fill = 0
            fill = self._fill
            take = min(len(view), size - fill)
            buffer[fill:fill + take] = view[:take]
            self._fill = fill + take
            view = view[take:]
            if self._fill == size:
                self._hand_off()

    def _hand_off(self) -> None:
        buffer, self._buffer = self._buffer, None
        if buffer is None:
            return
        index, self._index = self._index, self._index + 1
        self._hand_off_to(index, buffer, self._fill)

    def close(self) -> None:
        """Hand off the last, shorter chunk."""
        self._reserved = None
        self._hand_off()

    def discard(self) -> None:
        self._reserved = None
        if self._buffer is not None:
            self._pool.give(self._buffer)
            self._buffer = None


HASH_STEP = 256 * 1024  # two hashlib passes per step: the second reads from the cache


class Sha256Chain:
    """SHA-256 of the whole file and of each chunk, chunk after chunk in order (its own
    thread). With the ``_sha256x2`` extension both come from one pass (see
    :mod:`tgateway.storage.hashing`); otherwise from two hashlib passes over each step."""

    def __init__(self) -> None:
        self._pair = Sha256Pair() if pair_available() else None
        self._whole = hashlib.sha256()
        self.chunks: dict[int, str] = {}

    def chunk(self, index: int, buffer: mmap.mmap, size: int) -> None:
        with memoryview(buffer) as view:
            if self._pair is not None:
                self._pair.update(view[:size])
                self.chunks[index] = self._pair.end_chunk()
                return
            chunk = hashlib.sha256()
            for start in range(0, size, HASH_STEP):
                part = view[start:min(size, start + HASH_STEP)]
                self._whole.update(part)
                chunk.update(part)
            self.chunks[index] = chunk.hexdigest()

    def close(self) -> str:
        if self._pair is not None:
            return self._pair.whole_hexdigest()
        return self._whole.hexdigest()


class Lane:
    """Chunks ``i % LANES == k`` of one upload (lane k's thread only): the chunk's SHA-1
    (piece i) and its write.

    In chunked mode chunk i goes to ``<tmp>/<i>``; in blob mode to ``blob_fd`` at offset
    ``i * piece_length``. With ``direct`` (the folder takes O_DIRECT) the buffer goes straight to
    the disk: no page-cache copy, no page-cache growth, and the fsync has only metadata left to
    do; the last, shorter chunk is written padded to the alignment and truncated to its size.
    Otherwise it is written through the page cache. A finished chunk file's descriptor is
    returned to be fsynced and closed off this thread.
    """

    def __init__(self, tmp: Path, piece_length: int, blob_fd: int | None, direct: bool) -> None:
        self.tmp = tmp
        self.piece_length = piece_length
        self.blob_fd = blob_fd
        self.direct = direct
        self.done: dict[int, tuple[int, bytes]] = {}  # index -> (size, sha1)

    def store(self, index: int, buffer: mmap.mmap, size: int) -> list[int]:
        with memoryview(buffer) as whole:
            sha1 = hashlib.sha1(whole[:size]).digest()
            fds: list[int] = []
            if self.direct:
                padded = -(-size // directio.ALIGN) * directio.ALIGN
                if padded > size:
                    buffer[size:padded] = bytes(padded - size)
                data = whole[:padded]
            else:
                data = whole[:size]
            try:
                if self.blob_fd is not None:
                    # a padded last chunk: the blob is truncated to the upload's size at the end
                    write = directio.pwrite_direct if self.direct else directio.pwrite_all
                    write(self.blob_fd, data, index * self.piece_length)
                else:
                    fd = directio.open_temp(self.tmp / str(index), self.direct)[0]
                    fds.append(fd)
                    if self.direct:
                        directio.pwrite_direct(fd, data, 0)
                        if len(data) != size:
                            os.ftruncate(fd, size)
                    else:
                        directio.pwrite_all(fd, data, 0)
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            finally:
                data.release()
        self.done[index] = (size, sha1)
        return fds

"""File writes of the ingest: O_DIRECT where the file system takes it, the page cache otherwise.

An upload's chunk buffers are page-aligned (see :mod:`tgateway.storage.stages`), so with
O_DIRECT they go from memory to the disk without a copy into the page cache; a file system that
refuses O_DIRECT at ``open`` (tmpfs) or at a write (EINVAL) gets the same bytes through the page
cache. Finished files are fsynced (and dropped from the page cache) off the reactor; temporary
files are re-cut with kernel copies (``copy_file_range``).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = [
    "ALIGN",
    "copy_range",
    "fsync_close",
    "open_temp",
    "pwrite_all",
    "pwrite_direct",
    "takes_direct_io",
    "write_all",
]

ALIGN = 4096  # O_DIRECT buffer, offset and length alignment


def write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def pwrite_direct(fd: int, view: memoryview, offset: int) -> None:
    """Write an aligned buffer with O_DIRECT; a filesystem that refuses it (EINVAL) gets the
    same bytes through the page cache instead."""
    try:
        pwrite_all(fd, view, offset)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        pwrite_all(fd, view, offset)



def fsync_close(fds: list[int], drop_cache: bool = False) -> None:
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



def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Kernel-side copy (no hashing, no Python buffers)."""
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, length - done, offset + done)
        except OSError:
            os.lseek(src, offset + done, os.SEEK_SET)
            buf = os.read(src, min(length - done, 1 << 20))
            n = len(buf)
            write_all(dst, memoryview(buf))
        if n == 0:
            raise OSError("unexpected end of file while copying")
        done += n



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


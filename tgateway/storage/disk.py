"""Content-addressed folders on disk.

Blobs live at ``<blob_storage>/ab/cd/<sha256>``, chunks at ``<chunk_storage>/ab/<sha256>``.
Temporary files live in a ``.tmp`` folder inside each (same file system, so ``rename`` is atomic)
and are removed at start-up. Every path is built from a validated lowercase hex digest, never
from user text, so nothing can escape the data folders.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BadDigest(ValueError):
    """Not a lowercase hex SHA-256."""


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise BadDigest(value)
    return value


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dirs(paths: Iterable[Path], workers: int = 8) -> None:
    """fsync each folder once, several at a time: on a journalling file system the first call
    commits the renames of all of them and the others mostly wait for a flush of the device's
    cache, which the block layer merges when they come together (a 1 GiB upload's chunks land
    in ~220 folders: 50 ms one after another, 17 ms eight at a time, on the test machine)."""
    unique = sorted(set(paths))
    if len(unique) <= 2:
        for path in unique:
            fsync_dir(path)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(unique)), thread_name_prefix="tgateway-fsync") as pool:
        for _ in pool.map(fsync_dir, unique):
            pass


class DiskLayout:
    """Where bytes live. Pure path logic plus the few file operations the store needs."""

    def __init__(self, blob_dir: str | Path, chunk_dir: str | Path) -> None:
        self.blob_dir = Path(blob_dir).resolve()
        self.chunk_dir = Path(chunk_dir).resolve()
        self.blob_tmp = self.blob_dir / ".tmp"
        self.chunk_tmp = self.chunk_dir / ".tmp"

    def prepare(self) -> int:
        """Create the folders and remove leftovers of interrupted uploads; return how many."""
        removed = 0
        for tmp in (self.blob_tmp, self.chunk_tmp):
            if tmp.exists():
                for entry in tmp.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    removed += 1
            tmp.mkdir(parents=True, exist_ok=True)
        for i in range(256):  # the chunk shards: a big file's chunks land in most of them
            (self.chunk_dir / f"{i:02x}").mkdir(exist_ok=True)
        fsync_dir(self.chunk_dir)
        return removed

    def folders_of(self, final: Path) -> list[Path]:
        """The folders to fsync once ``final`` was placed: its own and each one above it up to
        the storage folder (a shard folder may have been created for it)."""
        root = self.chunk_dir if final.is_relative_to(self.chunk_dir) else self.blob_dir
        return [folder for folder in final.parents if folder.is_relative_to(root)]

    def blob_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.blob_dir / sha256[:2] / sha256[2:4] / sha256

    def chunk_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.chunk_dir / sha256[:2] / sha256

    def new_temp(self, chunked: bool) -> Path:
        """A fresh temporary folder for one upload."""
        base = self.chunk_tmp if chunked else self.blob_tmp
        path = base / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def statvfs_free(self) -> int:
        st = os.statvfs(self.chunk_dir)
        return st.f_bavail * st.f_frsize


def place(temp: Path, final: Path) -> bool:
    """Move a fsynced temp file to its content address. False if the content was already there.
    The caller fsyncs the folders (see :meth:`DiskLayout.folders_of`)."""
    if final.exists():
        temp.unlink(missing_ok=True)
        return False
    try:
        os.replace(temp, final)
    except FileNotFoundError:
        if not temp.exists():
            raise
        final.parent.mkdir(parents=True, exist_ok=True)  # the first file of its shard
        os.replace(temp, final)
    return True

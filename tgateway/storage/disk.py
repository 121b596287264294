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
        return removed

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
    """Move a fsynced temp file to its content address. False if the content was already there."""
    if final.exists():
        temp.unlink(missing_ok=True)
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    return True

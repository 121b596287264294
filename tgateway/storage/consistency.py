"""The storage check: bytes on disk that no row references, and rows whose bytes are missing.

What a crash can leave, given the store's write orders (:mod:`tgateway.storage.store`):

- an upload writes its bytes to a temporary folder, fsyncs them, renames them to their content
  addresses, fsyncs the folders, and only then commits the row. A crash before the renames
  leaves a temporary folder (removed by :meth:`DiskLayout.prepare` at start); a crash between
  the renames and the commit leaves blobs or chunks that no row references;
- a deletion commits the removal of the row first (a durable commit: ``synchronous=FULL``),
  then removes the bytes no other file uses. A crash in between leaves unreferenced bytes.

Neither leaves a row without bytes. A row whose bytes are missing comes from outside (a disk
fault, a file removed by hand): the check reports it; repairing it is retention's job.

:class:`StorageCheck` walks the data folders one shard at a time (the 256 first-byte prefixes
of the content addresses): it lists the shard's blobs and chunks on a thread, reads the rows
that reference names of that prefix on the database thread (indexed range queries), and
compares the two sets on the reactor. Memory and the time spent on the reactor are those of
one shard (1/256 of the store), so it runs while the gateway serves.

Races with uploads and deletions that run meanwhile: listing and reading happen without the
store's lock, so they only produce candidates. Each candidate is decided again under the store's
lock (re-read rows, stat the file), and removed under it. The store places an upload's bytes
and commits its row under that lock, and removes a deleted file's row and bytes under it: under
the lock, a name no row references belongs to no upload in progress (a chunk that a new upload
found already on disk and re-used is referenced by the row committed with it before the lock
is released). Temporary folders of uploads in progress are skipped: the store says which are
live. Files in the shard folders whose names are not content addresses (``stray``) were not
written by the store: they are reported and left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from .api import Db
from .disk import DiskLayout

SHARDS = tuple(f"{i:02x}" for i in range(256))
BATCH = 500  # names per IN (...) query
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX2 = re.compile(r"^[0-9a-f]{2}$")


# --------------------------------------------------------------------------- the report


@dataclass
class Found:
    """One kind of finding: how many, their bytes, and the first ``keep`` names."""

    count: int = 0
    bytes: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str, size: int, keep: int) -> None:
        self.count += 1
        self.bytes += size
        if len(self.names) < keep:
            self.names.append(name)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes, "names": list(self.names)}


@dataclass(frozen=True)
class MissingBytes:
    """A file row whose bytes are not (all) on disk."""

    sha256: str
    storage: str  # blob | chunked
    missing: tuple[str, ...]  # the missing blob or chunk names (sha256)


@dataclass
class CheckReport:
    """What one run of the check found (and removed, unless it was a dry run)."""

    removed: bool  # orphans and temp leftovers were removed (False: a dry run)
    complete: bool = False  # every shard was seen (False: stopped early)
    blobs_seen: int = 0
    chunks_seen: int = 0
    orphan_blobs: Found = field(default_factory=Found)
    orphan_chunks: Found = field(default_factory=Found)
    temp_leftovers: Found = field(default_factory=Found)  # temporary folders of no live upload
    stray: Found = field(default_factory=Found)  # not content addresses: reported, left alone
    missing: list[MissingBytes] = field(default_factory=list)  # the first ``keep`` files
    missing_files: int = 0
    seconds: float = 0.0

    @property
    def orphan_bytes(self) -> int:
        return self.orphan_blobs.bytes + self.orphan_chunks.bytes + self.temp_leftovers.bytes

    @property
    def clean(self) -> bool:
        """Nothing unreferenced, nothing missing, nothing stray."""
        return not (self.orphan_blobs.count or self.orphan_chunks.count
                    or self.temp_leftovers.count or self.stray.count or self.missing_files)

    def to_json(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "complete": self.complete,
            "blobs_seen": self.blobs_seen,
            "chunks_seen": self.chunks_seen,
            "orphan_blobs": self.orphan_blobs.to_json(),
            "orphan_chunks": self.orphan_chunks.to_json(),
            "temp_leftovers": self.temp_leftovers.to_json(),
            "stray": self.stray.to_json(),
            "orphan_bytes": self.orphan_bytes,
            "missing_files": self.missing_files,
            "missing": [
                {"sha256": m.sha256, "storage": m.storage, "missing": list(m.missing)}
                for m in self.missing
            ],
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------- SQL (txn functions)


def _upper(prefix: str) -> str:
    """The smallest string above every lowercase hex name that starts with ``prefix``."""
    return prefix + "g"


def _shard_rows_txn(conn: sqlite3.Connection, prefix: str) -> tuple[set[str], set[str]]:
    """(chunks referenced by any file, blob files) whose names start with ``prefix``."""
    hi = _upper(prefix)
    chunks = {
        r[0] for r in conn.execute(
            "SELECT DISTINCT chunk_sha256 FROM file_chunks"
            " WHERE chunk_sha256 >= ? AND chunk_sha256 < ?", (prefix, hi))
    }
    blobs = {
        r[0] for r in conn.execute(
            "SELECT sha256 FROM files WHERE sha256 >= ? AND sha256 < ? AND storage = 'blob'",
            (prefix, hi))
    }
    return chunks, blobs


def _batches(names: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for name in names:
        batch.append(name)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _referenced_txn(
    conn: sqlite3.Connection, chunks: Collection[str], blobs: Collection[str]
) -> tuple[set[str], set[str]]:
    """Which of these chunk and blob names a row references now."""
    ref_chunks: set[str] = set()
    ref_blobs: set[str] = set()
    for batch in _batches(chunks):
        marks = ",".join("?" * len(batch))
        ref_chunks.update(r[0] for r in conn.execute(
            f"SELECT DISTINCT chunk_sha256 FROM file_chunks WHERE chunk_sha256 IN ({marks})", batch))
    for batch in _batches(blobs):
        marks = ",".join("?" * len(batch))
        ref_blobs.update(r[0] for r in conn.execute(
            f"SELECT sha256 FROM files WHERE storage = 'blob' AND sha256 IN ({marks})", batch))
    return ref_chunks, ref_blobs


def _rows_of_txn(
    conn: sqlite3.Connection, chunks: Collection[str], blobs: Collection[str]
) -> list[tuple[str, str, str]]:
    """(file sha256, storage, name) of every row that references one of these names now."""
    out: list[tuple[str, str, str]] = []
    for batch in _batches(chunks):
        marks = ",".join("?" * len(batch))
        out += [(r[0], "chunked", r[1]) for r in conn.execute(
            f"SELECT file_sha256, chunk_sha256 FROM file_chunks WHERE chunk_sha256 IN ({marks})",
            batch)]
    for batch in _batches(blobs):
        marks = ",".join("?" * len(batch))
        out += [(r[0], "blob", r[0]) for r in conn.execute(
            f"SELECT sha256 FROM files WHERE storage = 'blob' AND sha256 IN ({marks})", batch)]
    return out


# --------------------------------------------------------------------------- disk (thread side)


@dataclass
class _Listing:
    chunks: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    stray: list[tuple[str, int]] = field(default_factory=list)  # (path, size)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def _tree_size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------- the check


class StorageCheck:
    """One run of the check over a store's folders and rows (see the module docstring).

    ``lock``: the store's lock (held by its commits and deletions); ``in_thread(fn, *args)``:
    runs file-system work off the reactor; ``live_temps()``: the temporary folders of uploads
    in progress; ``keep``: how many names each finding lists (counts and bytes are complete).
    """

    def __init__(
        self,
        *,
        db: Db,
        layout: DiskLayout,
        lock: DeferredLock,
        in_thread: Callable[..., Deferred[Any]],
        live_temps: Callable[[], Collection[Path]],
        monotonic: Callable[[], float] = time.monotonic,
        keep: int = 1000,
    ) -> None:
        self.db = db
        self.layout = layout
        self._lock = lock
        self._in_thread = in_thread
        self._live_temps = live_temps
        self._monotonic = monotonic
        self.keep = keep
        self._stopping = False
        self._missing: dict[str, tuple[str, list[str]]] = {}  # file -> (storage, missing names)

    def stop(self) -> None:
        """Stop after the shard being checked (the report says ``complete=False``)."""
        self._stopping = True

    async def run(self, *, remove: bool = True) -> CheckReport:
        """Check every shard, then the temporary folders. With ``remove``, unreferenced blobs
        and chunks and temporary folders of no live upload are deleted; otherwise (a dry run)
        they are only reported."""
        started = self._monotonic()
        report = CheckReport(removed=remove)
        for prefix in SHARDS:
            if self._stopping:
                break
            await self._shard(prefix, report, remove)
        else:
            await self._temps(report, remove)
            report.complete = True
        report.missing_files = len(self._missing)
        report.missing = [
            MissingBytes(sha, storage, tuple(sorted(names)))
            for sha, (storage, names) in sorted(self._missing.items())[: self.keep]
        ]
        report.seconds = self._monotonic() - started
        return report

    # one shard -------------------------------------------------------------------

    async def _shard(self, prefix: str, report: CheckReport, remove: bool) -> None:
        listing: _Listing = await self._in_thread(self._list_shard, prefix)
        ref_chunks, ref_blobs = await self.db.run(_shard_rows_txn, prefix)
        report.chunks_seen += len(listing.chunks)
        report.blobs_seen += len(listing.blobs)
        for path, size in listing.stray:
            report.stray.add(path, size, self.keep)
        orphan_chunks = listing.chunks - ref_chunks
        orphan_blobs = listing.blobs - ref_blobs
        missing_chunks = ref_chunks - listing.chunks
        missing_blobs = ref_blobs - listing.blobs
        if not (orphan_chunks or orphan_blobs or missing_chunks or missing_blobs):
            return
        # Decide again under the store's lock: no upload is between placing and committing,
        # no deletion between its row and its bytes.
        await self._lock.acquire()
        try:
            if orphan_chunks or orphan_blobs:
                await self._orphans(orphan_chunks, orphan_blobs, report, remove)
            if missing_chunks or missing_blobs:
                await self._missing_rows(missing_chunks, missing_blobs)
        finally:
            self._lock.release()

    def _list_shard(self, prefix: str) -> _Listing:
        """(thread) The content addresses in one shard of each folder, and what else is there."""
        out = _Listing()
        same = self.layout.blob_dir == self.layout.chunk_dir
        for entry in _entries(self.layout.chunk_dir / prefix):
            if entry.is_dir(follow_symlinks=False):
                continue  # blob sub-shards when both kinds share one folder
            if entry.is_file(follow_symlinks=False) and _HEX64.match(entry.name) \
                    and entry.name.startswith(prefix):
                out.chunks.add(entry.name)
            else:
                out.stray.append((entry.path, _size(entry)))
        for sub in _entries(self.layout.blob_dir / prefix):
            if not sub.is_dir(follow_symlinks=False):
                if not same:
                    out.stray.append((sub.path, _size(sub)))
                continue
            if not _HEX2.match(sub.name):
                continue  # not a folder the store makes; its files are not looked into
            start = prefix + sub.name
            for entry in _entries(Path(sub.path)):
                if entry.is_file(follow_symlinks=False) and _HEX64.match(entry.name) \
                        and entry.name.startswith(start):
                    out.blobs.add(entry.name)
                else:
                    out.stray.append((entry.path, _size(entry)))
        return out

    async def _orphans(
        self, chunks: set[str], blobs: set[str], report: CheckReport, remove: bool
    ) -> None:
        still_chunks, still_blobs = await self.db.run(_referenced_txn, chunks, blobs)
        targets = [("chunk", n, self.layout.chunk_path(n)) for n in sorted(chunks - still_chunks)]
        targets += [("blob", n, self.layout.blob_path(n)) for n in sorted(blobs - still_blobs)]
        done: list[tuple[str, str, int]] = await self._in_thread(_stat_and_remove, targets, remove)
        for kind, name, size in done:
            found = report.orphan_chunks if kind == "chunk" else report.orphan_blobs
            found.add(name, size, self.keep)

    async def _missing_rows(self, chunks: set[str], blobs: set[str]) -> None:
        rows: list[tuple[str, str, str]] = await self.db.run(_rows_of_txn, chunks, blobs)
        if not rows:
            return
        paths = {name: (self.layout.chunk_path(name) if storage == "chunked"
                        else self.layout.blob_path(name)) for _, storage, name in rows}
        present: set[str] = await self._in_thread(_existing, paths)
        for sha, storage, name in rows:
            if name in present:
                continue  # placed after the shard was listed
            entry = self._missing.setdefault(sha, (storage, []))
            if name not in entry[1]:
                entry[1].append(name)

    # temporary folders -------------------------------------------------------------

    async def _temps(self, report: CheckReport, remove: bool) -> None:
        """Temporary folders (and files) of no live upload: what an interrupted upload left."""
        listed: list[Path] = await self._in_thread(self._list_temps)
        live = set(self._live_temps())
        leftovers = [p for p in listed if p not in live]
        if not leftovers:
            return
        done: list[tuple[str, int]] = await self._in_thread(_remove_trees, leftovers, remove)
        for path, size in done:
            report.temp_leftovers.add(path, size, self.keep)

    def _list_temps(self) -> list[Path]:
        out: list[Path] = []
        for tmp in dict.fromkeys((self.layout.blob_tmp, self.layout.chunk_tmp)):
            out += [Path(e.path) for e in _entries(tmp)]
        return out


def _stat_and_remove(
    targets: list[tuple[str, str, Path]], remove: bool
) -> list[tuple[str, str, int]]:
    """(thread) Size each target that exists and, with ``remove``, delete it."""
    done = []
    for kind, name, path in targets:
        try:
            size = os.lstat(path).st_size
            if remove:
                os.unlink(path)
        except FileNotFoundError:
            continue  # a deletion got there first
        done.append((kind, name, size))
    return done


def _existing(paths: dict[str, Path]) -> set[str]:
    return {name for name, path in paths.items() if os.path.lexists(path)}


def _remove_trees(paths: list[Path], remove: bool) -> list[tuple[str, int]]:
    done = []
    for path in paths:
        try:
            is_dir = path.is_dir() and not path.is_symlink()
            size = _tree_size(path) if is_dir else os.lstat(path).st_size
        except FileNotFoundError:
            continue
        if remove:
            if is_dir:
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        done.append((str(path), size))
    return done


def log_report(log: Logger, report: CheckReport) -> None:
    """Log what a storage check found (the store's logger: its namespace stays)."""
    verb = "removed" if report.removed else "found"
    log.info(
        "storage check {state} in {seconds:.1f} s: {blobs} blobs and {chunks} chunks seen;"
        " {verb} {ob} unreferenced blobs, {oc} unreferenced chunks, {ot} temporary leftovers"
        " ({bytes} bytes); {stray} stray files; {missing} files with missing bytes",
        state="finished" if report.complete else "stopped", seconds=report.seconds,
        blobs=report.blobs_seen, chunks=report.chunks_seen, verb=verb,
        ob=report.orphan_blobs.count, oc=report.orphan_chunks.count,
        ot=report.temp_leftovers.count, bytes=report.orphan_bytes, stray=report.stray.count,
        missing=report.missing_files, report=report.to_json(),
    )
    for m in report.missing:
        log.error(
            "stored file {sha256} ({storage}) is missing {count} of its bytes' files: {names}",
            sha256=m.sha256, storage=m.storage, count=len(m.missing),
            names=", ".join(m.missing[:8]) + (" ..." if len(m.missing) > 8 else ""),
        )
    if report.stray.count:
        log.warn("{n} files in the data folders are not content addresses (left alone):"
                 " {names}", n=report.stray.count, names=", ".join(report.stray.names[:8]))


__all__ = ["CheckReport", "Found", "MissingBytes", "StorageCheck", "log_report"]

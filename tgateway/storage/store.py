"""The local content store: SQLite metadata and content-addressed local folders.

It implements :class:`~tgateway.storage.api.ContentStore` (the face every component sees):

- ``begin_upload(...)`` -> :class:`~tgateway.storage.ingest.Ingest`, then ``commit(ingest, ctx)``;
- ``get(sha256)`` / ``get_by_info_hash(hex)`` -> :class:`StoredFile`;
- ``reader`` (the chunk reader) for byte ranges and pieces; ``ffmpeg_input`` for FFmpeg;
- ``remove_owner(sha256, owner)``: bytes go when no owner is left and no other file uses them.

``subscribe_stored(cb)`` / ``subscribe_deleted(cb)``: every component that reacts to new content
subscribes at wiring time; the upload paths never call those components themselves.

Durability: the temp files are fsynced (by the ingest), renamed to their content address, the
folders fsynced, and only then is the row committed (durably: ``synchronous=FULL``, so an
acknowledged upload survives a power cut). A deletion commits the row's removal durably, then
removes the bytes. Both run under one lock. A crash at any point leaves at most unreferenced
content files, never a row without bytes; :meth:`LocalContentStore.check` (started in the background at
every start, see :mod:`tgateway.storage.consistency`) removes them. The steps on disk and the record
of a new file: :mod:`tgateway.storage.placing`; what it keeps in memory: :mod:`tgateway.storage.index`.

Every upload's name is cleaned in ``commit`` (:func:`clean_name`); names of older rows when read.
The owner's quota is checked in the transaction that adds the owner's reference (``commit(quota=)``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, fail, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from tgateway.config import StorageConfig
from tgateway.errors import BadRequest

from .access import AccessLog
from .api import Db, DeletedCallback, IStorageReactor, Received, StoredCallback, Upload
from .consistency import CheckReport, StorageCheck, log_report
from .crashpoints import CrashPoints
from .directio import takes_direct_io
from .disk import DiskLayout
from .files import (
    QuotaExceeded,
    _all_info_hashes_txn,
    _announced_info_hashes_txn,
    _check_quota_txn,
    _get_txn,
    _insert_txn,
    _only_derived_txn,
    _owner_files_txn,
    _owners_txn,
    _remove_files_txn,
    _remove_owner_txn,
    _search_txn,
    _set_meta_txn,
    _stats_txn,
    _unexamined_videos_txn,
    _usage_txn,
)
from .index import StoreIndex
from .ingest import Ingest, IngestResult
from .model import Ownership, StoredEvent, StoredFile, UploadContext
from .naming import clean_name, looks_like_video
from .placing import place_upload, record_of, remove_bytes, unplace
from .reader import BlockCache, ChunkReader
from .retention import FileUse
from .workers import InlineWorker, SerialWorker, Worker, call_inline


class EmptyUpload(BadRequest):
    code = "empty_upload"


# --------------------------------------------------------------------------- the store

class LocalContentStore:
    log = Logger()

    def __init__(
        self,
        *,
        reactor: IStorageReactor,
        db: Db,
        layout: DiskLayout,
        config: StorageConfig,
        threaded: bool = True,
        direct_io: bool = True,
        crash_points: CrashPoints | None = None,
    ) -> None:
        self._reactor = reactor
        self._direct_io = direct_io  # uploads written with O_DIRECT where the filesystem takes it
        self._direct_tmp = {True: False, False: False}  # chunked? -> its temp folder takes it
        self.db = db
        self.layout = layout
        self.config = config
        self._threaded = threaded
        self._io_pool: ThreadPool | None = (
            ThreadPool(minthreads=0, maxthreads=4, name="tgateway-io") if threaded else None
        )
        self.access = AccessLog(reactor, db)  # last reads, written in batches
        self.reader = ChunkReader(reactor, layout, BlockCache(config.chunk_cache_size), self._io_pool,
                                  on_read=self.access.touch)
        self._lock = DeferredLock()
        self._index = StoreIndex()  # the info-hashes and the recent records, in memory
        self._on_stored: list[StoredCallback] = []
        self._on_deleted: list[DeletedCallback] = []
        self._crash = crash_points or CrashPoints()
        self._live_temps: set[Path] = set()  # temporary folders of uploads in progress
        self._check_lock = DeferredLock()  # one storage check at a time
        self._check: StorageCheck | None = None

    # life cycle --------------------------------------------------------------

    def start(self) -> None:
        """Prepare folders (removing leftovers of interrupted uploads) and load the index.

        Synchronous: runs once at start-up, before any listener accepts a connection. Bytes a
        crash left without a row are found by :meth:`check`, which the storage service starts
        in the background right after this.
        """
        removed = self.layout.prepare()
        if removed:
            self.log.info("removed {n} leftovers of interrupted uploads", n=removed)
        if self._direct_io:
            self._direct_tmp = {True: takes_direct_io(self.layout.chunk_tmp),
                                False: takes_direct_io(self.layout.blob_tmp)}
        if self._io_pool is not None:
            self._io_pool.start()
        self._index.load(self.db.run_sync(_all_info_hashes_txn),
                         self.db.run_sync(_announced_info_hashes_txn))

    def stop(self) -> None:
        if self._io_pool is not None and self._io_pool.started:
            self._io_pool.stop()

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._io_pool is None:
            return maybeDeferred(fn, *args)
        if self._io_pool.joined:
            return fail(RuntimeError("the content store is stopped"))
        return deferToThreadPool(self._reactor, self._io_pool, fn, *args)

    # events --------------------------------------------------------------------

    def subscribe_stored(self, callback: StoredCallback) -> None:
        self._on_stored.append(callback)

    def subscribe_deleted(self, callback: DeletedCallback) -> None:
        self._on_deleted.append(callback)

    def _emit(self, callbacks: Iterable[Callable[[Any], Any]], value: Any) -> None:
        for cb in list(callbacks):
            self._reactor.callLater(0, self._call_subscriber, cb, value)

    def _call_subscriber(self, cb: Callable[[Any], Any], value: Any) -> None:
        d = maybeDeferred(cb, value)
        d.addErrback(lambda f: self.log.failure("subscriber {cb!r} failed", f, cb=cb))

    # ingest --------------------------------------------------------------------

    def begin_upload(self, *, size_hint: int | None, max_size: int) -> Ingest:
        """Start an upload. ``size_hint``: exact or upper bound of the size, if known."""
        chunked = size_hint is not None and size_hint >= self.config.blob_threshold
        tmp = self.layout.new_temp(chunked)
        self._live_temps.add(tmp)  # the storage check leaves it alone until it is removed
        if self._threaded:
            reactor = self._reactor

            def workers(name: str) -> Worker:
                return SerialWorker(reactor, name)

        else:

            def workers(name: str) -> Worker:
                return InlineWorker()

        return Ingest(
            tmp=tmp,
            piece_length=self.config.chunk_size,
            chunked=chunked,
            max_size=max_size,
            workers=workers,
            to_reactor=self._reactor.callFromThread if self._threaded else call_inline,
            direct_io=self._direct_tmp[chunked],
            on_removed=lambda: self._live_temps.discard(tmp),
        )

    async def commit(
        self,
        upload: Upload,
        context: UploadContext,
        *,
        declared_type: str | None = None,
        check: Callable[[Received], None] | None = None,
        quota: int | None = None,
    ) -> StoredEvent:
        """Finish the ingest and make the file visible. Raises EmptyUpload for 0 bytes.

        The MIME type is ``declared_type`` when it is specific, else the name's, else sniffed
        from the first bytes the ingest kept (``IngestResult.head``).

        ``check`` sees the finished bytes' hashes before anything becomes visible (an expected
        SHA-256, an auth token's scope); if it raises, nothing is stored and its error propagates.
        ``quota``: the most bytes ``context.owner``'s files may take, this one included (new or
        already stored); checked in the transaction that adds the owner's reference, so it
        holds under concurrent uploads; QuotaExceeded otherwise. A refused upload stores
        nothing and fires no event. The upload's name is cleaned here (:func:`clean_name`).
        """
        if not isinstance(upload, Ingest):
            raise TypeError("this upload was not begun by this store")
        ingest = upload
        if context.name is not None:
            context = replace(context, name=clean_name(context.name, "") or None)
        try:
            result = await ingest.finish()
        except BaseException:
            await ingest.abort()
            raise
        try:
            if result.size == 0:
                raise EmptyUpload("the upload is empty")
            if check is not None:
                check(result)
            return await self._commit_result(result, context, declared_type, quota)
        finally:
            await ingest.abort()  # removes what is left of the temp folder

    async def _commit_result(
        self, result: IngestResult, ctx: UploadContext, declared_type: str | None,
        quota: int | None,
    ) -> StoredEvent:
        await self._lock.acquire()
        try:
            existing = await self.db.run(_get_txn, "sha256", result.sha256)
            now = time.time()
            if existing is not None:
                f, _ = await self.db.run(_insert_txn, existing, ctx, now, quota,
                                         looks_like_video(result.head[:4096], existing.mime),
                                         durable=True)
                event = StoredEvent(file=f, context=ctx, new=False)
            else:
                if quota is not None and ctx.owner:  # refuse before placing anything
                    await self.db.run(_check_quota_txn, ctx.owner, result.sha256, result.size,
                                      quota)
                f = record_of(result, ctx, declared_type, now, self.config)
                placed = await self._in_thread(self._place, result, f)
                try:
                    # durable: an acknowledged upload survives a power cut too
                    f, new = await self.db.run(_insert_txn, f, ctx, now, quota,
                                               looks_like_video(result.head[:4096], f.mime),
                                               durable=True)
                except BaseException:
                    await self._in_thread(unplace, placed)
                    raise
                self._index.info_hashes.add(f.info_hash_bytes)
                event = StoredEvent(file=f, context=ctx, new=new)
            if not ctx.derived:
                self._index.announced.add(f.info_hash_bytes)
        finally:
            self._lock.release()
        self.log.info(
            "stored {sha256} ({size} bytes, {kind}, new={new})",
            sha256=event.file.sha256, size=event.file.size, kind=event.file.storage, new=event.new,
        )
        self._emit(self._on_stored, event)
        return event

    def _place(self, result: IngestResult, f: StoredFile) -> list[Path]:
        """(thread) :func:`~tgateway.storage.placing.place_upload` in this store's folders."""
        return place_upload(self.layout, self._crash, result, f)

    # lookups -------------------------------------------------------------------

    @asynccontextmanager
    async def ffmpeg_input(self, f: StoredFile) -> AsyncIterator[str]:
        """An FFmpeg input URL for ``f``'s bytes, valid inside the ``async with`` block.

        A blob is read where it is (a ``file:`` URL). A chunked file's chunks go through
        FFmpeg's ``concatf:`` protocol and a list of their paths (``concat:a|b|...`` would pass
        FFmpeg's 4096-byte URL limit past some forty chunks), written to a temporary folder of
        the store: the storage check leaves it alone while it is in use, it is removed at the
        end of the block, and at start-up if a crash left it."""
        if f.storage == "blob":
            yield "file:" + str(self.layout.blob_path(f.sha256))
            return
        lines = "".join(f"file:{self.layout.chunk_path(c.sha256)}\n" for c in f.chunks)
        tmp = self.layout.new_temp(True)
        self._live_temps.add(tmp)
        try:
            listing = tmp / f"{f.sha256}.chunks"
            await self._in_thread(listing.write_text, lines, "utf-8")
            yield "concatf:" + str(listing)
        finally:
            try:
                await self._in_thread(shutil.rmtree, tmp, True)
            finally:
                self._live_temps.discard(tmp)

    async def get(self, sha256: str) -> StoredFile | None:
        cached = self._index.record(sha256)
        if cached is not None:
            return cached
        return self._index.remember(await self.db.run(_get_txn, "sha256", sha256))

    async def get_by_info_hash(self, info_hash_hex: str) -> StoredFile | None:
        if bytes.fromhex(info_hash_hex) not in self._index.info_hashes:
            return None
        sha = self._index.cached_sha256(info_hash_hex)
        if sha is not None:
            return await self.get(sha)
        return self._index.remember(await self.db.run(_get_txn, "info_hash", info_hash_hex))

    def has_info_hash(self, info_hash: bytes) -> bool:
        """Synchronous: is this v1 info-hash one of ours? (tracker gateway-only mode, peer)."""
        return info_hash in self._index.info_hashes

    def info_hashes(self) -> frozenset[bytes]:
        return frozenset(self._index.info_hashes)

    def announced_info_hashes(self) -> frozenset[bytes]:
        """The stored files that are torrents the gateway announces: all but those only derived
        from other files (transcode outputs, :data:`~tgateway.storage.model.DERIVED_SOURCES`)."""
        return frozenset(self._index.announced)

    async def owners(self, sha256: str) -> list[Ownership]:
        return await self.db.run(_owners_txn, sha256)

    async def owner_files(
        self, owner: str, limit: int = 50, offset: int = 0
    ) -> tuple[list[tuple[StoredFile, Ownership]], int]:
        return await self.db.run(_owner_files_txn, owner, limit, offset)

    async def usage(self, owner: str) -> tuple[int, int]:
        """(files, bytes) owned by ``owner``."""
        return await self.db.run(_usage_txn, owner)

    async def unexamined_videos(
        self, *, after: tuple[float, str] | None = None, limit: int = 100
    ) -> list[StoredFile]:
        return await self.db.run(_unexamined_videos_txn, after, limit)

    async def set_meta(self, sha256: str, **updates: Any) -> None:
        await self.db.run(_set_meta_txn, sha256, updates)
        self._index.changed(sha256)

    async def stats(self) -> dict[str, int]:
        return await self.db.run(_stats_txn)

    async def search(
        self, q: str, limit: int = 50, offset: int = 0
    ) -> tuple[list[tuple[StoredFile, list[Ownership]]], int]:
        return await self.db.run(_search_txn, q, limit, offset)

    # deletion ------------------------------------------------------------------

    async def remove_owner(self, sha256: str, owner: str | None) -> StoredFile | None:
        """Drop ``owner``'s reference (None: every reference). Returns the file if it is gone.

        Raises KeyError when ``owner`` does not own ``sha256``.
        """
        await self._lock.acquire()
        try:
            # The row goes first, durably (synchronous=FULL: not lost even by a power cut), the
            # bytes after: a crash in between leaves unreferenced bytes, which the storage check
            # removes, never a row without bytes.
            f, unused = await self.db.run(_remove_owner_txn, sha256, owner, durable=True)
            if f is None:  # still stored: is it still announced?
                ih = await self.db.run(_only_derived_txn, sha256)
                if ih is not None:
                    self._index.announced.discard(bytes.fromhex(ih))
            else:
                await self._in_thread(self._remove_bytes, self._gone(f, unused))
        finally:
            self._lock.release()
        if f is not None:
            self.log.info("deleted {sha256}", sha256=sha256)
            self._emit(self._on_deleted, f)
        return f

    async def remove_files(
        self, sha256s: list[str], *, still: Callable[[FileUse], bool] | None = None
    ) -> list[StoredFile]:
        """Remove these files with all their owners' references (retention), in one durable
        transaction, then the bytes no other file uses; "deleted" fires for each. ``still``
        sees each file's use read again under the store's lock and may keep it (an upload or a
        read since retention decided). Returns the files removed."""
        await self._lock.acquire()
        try:
            # As in remove_owner: the rows go first, durably, the bytes after.
            removed = await self.db.run(_remove_files_txn, sha256s, still, durable=True)
            paths = [p for f, unused in removed for p in self._gone(f, unused)]
            if paths:
                await self._in_thread(self._remove_bytes, paths)
        finally:
            self._lock.release()
        for f, _ in removed:
            self._emit(self._on_deleted, f)
        return [f for f, _ in removed]

    def _gone(self, f: StoredFile, unused: list[str]) -> list[Path]:
        """Forget ``f``, whose row is gone; return the paths of its bytes to remove (a chunked
        file's chunks that no other file uses)."""
        self._index.removed(f)
        self.reader.cache.discard_file(f.sha256)
        if f.storage == "chunked":
            return [self.layout.chunk_path(c) for c in unused]
        return [self.layout.blob_path(f.sha256)]

    def _remove_bytes(self, paths: list[Path]) -> None:
        """(thread) :func:`~tgateway.storage.placing.remove_bytes` with this store's crash
        points."""
        remove_bytes(self._crash, paths)

    def free_space(self) -> int:
        return self.layout.statvfs_free()

    # the storage check -------------------------------------------------------------

    async def check(self, *, remove: bool = True, keep: int = 1000) -> CheckReport:
        """Find blobs and chunks that no row references (removed unless ``remove`` is False)
        and rows whose bytes are missing (reported), while the store serves; see
        :mod:`tgateway.storage.consistency`. One run at a time; logs what it found."""
        await self._check_lock.acquire()
        try:
            self._check = StorageCheck(
                db=self.db, layout=self.layout, lock=self._lock, in_thread=self._in_thread,
                live_temps=lambda: frozenset(self._live_temps), keep=keep,
            )
            report = await self._check.run(remove=remove)
        finally:
            self._check = None
            self._check_lock.release()
        log_report(self.log, report)
        return report

    def stop_check(self) -> None:
        """Make a running check stop after its current shard."""
        if self._check is not None:
            self._check.stop()


__all__ = ["EmptyUpload", "LocalContentStore", "Ownership", "QuotaExceeded"]

"""The content store: the one place that stores, finds, reads and deletes files.

Callers see four operations (and two events):

- ``begin_upload(...)`` -> :class:`~tgateway.storage.ingest.Ingest`, then ``commit(ingest, ctx)``;
- ``get(sha256)`` / ``get_by_info_hash(hex)`` -> :class:`StoredFile`;
- ``reader`` (the chunk reader) for byte ranges and pieces;
- ``remove_owner(sha256, owner)``: bytes go when no owner is left and no other file uses them.

``subscribe_stored(cb)`` / ``subscribe_deleted(cb)``: every component that reacts to new content
subscribes at wiring time; the upload paths never call those components themselves.

Durability: the temp files are fsynced (by the ingest), renamed to their content address, the
folders fsynced, and only then is the row committed (durably: ``synchronous=FULL``, so an
acknowledged upload survives a power cut). A deletion commits the row's removal durably, then
removes the bytes. Both run under one lock. A crash at any point leaves at most unreferenced
content files, never a row without bytes; :meth:`ContentStore.check` (started in the background at
every start, see :mod:`tgateway.storage.consistency`) removes them.

Every upload's name is cleaned in ``commit`` (:func:`clean_name`); names of older rows when read.
The owner's quota is checked in the transaction that adds the owner's reference (``commit(quota=)``).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import sqlite3
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, fail, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from tgateway import bencode
from tgateway.config import StorageConfig
from tgateway.errors import BadRequest, PayloadTooLarge

from .consistency import CheckReport, StorageCheck
from .crashpoints import CrashPoints
from .disk import DiskLayout, fsync_dirs, place
from .ingest import (
    Ingest,
    IngestResult,
    InlineWorker,
    SerialWorker,
    call_inline,
    convert_layout,
    takes_direct_io,
)
from .model import Chunk, StoredEvent, StoredFile, UploadContext
from .reader import BlockCache, ChunkReader

RECORD_CACHE = 4096  # StoredFile records kept in memory


class EmptyUpload(BadRequest):
    code = "empty_upload"


class QuotaExceeded(PayloadTooLarge):
    """The owner's files would take more than their quota (checked in the transaction that
    adds the owner's reference)."""

    code = "quota_exceeded"


@dataclass(frozen=True)
class Ownership:
    sha256: str
    owner: str  # '' for anonymous
    name: str
    title: str | None
    description: str | None
    announce_dht: bool
    source: str
    created_at: float


# --------------------------------------------------------------------------- names and types

NAME_MAX_BYTES = 240
_EDGES = re.compile(r"\A[\s.]+|[\s.]+\Z")


def _name_char(c: str) -> str:
    """One character of a file name as it is kept: controls (C0, DEL, C1, line and paragraph
    separators) become ``_``; invisible format characters (bidirectional
    embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks U+200E,
    U+200F and U+061C, zero-width characters, the byte order mark, soft hyphen) and lone
    surrogates are dropped."""
    category = unicodedata.category(c)
    if category in ("Cc", "Zl", "Zp"):
        return "_"
    if category in ("Cf", "Cs"):
        return ""
    return c


def clean_name(name: str | None, fallback: str) -> str:
    """A file name safe for torrents, magnet links, Content-Disposition and listings.

    The one rule for every name an upload brings (the store applies it in ``commit``, and to
    names read back from rows stored before the rule): only the last path segment; see
    :func:`_name_char` for the characters replaced or dropped; NFC; no leading or trailing dots or
    white space; at most ``NAME_MAX_BYTES`` bytes of UTF-8. ``fallback`` when nothing is left.
    Applying it twice changes nothing.
    """
    if not name:
        return fallback
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not name.isascii() or not name.isprintable():
        name = "".join(_name_char(c) for c in name)
        name = unicodedata.normalize("NFC", name)  # after the drops: they may join characters
    name = _EDGES.sub("", name)
    encoded = name.encode("utf-8")
    if len(encoded) > NAME_MAX_BYTES:
        name = _EDGES.sub("", encoded[:NAME_MAX_BYTES].decode("utf-8", "ignore"))
    return name or fallback


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftypqt", "video/quicktime"),
    (4, b"ftyp", "video/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF8", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"d8:announce", "application/x-bittorrent"),
)


def sniff_mime(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    for offset, magic, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if mime == "video/mp4" and head[8:11] == b"M4A":
                return "audio/mp4"
            return mime
    return None


def choose_mime(declared: str | None, name: str, head: bytes) -> str:
    """Declared type if specific, else the name's, else the content's, else octet-stream."""
    if declared:
        declared = declared.split(";", 1)[0].strip().lower()
        if declared and declared not in ("application/octet-stream", "binary/octet-stream") and re.match(
            r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$", declared
        ):
            return declared
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed:
        return guessed
    return sniff_mime(head) or "application/octet-stream"


def build_info(name: str, size: int, piece_length: int, pieces: bytes) -> bytes:
    """The bencoded BitTorrent v1 info dict of a single-file torrent."""
    return bencode.encode(
        {
            b"length": size,
            b"name": name.encode("utf-8"),
            b"piece length": piece_length,
            b"pieces": pieces,
        }
    )


# --------------------------------------------------------------------------- SQL (txn functions)


def _row_to_file(conn: sqlite3.Connection, row: sqlite3.Row) -> StoredFile:
    chunks: tuple[Chunk, ...] = ()
    if row["storage"] == "chunked":
        chunks = tuple(
            Chunk(index=r[0], sha256=r[1], offset=r[2], size=r[3])
            for r in conn.execute(
                "SELECT idx, chunk_sha256, offset, size FROM file_chunks"
                " WHERE file_sha256 = ? ORDER BY idx",
                (row["sha256"],),
            )
        )
    return StoredFile(
        sha256=row["sha256"],
        size=row["size"],
        name=clean_name(row["name"], row["sha256"]),  # rows stored before the rule, too
        mime=row["mime"],
        storage=row["storage"],
        piece_length=row["piece_length"],
        info_hash=row["info_hash"],
        info=bytes(row["info"]),
        created_at=row["created_at"],
        chunks=chunks,
        meta=json.loads(row["meta"] or "{}"),
    )


def _get_txn(conn: sqlite3.Connection, column: str, value: str) -> StoredFile | None:
    assert column in ("sha256", "info_hash")
    row = conn.execute(f"SELECT * FROM files WHERE {column} = ?", (value,)).fetchone()
    return _row_to_file(conn, row) if row else None


def _check_quota_txn(conn: sqlite3.Connection, owner: str, sha256: str, size: int,
                     quota: int) -> None:
    """Raise QuotaExceeded when ``owner`` does not own ``sha256`` yet and ``size`` more bytes
    would take their files beyond ``quota``: stored bytes count whether they are new or shared
    with other owners (deduplication saves the disk, not the owner's quota)."""
    if conn.execute(
        "SELECT 1 FROM file_owners WHERE sha256 = ? AND owner = ?", (sha256, owner)
    ).fetchone() is not None:
        return  # an upload of a file the owner already has adds nothing
    _, used = _usage_txn(conn, owner)
    if used + size > quota:
        raise QuotaExceeded(
            f"upload would exceed your storage quota ({used} of {quota} bytes used,"
            f" this file is {size} bytes)"
        )


def _insert_txn(
    conn: sqlite3.Connection, f: StoredFile, ctx: UploadContext, now: float,
    quota: int | None = None,
) -> tuple[StoredFile, bool]:
    """Insert the file (unless present) and the owner row. Returns (file, new).

    With ``quota`` (bytes), the owner's usage is checked in the same transaction, so that
    concurrent uploads by one owner cannot all pass the check (the store's commits run one at
    a time on the one database thread); QuotaExceeded rolls everything back.
    """
    if quota is not None and ctx.owner:
        _check_quota_txn(conn, ctx.owner, f.sha256, f.size, quota)
    existing = _get_txn(conn, "sha256", f.sha256)
    new = existing is None
    if new:
        conn.execute(
            "INSERT INTO files (sha256, size, name, mime, storage, piece_length, info_hash, info,"
            " created_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.sha256, f.size, f.name, f.mime, f.storage, f.piece_length, f.info_hash, f.info,
             f.created_at, json.dumps(f.meta)),
        )
        conn.executemany(
            "INSERT INTO file_chunks (file_sha256, idx, chunk_sha256, offset, size)"
            " VALUES (?, ?, ?, ?, ?)",
            [(f.sha256, c.index, c.sha256, c.offset, c.size) for c in f.chunks],
        )
        existing = f
    conn.execute(
        "INSERT INTO file_owners (sha256, owner, name, title, description, announce_dht, source,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sha256, owner) DO UPDATE SET"
        " title = coalesce(excluded.title, title), description = coalesce(excluded.description, description)",
        (f.sha256, ctx.owner or "", ctx.name or f.name, ctx.title, ctx.description,
         1 if ctx.announce_dht else 0, ctx.source, now),
    )
    assert existing is not None
    return existing, new


def _remove_owner_txn(
    conn: sqlite3.Connection, sha256: str, owner: str | None
) -> tuple[StoredFile | None, list[str]]:
    """Drop one owner (None: all owners). If none is left, drop the file row.

    Returns (the deleted file or None, chunk hashes no longer used by any file).
    """
    if owner is None:
        cur = conn.execute("DELETE FROM file_owners WHERE sha256 = ?", (sha256,))
    else:
        cur = conn.execute(
            "DELETE FROM file_owners WHERE sha256 = ? AND owner = ?", (sha256, owner)
        )
    if cur.rowcount == 0 and owner is not None:
        raise KeyError(sha256)
    left = conn.execute("SELECT count(*) FROM file_owners WHERE sha256 = ?", (sha256,)).fetchone()[0]
    if left:
        return None, []
    f = _get_txn(conn, "sha256", sha256)
    if f is None:
        return None, []
    conn.execute("DELETE FROM files WHERE sha256 = ?", (sha256,))
    unused = []
    for c in {c.sha256 for c in f.chunks}:
        if conn.execute(
            "SELECT 1 FROM file_chunks WHERE chunk_sha256 = ? LIMIT 1", (c,)
        ).fetchone() is None:
            unused.append(c)
    return f, unused


def _ownership(row: sqlite3.Row) -> Ownership:
    return Ownership(
        sha256=row["sha256"],
        owner=row["owner"],
        name=clean_name(row["name"], row["sha256"]),  # rows stored before the rule, too
        title=row["title"],
        description=row["description"],
        announce_dht=bool(row["announce_dht"]),
        source=row["source"],
        created_at=row["created_at"],
    )


def _owners_txn(conn: sqlite3.Connection, sha256: str) -> list[Ownership]:
    return [
        _ownership(r)
        for r in conn.execute(
            "SELECT * FROM file_owners WHERE sha256 = ? ORDER BY created_at", (sha256,)
        )
    ]


def _owner_files_txn(
    conn: sqlite3.Connection, owner: str, limit: int, offset: int
) -> tuple[list[tuple[StoredFile, Ownership]], int]:
    total = conn.execute(
        "SELECT count(*) FROM file_owners WHERE owner = ?", (owner,)
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT o.*, f.sha256 AS fsha FROM file_owners o JOIN files f ON f.sha256 = o.sha256"
        " WHERE o.owner = ? ORDER BY o.created_at DESC, o.sha256 LIMIT ? OFFSET ?",
        (owner, limit, offset),
    ).fetchall()
    out = []
    for r in rows:
        f = _get_txn(conn, "sha256", r["fsha"])
        if f is not None:
            out.append((f, _ownership(r)))
    return out, total


def _usage_txn(conn: sqlite3.Connection, owner: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*), coalesce(sum(f.size), 0) FROM file_owners o"
        " JOIN files f ON f.sha256 = o.sha256 WHERE o.owner = ?",
        (owner,),
    ).fetchone()
    return int(row[0]), int(row[1])


def _all_info_hashes_txn(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT info_hash FROM files")]


def _set_meta_txn(conn: sqlite3.Connection, sha256: str, updates: dict[str, Any]) -> None:
    row = conn.execute("SELECT meta FROM files WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None:
        raise KeyError(sha256)
    meta = json.loads(row[0] or "{}")
    meta.update(updates)
    conn.execute("UPDATE files SET meta = ? WHERE sha256 = ?", (json.dumps(meta), sha256))


def _stats_txn(conn: sqlite3.Connection) -> dict[str, int]:
    files, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM files").fetchone()
    chunks = conn.execute("SELECT count(DISTINCT chunk_sha256) FROM file_chunks").fetchone()[0]
    return {"files": int(files), "bytes": int(size), "chunks": int(chunks)}


# --------------------------------------------------------------------------- the store

StoredCallback = Callable[[StoredEvent], Any]
DeletedCallback = Callable[[StoredFile], Any]


class ContentStore:
    log = Logger()

    def __init__(
        self,
        *,
        reactor: Any,
        db: Any,
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
        self.reader = ChunkReader(reactor, layout, BlockCache(config.chunk_cache_size), self._io_pool)
        self._lock = DeferredLock()
        self._info_hashes: set[bytes] = set()
        # Stored files never change: their records are cached (dropped on delete).
        self._records: OrderedDict[str, StoredFile] = OrderedDict()
        self._by_info_hash: dict[str, str] = {}
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
        hashes = self.db.run_sync(_all_info_hashes_txn)
        self._info_hashes = {bytes.fromhex(h) for h in hashes}

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

            def workers(name: str) -> Any:
                return SerialWorker(reactor, name)

        else:

            def workers(name: str) -> Any:
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
        ingest: Ingest,
        context: UploadContext,
        *,
        declared_type: str | None = None,
        check: Callable[[IngestResult], None] | None = None,
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
                f, _ = await self.db.run(_insert_txn, existing, ctx, now, quota, durable=True)
                event = StoredEvent(file=f, context=ctx, new=False)
            else:
                if quota is not None and ctx.owner:  # refuse before placing anything
                    await self.db.run(_check_quota_txn, ctx.owner, result.sha256, result.size,
                                      quota)
                f = self._describe(result, ctx, declared_type, now)
                placed = await self._in_thread(self._place, result, f)
                try:
                    # durable: an acknowledged upload survives a power cut too
                    f, new = await self.db.run(_insert_txn, f, ctx, now, quota, durable=True)
                except BaseException:
                    await self._in_thread(self._unplace, placed)
                    raise
                self._info_hashes.add(f.info_hash_bytes)
                event = StoredEvent(file=f, context=ctx, new=new)
        finally:
            self._lock.release()
        self.log.info(
            "stored {sha256} ({size} bytes, {kind}, new={new})",
            sha256=event.file.sha256, size=event.file.size, kind=event.file.storage, new=event.new,
        )
        self._emit(self._on_stored, event)
        return event

    def _describe(
        self,
        result: IngestResult,
        ctx: UploadContext,
        declared_type: str | None,
        now: float,
    ) -> StoredFile:
        name = ctx.name or result.sha256  # cleaned by commit
        pl = self.config.chunk_size
        chunked = result.size >= self.config.blob_threshold
        chunks: tuple[Chunk, ...] = ()
        if chunked:
            chunks = tuple(
                Chunk(index=i, sha256=h, offset=i * pl, size=size)
                for i, (h, size) in enumerate(result.chunks)
            )
        info = build_info(name, result.size, pl, result.pieces)
        return StoredFile(
            sha256=result.sha256,
            size=result.size,
            name=name,
            mime=choose_mime(declared_type, name, result.head),
            storage="chunked" if chunked else "blob",
            piece_length=pl,
            info_hash=hashlib.sha1(info).hexdigest(),
            info=info,
            created_at=now,
            chunks=chunks,
        )

    def _place(self, result: IngestResult, f: StoredFile) -> list[Path]:
        """(thread) Move fsynced temp files to their addresses; return the paths newly placed."""
        result = convert_layout(result, f.storage == "chunked")
        placed: list[Path] = []
        try:
            if f.storage == "chunked":
                half = len(f.chunks) // 2
                for c in f.chunks:
                    if c.index == half:
                        self._crash.reach("place:some")
                    final = self.layout.chunk_path(c.sha256)
                    if place(result.chunk_file(c.index), final):
                        placed.append(final)
            else:
                final = self.layout.blob_path(f.sha256)
                if place(result.blob_file, final):
                    placed.append(final)
            fsync_dirs(folder for final in placed for folder in self.layout.folders_of(final))
            self._crash.reach("place:all")
        except BaseException:
            self._unplace(placed)
            raise
        return placed

    @staticmethod
    def _unplace(paths: list[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)

    # lookups -------------------------------------------------------------------

    def _remember(self, f: StoredFile | None) -> StoredFile | None:
        if f is not None:
            self._records[f.sha256] = f
            self._records.move_to_end(f.sha256)
            self._by_info_hash[f.info_hash] = f.sha256
            while len(self._records) > RECORD_CACHE:
                _, old = self._records.popitem(last=False)
                self._by_info_hash.pop(old.info_hash, None)
        return f

    def _forget(self, f: StoredFile) -> None:
        self._records.pop(f.sha256, None)
        self._by_info_hash.pop(f.info_hash, None)

    async def get(self, sha256: str) -> StoredFile | None:
        cached = self._records.get(sha256)
        if cached is not None:
            self._records.move_to_end(sha256)
            return cached
        return self._remember(await self.db.run(_get_txn, "sha256", sha256))

    async def get_by_info_hash(self, info_hash_hex: str) -> StoredFile | None:
        if bytes.fromhex(info_hash_hex) not in self._info_hashes:
            return None
        sha = self._by_info_hash.get(info_hash_hex)
        if sha is not None and sha in self._records:
            return await self.get(sha)
        return self._remember(await self.db.run(_get_txn, "info_hash", info_hash_hex))

    def has_info_hash(self, info_hash: bytes) -> bool:
        """Synchronous: is this v1 info-hash one of ours? (tracker gateway-only mode, peer)."""
        return info_hash in self._info_hashes

    def info_hashes(self) -> frozenset[bytes]:
        return frozenset(self._info_hashes)

    async def owners(self, sha256: str) -> list[Ownership]:
        return await self.db.run(_owners_txn, sha256)

    async def owner_files(
        self, owner: str, limit: int = 50, offset: int = 0
    ) -> tuple[list[tuple[StoredFile, Ownership]], int]:
        return await self.db.run(_owner_files_txn, owner, limit, offset)

    async def usage(self, owner: str) -> tuple[int, int]:
        """(files, bytes) owned by ``owner``."""
        return await self.db.run(_usage_txn, owner)

    async def set_meta(self, sha256: str, **updates: Any) -> None:
        await self.db.run(_set_meta_txn, sha256, updates)
        cached = self._records.pop(sha256, None)
        if cached is not None:
            self._by_info_hash.pop(cached.info_hash, None)

    async def stats(self) -> dict[str, int]:
        return await self.db.run(_stats_txn)

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
            if f is not None:
                self._forget(f)
                self._info_hashes.discard(f.info_hash_bytes)
                self.reader.cache.discard_file(f.sha256)
                paths = (
                    [self.layout.chunk_path(c) for c in unused]
                    if f.storage == "chunked"
                    else [self.layout.blob_path(f.sha256)]
                )
                await self._in_thread(self._remove_bytes, paths)
        finally:
            self._lock.release()
        if f is not None:
            self.log.info("deleted {sha256}", sha256=sha256)
            self._emit(self._on_deleted, f)
        return f

    def _remove_bytes(self, paths: list[Path]) -> None:
        """(thread) The bytes of a file whose row is gone."""
        self._crash.reach("delete:row")
        half = len(paths) // 2
        for i, p in enumerate(paths):
            if i == half and i:
                self._crash.reach("delete:some")
            p.unlink(missing_ok=True)

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
        self._log_check(report)
        return report

    def stop_check(self) -> None:
        """Make a running check stop after its current shard."""
        if self._check is not None:
            self._check.stop()

    def _log_check(self, report: CheckReport) -> None:
        verb = "removed" if report.removed else "found"
        self.log.info(
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
            self.log.error(
                "stored file {sha256} ({storage}) is missing {count} of its bytes' files: {names}",
                sha256=m.sha256, storage=m.storage, count=len(m.missing),
                names=", ".join(m.missing[:8]) + (" ..." if len(m.missing) > 8 else ""),
            )
        if report.stray.count:
            self.log.warn("{n} files in the data folders are not content addresses (left alone):"
                          " {names}", n=report.stray.count, names=", ".join(report.stray.names[:8]))


__all__ = [
    "ContentStore",
    "EmptyUpload",
    "Ownership",
    "QuotaExceeded",
    "build_info",
    "choose_mime",
    "clean_name",
    "sniff_mime",
]

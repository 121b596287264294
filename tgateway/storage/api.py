"""The storage seams: what components may ask of the content store and of the database.

Every component holds the store as :class:`ContentStore` and the database as :class:`Db`, never
as the classes that implement them today (:class:`~tgateway.storage.store.LocalContentStore`:
SQLite and local folders; :class:`~tgateway.storage.db.Database`), so that another backend (say
PostgreSQL and object storage) implements the same faces and nothing else changes.

The content store, seen from outside:

- put bytes: ``begin_upload`` returns an :class:`Upload` that takes the bytes in order; then
  ``commit(upload, context, check=..., quota=...)`` makes the file visible, or refuses it and
  leaves nothing (no file, no event);
- read: ``get`` by SHA-256, ``get_by_info_hash``, ``search`` (the admin's listing); ``reader`` reads pieces and writes byte ranges
  to a consumer (a producer honouring backpressure); ``ffmpeg_input`` is what FFmpeg reads a
  file from (blobs and chunked files look the same from outside; no caller builds a data path);
- delete: ``remove_owner`` drops one owner's reference; the bytes go with the last one;
  ``remove_files`` drops whole files (retention), checking their use again under the store's lock;
- examine: ``unexamined_videos`` lists, page by page, the uploaded videos whose probe (or its
  error) never reached ``meta`` (``set_meta``);
- upkeep: ``access`` notes every read in memory and writes them in batches (a file's last
  access); ``check`` finds bytes no row references and rows whose bytes are missing;
- events: ``subscribe_stored`` / ``subscribe_deleted`` (called on a later reactor turn, once the
  file is visible, or gone); a "stored" event of a derived file (``event.context.derived``:
  made by the gateway from another file) is never announced as a torrent by a subscriber, and
  ``announced_info_hashes`` leaves derived files out.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorFromThreads, IReactorTime

from .model import Ownership, StoredEvent, StoredFile, UploadContext

if TYPE_CHECKING:
    from .consistency import CheckReport
    from .retention import FileUse

__all__ = [
    "Accesses",
    "BlockReader",
    "ByteRangeProducer",
    "ContentStore",
    "Db",
    "DeletedCallback",
    "IStorageReactor",
    "Received",
    "StoredCallback",
    "Upload",
]

T = TypeVar("T")

StoredCallback = Callable[[StoredEvent], Any]
DeletedCallback = Callable[[StoredFile], Any]


class IStorageReactor(IReactorTime, IReactorFromThreads):
    """What storage needs of the reactor: a clock (events go out on a later turn) that its
    worker threads can call back into."""


class Db(Protocol):
    """The metadata database: ``fn(conn, *args)`` runs in one transaction (committed when it
    returns, rolled back when it raises) on the database's thread."""

    def run(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> Deferred[T]:
        """Run on the database thread; ``durable``: the commit is on disk before this fires."""

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run now, blocking (start-up only, before anything serves)."""


class Received(Protocol):
    """What a commit ``check`` sees of an upload's finished bytes."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...


class Upload(Protocol):
    """An upload in progress: its bytes, in order, from the reactor (``write``) or from the one
    thread that reads the body (``reserve``/``feed``), never both in one upload."""

    size: int  # bytes taken so far

    def write(self, data: bytes) -> None:
        """(reactor) Take bytes; raises PayloadTooLarge or a stored worker error."""

    def set_flow_control(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        """The source's pause/resume: ``write`` pauses it while the workers catch up."""

    def reserve(self) -> memoryview:
        """(body thread) Space to receive the next bytes into (then ``feed`` them)."""

    def feed(self, data: Any) -> None:
        """(body thread) Take bytes; waits while every buffer is busy (backpressure)."""

    def abort(self) -> Deferred[None]:
        """Stop and remove everything of this upload."""


class ByteRangeProducer(Protocol):
    """Writes a byte range of a stored file to a consumer, honouring pause/resume."""

    def start(self) -> Deferred[None]:
        """Fires once every byte was written; fails when a read fails or the consumer stops."""

    def stopProducing(self) -> None: ...


class CacheStats(Protocol):
    def stats(self) -> dict[str, int]: ...

    def sweep(self) -> int:
        """Drop the blocks not read since the previous sweep; how many."""


class Accesses(Protocol):
    """The last reads of stored files (:class:`~tgateway.storage.access.AccessLog`)."""

    def touched_since(self, sha256: str, since: float) -> bool: ...

    async def flush(self, *, restart_recent: bool = False) -> int:
        """Write the reads noted in memory; ``restart_recent``: ``touched_since`` then answers
        for the reads from now on."""


class BlockReader(Protocol):
    """Reads stored files: block ``i`` is BitTorrent piece ``i``."""

    def read_block(self, f: StoredFile, index: int) -> Deferred[bytes]: ...

    def producer(self, f: StoredFile, start: int, end: int,
                 consumer: IConsumer) -> ByteRangeProducer:
        """Bytes ``start`` to ``end`` (exclusive) of ``f`` to ``consumer``; call ``start()``."""

    @property
    def cache(self) -> CacheStats: ...


class ContentStore(Protocol):
    """The one place that stores, finds, reads and deletes files (see the module docstring)."""

    @property
    def reader(self) -> BlockReader: ...

    def begin_upload(self, *, size_hint: int | None, max_size: int) -> Upload:
        """Start an upload; ``size_hint``: exact or upper bound of the size, if known."""

    async def commit(
        self,
        upload: Upload,
        context: UploadContext,
        *,
        declared_type: str | None = None,
        check: Callable[[Received], None] | None = None,
        quota: int | None = None,
    ) -> StoredEvent:
        """Finish the upload and make the file visible, then fire "stored" (its type: the declared
        one if specific, else the name's, else sniffed from the first bytes). ``check`` (the
        finished bytes' hashes) and ``quota`` (the owner's bytes, this file included, checked
        atomically with the owner's reference) refuse it first: then nothing is stored and no
        event fires. Raises EmptyUpload, QuotaExceeded, or what ``check`` raises."""

    async def get(self, sha256: str) -> StoredFile | None: ...

    async def get_by_info_hash(self, info_hash_hex: str) -> StoredFile | None: ...

    def has_info_hash(self, info_hash: bytes) -> bool:
        """Synchronous: is this v1 info-hash one of ours?"""

    def info_hashes(self) -> frozenset[bytes]: ...

    def announced_info_hashes(self) -> frozenset[bytes]:
        """The torrents the gateway announces: every stored file but those only derived from
        other files (``UploadContext.derived``: transcode outputs, served over HTTP only)."""

    async def owners(self, sha256: str) -> list[Ownership]: ...

    async def owner_files(
        self, owner: str, limit: int = 50, offset: int = 0
    ) -> tuple[list[tuple[StoredFile, Ownership]], int]: ...

    async def usage(self, owner: str) -> tuple[int, int]:
        """(files, bytes) owned by ``owner``."""

    async def unexamined_videos(
        self, *, after: tuple[float, str] | None = None, limit: int = 100
    ) -> list[StoredFile]:
        """Uploaded videos never examined: a file that looked like a video when stored (its
        type or first bytes, :func:`~tgateway.storage.naming.looks_like_video`) that an uploader owns (not only
        derived) with neither ``video`` nor ``video_error`` in its ``meta`` (a stop or crash came
        between storing and probing). At most ``limit``, in the order (``created_at``,
        ``sha256``), from after ``after`` (the last page's last file's); an indexed query."""

    async def set_meta(self, sha256: str, **updates: Any) -> None:
        """Merge per-file facts (probe results...) into the file's ``meta``; KeyError if gone.
        Writing ``video`` or ``video_error`` marks a video examined."""

    async def stats(self) -> dict[str, int]: ...

    async def search(
        self, q: str, limit: int = 50, offset: int = 0
    ) -> tuple[list[tuple[StoredFile, list[Ownership]]], int]:
        """Files for the admin, newest first, each with its owners, and how many match: ``q``
        (empty: every file) matches the start of a SHA-256, an info-hash or an owner's pubkey
        when it is hex, and anywhere in a file's name or an owner's name or title."""

    async def remove_owner(self, sha256: str, owner: str | None) -> StoredFile | None:
        """Drop ``owner``'s reference (None: all); returns the file if it is gone (then
        "deleted" fires). Raises KeyError when ``owner`` does not own ``sha256``."""

    async def remove_files(
        self, sha256s: list[str], *, still: Callable[[FileUse], bool] | None = None
    ) -> list[StoredFile]:
        """Remove whole files (every owner's reference), then the bytes no other file uses;
        "deleted" fires for each. ``still``: re-checks each file's use under the store's lock
        (False keeps it). Returns the files removed."""

    @property
    def access(self) -> Accesses: ...

    async def check(self, *, remove: bool = True, keep: int = 1000) -> CheckReport:
        """The storage check (:mod:`tgateway.storage.consistency`): bytes no row references
        (removed unless ``remove`` is False) and rows whose bytes are missing (reported)."""

    def stop_check(self) -> None:
        """Make a running check stop after its current shard."""

    def free_space(self) -> int: ...

    def subscribe_stored(self, callback: StoredCallback) -> None: ...

    def subscribe_deleted(self, callback: DeletedCallback) -> None: ...

    def ffmpeg_input(self, f: StoredFile) -> AbstractAsyncContextManager[str]:
        """``async with store.ffmpeg_input(f) as url``: an FFmpeg input URL for the file's
        bytes, valid inside the block (a blob's ``file:`` URL, or a ``concatf:`` list of its
        chunks that the store writes and removes)."""

"""Records the content store hands out. Plain frozen dataclasses: no SQL, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StorageKind = Literal["blob", "chunked"]

# Where files the gateway made from other stored files come from (transcode outputs: MP4
# renditions, HLS playlists and segments). Such a "derived" file is served over HTTP (stream
# routes, downloads, Blossom) but never announced as a torrent: not listed by the tracker, not
# announced by the peer or the DHT, not published on Nostr (NIP-35). The original is the torrent.
DERIVED_SOURCES = frozenset({"transcode"})


@dataclass(frozen=True)
class Chunk:
    """One piece of a chunked file: chunk i is BitTorrent piece i."""

    index: int
    sha256: str
    offset: int
    size: int


@dataclass(frozen=True)
class StoredFile:
    """A file that is visible in the store (its bytes are on disk and its row committed)."""

    sha256: str
    size: int
    name: str
    mime: str
    storage: StorageKind
    piece_length: int
    info_hash: str  # hex, BitTorrent v1 (SHA-1 of the bencoded info dict)
    info: bytes  # the bencoded info dict, kept verbatim so the info-hash never changes
    created_at: float
    chunks: tuple[Chunk, ...] = ()
    # Probe results and other per-file facts added by later components (JSON-able).
    meta: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def info_hash_bytes(self) -> bytes:
        return bytes.fromhex(self.info_hash)

    @property
    def piece_count(self) -> int:
        return (self.size + self.piece_length - 1) // self.piece_length if self.size else 0


@dataclass(frozen=True)
class UploadContext:
    """What the uploader said about an upload; travels with the "file stored" event."""

    owner: str | None = None  # hex pubkey, or None for an anonymous upload
    name: str | None = None
    title: str | None = None
    description: str | None = None
    announce_dht: bool = True
    source: str = "api"  # api | blossom | transcode | mirror
    # Topics for the NIP-35 event. Not kept in ``file_owners`` (no upload route takes them
    # yet): a way in that sets them must store them, or an announcement rebuilt after a
    # restart (Ownership.context) goes out without them.
    tags: tuple[str, ...] = ()

    @property
    def derived(self) -> bool:
        """Made by the gateway from another stored file: never announced (DERIVED_SOURCES)."""
        return self.source in DERIVED_SOURCES


@dataclass(frozen=True)
class StoredEvent:
    """Raised once a file is visible; ``new`` is False when the bytes were already stored."""

    file: StoredFile
    context: UploadContext
    new: bool


@dataclass(frozen=True)
class Ownership:
    """One owner's reference to a stored file (a row of ``file_owners``)."""

    sha256: str
    owner: str  # '' for anonymous
    name: str
    title: str | None
    description: str | None
    announce_dht: bool
    source: str
    created_at: float

    @property
    def derived(self) -> bool:
        return self.source in DERIVED_SOURCES

    def context(self) -> UploadContext:
        """What this owner said when uploading, as kept (an upload's context rebuilt)."""
        return UploadContext(owner=self.owner or None, name=self.name, title=self.title,
                             description=self.description, announce_dht=self.announce_dht,
                             source=self.source)


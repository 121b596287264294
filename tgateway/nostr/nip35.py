"""NIP-35 torrent events (kind 2003): what the gateway publishes for a stored file.

Tags (NIP-35): ``title``; ``x`` = the BitTorrent v1 info-hash (40 lowercase hex, as in the magnet
link); one ``file`` tag per file (path, size in bytes); ``tracker`` tags; ``t`` tags (topics,
lowercase); ``i`` tags (prefixed identifiers such as ``tcat:video,movie``, ``imdb:tt123``).
``content`` is the description.

The seed's tags come beside them (NIP-35 defines none of these names, so they break nothing):
``magnet`` (the magnet URI), ``webseed`` (HTTP URLs serving the bytes), ``blossom`` (the file's
SHA-256, the Blossom reference any Blossom server answers to, then this gateway's Blossom URL when
one runs), ``m`` (MIME type), ``tcat`` (the category as the seed writes it: ``video,streaming``,
also given in NIP-35's form as ``i tcat:video,streaming``), and for a probed video ``stream``
(progressive: the best rendition, the original until one exists), ``hls`` (the master playlist)
and ``transcoded`` (the best rendition only) when a transcode is queued or done, ``duration``
(seconds) and ``video`` (``WxH``, ``<fps>fps``, codec).
The gateway adds the tags that carry value for its own clients: ``magnet`` (the magnet URI),
``webseed`` (HTTP URLs serving the bytes), ``blossom`` (the file's sha256 URL on the Blossom
server), ``m`` (MIME type) and ``r`` (other URLs of the file: its download and Blossom URLs on the
gateway's onion service). ``content`` is the description.

Pure: builds an :class:`~tgateway.nostr.event.EventTemplate`; signing and publishing (through the
outbox) are the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tgateway.metainfo import magnet_uri
from tgateway.nostr.event import EventTemplate

__all__ = ["TORRENT_KIND", "TorrentInfo", "VideoSummary", "torrent_event_template"]

TORRENT_KIND = 2003
MAX_FILES = 500  # keeps the event well under common relay size limits (64 KiB)
_INFO_HASH = re.compile(r"[0-9a-f]{40}\Z")


@dataclass(frozen=True)
class VideoSummary:
    """What a kind 2003 event says of a probed video (the seed's tags)."""

    stream: str
    duration: float
    width: int  # display size
    height: int
    fps: float
    codec: str
    hls: str | None = None  # when a transcode is queued or done
    transcoded: str | None = None


def fmt_number(value: float) -> str:
    """``3600``, ``2.5``, ``29.97``: at most 3 decimals, no trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True)
class TorrentInfo:
    """What a kind 2003 event says about one torrent."""

    title: str
    info_hash_v1: str
    files: Sequence[tuple[str, int]]
    description: str = ""
    trackers: Sequence[str] = ()
    topics: Sequence[str] = ()
    identifiers: Sequence[str] = ()
    webseeds: Sequence[str] = ()
    blossom_url: str | None = None
    mime: str | None = None
    references: Sequence[str] = ()  # ``r`` tags: other URLs of the file (the onion service's)
    include_magnet: bool = True
    magnet: str | None = None  # used as is when given (else built from the fields above)
    sha256: str | None = None  # the blob's hash: the ``blossom`` reference
    category: str | None = None  # ``video,streaming``: ``tcat`` and ``i tcat:...``
    video: VideoSummary | None = None


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def torrent_event_template(info: TorrentInfo, created_at: int) -> EventTemplate:
    """The kind 2003 template for ``info``. Raises ``ValueError`` for a bad info-hash, an empty
    title, no files or a negative size."""
    info_hash = info.info_hash_v1.lower()
    if not _INFO_HASH.match(info_hash):
        raise ValueError("info_hash_v1 must be 40 hex characters (a BitTorrent v1 info-hash)")
    title = " ".join(info.title.split())
    if not title:
        raise ValueError("a torrent event needs a title")
    if not info.files:
        raise ValueError("a torrent event needs at least one file")
    tags: list[tuple[str, ...]] = [("title", title), ("x", info_hash)]
    for path, file_size in list(info.files)[:MAX_FILES]:
        if file_size < 0:
            raise ValueError("file sizes must not be negative")
        tags.append(("file", path, str(file_size)))
    trackers = _unique(info.trackers)
    tags += [("tracker", t) for t in trackers]
    webseeds = _unique(info.webseeds)
    if info.magnet:
        tags.append(("magnet", info.magnet))
    elif info.include_magnet:
        size = sum(s for _, s in info.files) if len(info.files) == 1 else None
        tags.append(("magnet", magnet_uri(info_hash, title, trackers, webseeds, size)))
    tags += [("webseed", w) for w in webseeds]
    if info.sha256:
        tags.append(("blossom", info.sha256, *([info.blossom_url] if info.blossom_url else [])))
    elif info.blossom_url:
        tags.append(("blossom", info.blossom_url))
    v = info.video
    if v is not None:
        tags.append(("stream", v.stream))
        if v.hls:
            tags.append(("hls", v.hls))
        if v.transcoded:
            tags.append(("transcoded", v.transcoded))
        tags.append(("duration", fmt_number(v.duration)))
        tags.append(("video", f"{v.width}x{v.height}", f"{fmt_number(v.fps)}fps", v.codec))
    if info.mime:
        tags.append(("m", info.mime))
    topics = _unique([t.strip().lstrip("#").lower() for t in info.topics])
    tags += [("t", t) for t in topics]
    identifiers = list(info.identifiers)
    if info.category:
        tags.append(("tcat", info.category))
        identifiers.insert(0, f"tcat:{info.category}")
    tags += [("i", i) for i in _unique(identifiers)]
    tags += [("r", r) for r in _unique(info.references)]
    return EventTemplate(
        kind=TORRENT_KIND, created_at=created_at, tags=tuple(tags), content=info.description
    )

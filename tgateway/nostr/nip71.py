"""NIP-71 video events: kinds 21 (normal) and 22 (short), or addressable 34235 and 34236.

Tags: ``title``, ``published_at`` (unix seconds of the upload, stringified: the first time the
video was published, the same in every version), ``alt``, ``duration``, one NIP-92 ``imeta`` tag
per variant (space-separated ``key value`` entries: ``url``, ``m``, ``x``, ``dim``,
``duration``, ``bitrate``, ``size``, ``fallback``...): one per MP4 rendition and one for the HLS
master playlist (``m application/x-mpegURL``), or the original alone when it is not transcoded;
``t`` hashtags, and the torrent of the uploaded file: ``magnet`` and ``i`` (its BitTorrent v1
info-hash). ``content`` is the description. Landscape or square is "normal", portrait "short".

Regular (kinds 21/22, the default) or addressable (kinds 34235/34236 with a ``d`` tag, the
original's SHA-256, when ``nostr.nip71_addressable`` is on), as NIP-71 defines them: a regular
event cannot be updated, so it goes out once, when the video is ready (its renditions and HLS
playlist stored, or at once when it is not transcoded); an addressable event can be replaced, so
it goes out as soon as the video is probed and its transcode queued (the original as the one
variant: the stream URL serves it until a rendition exists), and again with the same ``d`` tag,
a later ``created_at`` and the same ``published_at`` once the renditions are ready.

:func:`video_event_template` is pure. :class:`VideoAnnouncer` is the transcoder's
:class:`~tgateway.transcode.api.VideoListener`: it turns the results it hands over (the original,
its probe, the renditions) into a :class:`VideoInfo` with the gateway's links (stream URL, Blossom
and webseed fallbacks, the onion service's stream, Blossom and webseed URLs as more fallbacks
while it is up, the original's magnet), signs the event with the gateway key and hands it
to the outbox for ``nostr.video_relays`` (ref ``nip71:<sha256>``; a video that already has a
NIP-71 event in the outbox is not announced again).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.blocklist import Bans
from tgateway.links import Links
from tgateway.nostr.announce import TorrentAnnouncer
from tgateway.nostr.event import Event, EventTemplate
from tgateway.nostr.nip09 import live_events
from tgateway.nostr.publisher import Publisher
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile
from tgateway.transcode.api import ProbeResult, VideoResults

__all__ = ["REF_PREFIX", "VideoAnnouncer", "VideoInfo", "VideoVariant", "video_event_template"]

NORMAL_VIDEO = 21
SHORT_VIDEO = 22
ADDRESSABLE_NORMAL_VIDEO = 34235
ADDRESSABLE_SHORT_VIDEO = 34236
HLS_MIME = "application/x-mpegURL"
REF_PREFIX = "nip71:"
FIRST_VERSION = ":original"  # ref suffix of an addressable event's version before renditions


@dataclass(frozen=True)
class VideoVariant:
    url: str
    mime: str
    sha256: str
    width: int
    height: int
    duration: float
    bitrate: int = 0
    size: int = 0
    fallbacks: Sequence[str] = ()


@dataclass(frozen=True)
class VideoInfo:
    title: str
    published_at: int
    duration: float
    width: int  # display size of the video (decides normal or short)
    height: int
    variants: Sequence[VideoVariant]
    description: str = ""
    alt: str = ""
    info_hash: str | None = None
    magnet: str | None = None
    hashtags: Sequence[str] = field(default_factory=tuple)
    identifier: str | None = None  # the ``d`` tag: an addressable event when set


def _fmt_seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def imeta_tag(v: VideoVariant) -> tuple[str, ...]:
    entries = [f"url {v.url}", f"m {v.mime}", f"x {v.sha256}", f"dim {v.width}x{v.height}",
               f"duration {_fmt_seconds(v.duration)}"]
    if v.bitrate:
        entries.append(f"bitrate {v.bitrate}")
    if v.size:
        entries.append(f"size {v.size}")
    entries += [f"fallback {u}" for u in dict.fromkeys(v.fallbacks) if u and u != v.url]
    return ("imeta", *entries)


def video_event_template(info: VideoInfo, created_at: int) -> EventTemplate:
    """Kind 21 for landscape (or square) videos, 22 for portrait; 34235 and 34236 with a ``d``
    tag when ``info.identifier`` is set. Raises ValueError without a title or a variant."""
    title = " ".join(info.title.split())
    if not title:
        raise ValueError("a video event needs a title")
    if not info.variants:
        raise ValueError("a video event needs at least one variant")
    short = info.height > info.width
    tags: list[tuple[str, ...]] = []
    if info.identifier:
        kind = ADDRESSABLE_SHORT_VIDEO if short else ADDRESSABLE_NORMAL_VIDEO
        tags.append(("d", info.identifier))
    else:
        kind = SHORT_VIDEO if short else NORMAL_VIDEO
    tags += [
        ("title", title),
        ("published_at", str(int(info.published_at))),
        ("alt", " ".join((info.alt or info.description or title).split())),
        ("duration", _fmt_seconds(info.duration)),
    ]
    tags += [imeta_tag(v) for v in info.variants]
    if info.magnet:
        tags.append(("magnet", info.magnet))
    if info.info_hash:
        tags.append(("i", info.info_hash))
    topics = dict.fromkeys(t.strip().lstrip("#").lower() for t in info.hashtags)
    tags += [("t", t) for t in topics if t]
    return EventTemplate(kind=kind, created_at=created_at, tags=tuple(tags),
                         content=info.description)


class VideoAnnouncer:
    """The transcoder's video listener: passes examined videos on to the NIP-35 announcer, and
    signs NIP-71 events of the videos handed over and gives them to the publisher (the outbox)
    for the video relays."""

    log = Logger()

    def __init__(self, *, sign: Callable[[EventTemplate], Event], outbox: Publisher,
                 relays: Sequence[str], clock: IReactorTime, links: Links,
                 store: ContentStore, addressable: bool = False,
                 torrents: TorrentAnnouncer | None = None, bans: Bans | None = None) -> None:
        self.sign = sign
        self.outbox = outbox
        self.relays = tuple(relays)
        self.clock = clock
        self.links = links
        self.store = store
        self.addressable = addressable
        self.torrents = torrents
        self.bans = bans
        self._created_at: dict[str, int] = {}  # sha256 -> created_at of its last event

    async def video_found(self, original: StoredFile, probe: ProbeResult | None,
                          queued: bool) -> Event | None:
        """NIP-35 (the torrent announcer waits for this), then, for an addressable event of a
        video whose transcode is queued, its first version (the original alone)."""
        if self.torrents is not None:
            try:
                await self.torrents.video_found(original, probe, queued)
            except Exception:
                self.log.failure("NIP-35 announcement of {sha256} failed",
                                 sha256=original.sha256)
        if not (self.addressable and queued and probe is not None and self.relays):
            return None  # regular events go out once, when the video is ready
        sha256 = original.sha256
        if await self._all_uploaders_banned(sha256):
            return None
        if (await live_events(self.outbox, sha256, REF_PREFIX)
                or await live_events(self.outbox, sha256, REF_PREFIX, FIRST_VERSION)):
            return None
        return await self._publish(VideoResults(original, probe),
                                   REF_PREFIX + sha256 + FIRST_VERSION)

    async def _all_uploaders_banned(self, sha256: str) -> bool:
        """Every uploader of it is banned (an anonymous upload has no key to ban)."""
        if self.bans is None:
            return False
        owners = [o.owner for o in await self.store.owners(sha256) if not o.derived]
        return bool(owners) and all(o and self.bans.is_banned(o) for o in owners)

    async def video_ready(self, video: VideoResults) -> Event | None:
        """Queue the event; None when no relay is configured, it was announced before (and not
        retracted by NIP-09), or every uploader of it is banned."""
        sha256 = video.original.sha256
        if not self.relays:
            return None
        if await self._all_uploaders_banned(sha256):
            return None
        ref = REF_PREFIX + sha256
        if await live_events(self.outbox, sha256, REF_PREFIX):
            return None
        return await self._publish(video, ref)

    async def _publish(self, video: VideoResults, ref: str) -> Event:
        sha256 = video.original.sha256
        info = await self.video_info(video)
        created_at = int(self.clock.seconds())
        last = self._created_at.get(sha256)
        if last is not None and created_at <= last:
            created_at = last + 1  # a replacement must be newer than the version it replaces
        self._created_at[sha256] = created_at
        event = self.sign(video_event_template(info, created_at))
        await self.outbox.publish(event, self.relays, ref=ref)
        self.log.info("video {sha256} announced as kind {kind} event {id} to {n} relays",
                      sha256=sha256, kind=event.kind, id=event.id, n=len(self.relays))
        return event

    async def video_info(self, video: VideoResults) -> VideoInfo:
        """The event's content: the uploaders' title and description, one variant per rendition
        and one for the HLS master playlist (or the original alone), every URL from the
        gateway's links."""
        f, probe = video.original, video.probe
        owners = [o for o in await self.store.owners(f.sha256) if not o.derived]
        title = next((o.title for o in owners if o.title), None) or os.path.splitext(f.name)[0]
        description = next((o.description for o in owners if o.description), None) or ""
        variants = [self._variant(r.file, r.width, r.height, r.bitrate, probe.duration)
                    for r in video.renditions]
        if variants and video.master is not None:
            top = max(video.renditions, key=lambda r: r.width * r.height)
            blossom = self.links.blossom(video.master)
            # the master names its variant playlists by relative <sha256>.m3u8 URIs: they
            # resolve on a Blossom server, not under a webseed or download URL
            variants.append(VideoVariant(
                url=self.links.hls(f), mime=HLS_MIME, sha256=video.master.sha256,
                width=top.width, height=top.height, duration=probe.duration,
                bitrate=max(r.bitrate for r in video.renditions), size=video.master.size,
                fallbacks=[blossom] if blossom else []))
        if not variants:
            variants = [self._variant(f, probe.display_width, probe.display_height,
                                      probe.bitrate, probe.duration)]
        return VideoInfo(title=title, published_at=int(f.created_at), duration=probe.duration,
                         width=probe.display_width, height=probe.display_height,
                         variants=variants, description=description, info_hash=f.info_hash,
                         magnet=self.links.magnet(f),
                         identifier=f.sha256 if self.addressable else None)

    def _variant(self, f: StoredFile, width: int, height: int, bitrate: int,
                 duration: float) -> VideoVariant:
        fallbacks = self._fallbacks(self.links, f)
        onion = self.links.onion()
        if onion is not None:  # the onion service's URLs too, while it is up
            fallbacks += [onion.stream(f), *self._fallbacks(onion, f)]
        return VideoVariant(url=self.links.stream(f), mime=f.mime, sha256=f.sha256, width=width,
                            height=height, duration=duration, bitrate=bitrate, size=f.size,
                            fallbacks=fallbacks)

    @staticmethod
    def _fallbacks(links: Links, f: StoredFile) -> list[str]:
        blossom = links.blossom(f)
        return [*([blossom] if blossom else []), links.webseed(f)]

    async def announcements(self, sha256: str) -> list[dict[str, Any]]:
        rows = [*await self.outbox.deliveries_for_ref(REF_PREFIX + sha256 + FIRST_VERSION),
                *await self.outbox.deliveries_for_ref(REF_PREFIX + sha256)]
        return [row.to_json() for row in rows]

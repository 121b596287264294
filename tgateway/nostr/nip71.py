"""NIP-71 video events: kind 21 (normal, landscape) and kind 22 (short, portrait).

Tags: ``title``, ``published_at`` (unix seconds, stringified), ``alt``, ``duration``, one
NIP-92 ``imeta`` tag per variant (space-separated ``key value`` entries: ``url``, ``m``, ``x``,
``dim``, ``duration``, ``bitrate``, ``size``, ``fallback``...), ``t`` hashtags, and the torrent of
the uploaded file: ``magnet`` and ``i`` (its BitTorrent v1 info-hash). ``content`` is the
description.

:func:`video_event_template` is pure. :class:`VideoAnnouncer` is the transcoder's
:class:`~tgateway.transcode.api.VideoListener`: it turns the results it hands over (the original,
its probe, the renditions) into a :class:`VideoInfo` with the gateway's links (stream URL, Blossom
and download fallbacks, the original's magnet), signs the event with the gateway key and hands it
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

from tgateway.links import Links
from tgateway.nostr.event import Event, EventTemplate
from tgateway.nostr.publisher import Publisher
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile
from tgateway.transcode.api import VideoResults

__all__ = ["VideoAnnouncer", "VideoInfo", "VideoVariant", "video_event_template", "REF_PREFIX"]

NORMAL_VIDEO = 21
SHORT_VIDEO = 22
REF_PREFIX = "nip71:"


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
    width: int  # display size of the video (decides kind 21 or 22)
    height: int
    variants: Sequence[VideoVariant]
    description: str = ""
    alt: str = ""
    info_hash: str | None = None
    magnet: str | None = None
    hashtags: Sequence[str] = field(default_factory=tuple)


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
    """Kind 21 for landscape (or square) videos, 22 for portrait. Raises ValueError without
    a title or a variant."""
    title = " ".join(info.title.split())
    if not title:
        raise ValueError("a video event needs a title")
    if not info.variants:
        raise ValueError("a video event needs at least one variant")
    kind = SHORT_VIDEO if info.height > info.width else NORMAL_VIDEO
    tags: list[tuple[str, ...]] = [
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
    """Signs NIP-71 events of the videos the transcoder hands over and gives them to the
    publisher (the outbox) for the video relays."""

    log = Logger()

    def __init__(self, *, sign: Callable[[EventTemplate], Event], outbox: Publisher,
                 relays: Sequence[str], clock: IReactorTime, links: Links,
                 store: ContentStore) -> None:
        self.sign = sign
        self.outbox = outbox
        self.relays = tuple(relays)
        self.clock = clock
        self.links = links
        self.store = store

    async def video_ready(self, video: VideoResults) -> Event | None:
        """Queue the event; None when no relay is configured or it was announced before."""
        sha256 = video.original.sha256
        if not self.relays:
            return None
        ref = REF_PREFIX + sha256
        if await self.outbox.deliveries_for_ref(ref):
            return None
        info = await self.video_info(video)
        event = self.sign(video_event_template(info, int(self.clock.seconds())))
        await self.outbox.publish(event, self.relays, ref=ref)
        self.log.info("video {sha256} announced as kind {kind} event {id} to {n} relays",
                      sha256=sha256, kind=event.kind, id=event.id, n=len(self.relays))
        return event

    async def video_info(self, video: VideoResults) -> VideoInfo:
        """The event's content: the uploaders' title and description, one variant per rendition
        (or the original alone), every URL from the gateway's links."""
        f, probe = video.original, video.probe
        owners = [o for o in await self.store.owners(f.sha256) if not o.derived]
        title = next((o.title for o in owners if o.title), None) or os.path.splitext(f.name)[0]
        description = next((o.description for o in owners if o.description), None) or ""
        variants = [self._variant(r.file, r.width, r.height, r.bitrate, probe.duration)
                    for r in video.renditions]
        if not variants:
            variants = [self._variant(f, probe.display_width, probe.display_height,
                                      probe.bitrate, probe.duration)]
        return VideoInfo(title=title, published_at=int(f.created_at), duration=probe.duration,
                         width=probe.display_width, height=probe.display_height,
                         variants=variants, description=description, info_hash=f.info_hash,
                         magnet=self.links.magnet(f))

    def _variant(self, f: StoredFile, width: int, height: int, bitrate: int,
                 duration: float) -> VideoVariant:
        blossom = self.links.blossom(f)
        return VideoVariant(url=self.links.stream(f), mime=f.mime, sha256=f.sha256, width=width,
                            height=height, duration=duration, bitrate=bitrate, size=f.size,
                            fallbacks=[*([blossom] if blossom else []), self.links.download(f)])

    async def announcements(self, sha256: str) -> list[dict[str, Any]]:
        rows = await self.outbox.deliveries_for_ref(REF_PREFIX + sha256)
        return [row.to_json() for row in rows]

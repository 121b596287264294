"""NIP-35 announcements of stored files: build, sign with the gateway key, hand to the outbox.

:class:`TorrentAnnouncer` is subscribed to the content store's "file stored" event at wiring time
(derived files, such as transcode outputs, are not torrents and are not announced). When
``nostr.publish_nip35`` and ``nostr.auto_publish`` are on and relays are configured, a new file
gets one kind 2003 event (title, v1 info-hash, file, the gateway's trackers, topics, category,
magnet, webseed, Blossom URL, MIME type; the uploader's description as content). A file that
already has an announcement is not announced again automatically; :meth:`TorrentAnnouncer.announce`
(``POST /api/files/<sha256>/announce``) publishes a fresh event on demand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from coincurve import PrivateKey
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.links import Links
from tgateway.nostr.event import Event, sign
from tgateway.nostr.nip35 import TorrentInfo, torrent_event_template
from tgateway.nostr.publisher import Publisher
from tgateway.storage.model import StoredEvent, StoredFile, UploadContext
from tgateway.storage.nostr_outbox import Delivery

__all__ = ["TorrentAnnouncer", "torrent_info_for"]


def _category(mime: str) -> str | None:
    top = mime.split("/", 1)[0].lower()
    return top if top in ("video", "audio", "image", "text", "application") else None


def torrent_info_for(f: StoredFile, context: UploadContext | None, links: Links) -> TorrentInfo:
    """The NIP-35 description of a stored file, with the gateway's own links."""
    context = context or UploadContext()
    category = _category(f.mime)
    return TorrentInfo(
        title=(context.title or f.name).strip() or f.name,
        info_hash_v1=f.info_hash,
        files=[(f.name, f.size)],
        description=context.description or "",
        trackers=links.tracker_urls,
        topics=context.tags,
        identifiers=[f"tcat:{category}"] if category else [],
        webseeds=[links.webseed(f)],
        blossom_url=links.blossom(f),
        mime=f.mime,
        magnet=links.magnet(f),
    )


class TorrentAnnouncer:
    """Publishes NIP-35 torrent events for stored files through the publisher (the outbox)."""

    log = Logger()

    def __init__(
        self,
        *,
        key: PrivateKey,
        outbox: Publisher,
        links: Links,
        relays: Sequence[str],
        clock: IReactorTime,
        auto_publish: bool = True,
        get_file: Callable[[str], Awaitable[StoredFile | None]] | None = None,
    ) -> None:
        self.key = key
        self.outbox = outbox
        self.links = links
        self.relays = tuple(relays)
        self.clock = clock
        self.auto_publish = auto_publish
        self._get_file = get_file

    def event_for(self, f: StoredFile, context: UploadContext | None) -> Event:
        template = torrent_event_template(
            torrent_info_for(f, context, self.links), int(self.clock.seconds())
        )
        return sign(template, self.key)

    async def on_stored(self, stored: StoredEvent) -> None:
        """The content store's "file stored" subscriber (a ``StoredEvent``)."""
        if not self.auto_publish or not self.relays:
            return
        if stored.context.derived:
            return  # renditions, HLS segments and playlists: served over HTTP, not torrents
        f = stored.file
        if await self.outbox.deliveries_for_ref(f.sha256):
            return  # announced before (same bytes uploaded again)
        await self._publish(f, stored.context)

    async def announce(self, sha256: str, context: UploadContext | None = None) -> Event | None:
        """Publish a fresh announcement of a stored file now; None when it is unknown or no
        relay is configured. The caller checks ownership."""
        if not self.relays or self._get_file is None:
            return None
        f = await self._get_file(sha256)
        if f is None:
            return None
        return await self._publish(f, context)

    async def _publish(self, f: StoredFile, context: UploadContext | None) -> Event:
        event = self.event_for(f, context)
        await self.outbox.publish(event, self.relays, ref=f.sha256)
        self.log.info(
            "announcing {sha256} as {id} to {n} relays",
            sha256=f.sha256,
            id=event.id,
            n=len(self.relays),
        )
        return event

    async def announcements(self, sha256: str) -> list[dict[str, Any]]:
        """Per-relay delivery status of every announcement of ``sha256`` (for the API)."""
        rows: list[Delivery] = await self.outbox.deliveries_for_ref(sha256)
        return [row.to_json() for row in rows]

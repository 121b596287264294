"""NIP-35 announcements of stored files: build, sign with the gateway key, hand to the outbox.

:class:`TorrentAnnouncer` is subscribed to the content store's "file stored" event at wiring time
(derived files, such as transcode outputs, are not torrents and are not announced). When
``nostr.publish_nip35`` and ``nostr.auto_publish`` are on and relays are configured, a new file
gets one kind 2003 event (title, v1 info-hash, file, the gateway's trackers, magnet, webseed, the
Blossom reference, MIME type, topics ``torrent`` and the uploader's tags, category as ``tcat``
and ``i tcat:``; the uploader's description as content, else a line as the seed writes it:
``New torrent: <name>``), unless its uploader is banned.

A video (``video/*``) is announced once the transcoder has examined it (``video_found``, when
``await_video_probe`` is on: the transcoder is built with Nostr in every mode and reports every
upload that looks like a video, probed or not): then its event carries the seed's ``stream``,
``duration`` and ``video`` tags, ``hls`` and ``transcoded`` when a transcode is queued (those URLs
answer 202 with Retry-After until it is done), topics ``video`` and ``streaming`` and the category
``video,streaming``. A kind 2003 event is a regular event, so it goes out once, with what is known
when the video is probed. The upload's context (title, description) waits in memory; a video
examined after a restart (the transcoder examines at start the uploads a stop or crash left
unprobed) has none there, and its context is rebuilt from what the store kept of its uploaders
(``file_owners``: the first uploader's, with the first title and description given). A file
that already has an announcement (not retracted by NIP-09, see :mod:`tgateway.nostr.nip09`) is
not announced again automatically; :meth:`TorrentAnnouncer.announce`
(``POST /api/files/<sha256>/announce``) publishes a fresh event on demand (with the probe and
transcoding state kept in the file's metadata).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from coincurve import PrivateKey
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.blocklist import Bans
from tgateway.links import Links
from tgateway.nostr.event import Event, sign
from tgateway.nostr.nip09 import live_events
from tgateway.nostr.nip35 import TorrentInfo, VideoSummary, torrent_event_template
from tgateway.nostr.publisher import Publisher
from tgateway.storage.model import Ownership, StoredEvent, StoredFile, UploadContext
from tgateway.storage.nostr_outbox import Delivery
from tgateway.transcode.api import ProbeResult

__all__ = ["TorrentAnnouncer", "torrent_info_for"]


def _category(mime: str) -> str | None:
    top = mime.split("/", 1)[0].lower()
    return top if top in ("video", "audio", "image", "text", "application") else None


def _probe_of(f: StoredFile) -> ProbeResult | None:
    video = f.meta.get("video")
    if not isinstance(video, dict):
        return None
    try:
        return ProbeResult.from_json(video)
    except TypeError:
        return None


def _transcoded(f: StoredFile) -> bool:
    state = f.meta.get("transcoding")
    return isinstance(state, dict) and state.get("state") == "done"


def torrent_info_for(f: StoredFile, context: UploadContext | None, links: Links, *,
                     probe: ProbeResult | None = None, transcoding: bool = False) -> TorrentInfo:
    """The NIP-35 description of a stored file, with the gateway's own links (the onion
    service's too while it is up: a second webseed, and its download and Blossom URLs as ``r``).
    ``probe``: the video's probe (else the one kept in the file's metadata); ``transcoding``: a
    transcode is queued or done (else: done, as the metadata says), so its HLS and transcoded
    URLs lead somewhere."""
    context = context or UploadContext()
    probe = probe or _probe_of(f)
    transcoding = transcoding or _transcoded(f)
    category = _category(f.mime)
    onion = links.onion()
    references = [u for u in (onion.download(f), onion.blossom(f)) if u] if onion else []
    topics = ["torrent"]
    video = None
    if probe is not None:
        category = "video,streaming"
        topics += ["video", "streaming"]
        video = VideoSummary(
            stream=links.stream(f), duration=probe.duration, width=probe.display_width,
            height=probe.display_height, fps=probe.fps, codec=probe.video_codec,
            hls=links.hls(f) if transcoding else None,
            transcoded=links.transcoded(f) if transcoding else None)
    elif category == "video":
        topics.append("video")
    return TorrentInfo(
        title=(context.title or f.name).strip() or f.name,
        info_hash_v1=f.info_hash,
        files=[(f.name, f.size)],
        description=(context.description or "").strip() or f"New torrent: {f.name}",
        trackers=links.tracker_urls,
        topics=[*topics, *context.tags],
        webseeds=links.webseeds(f),
        blossom_url=links.blossom(f),
        sha256=f.sha256,
        mime=f.mime,
        references=references,
        magnet=links.magnet(f),
        category=category,
        video=video,
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
        get_owners: Callable[[str], Awaitable[list[Ownership]]] | None = None,
        await_video_probe: bool = False,
        bans: Bans | None = None,
    ) -> None:
        self.key = key
        self.outbox = outbox
        self.links = links
        self.relays = tuple(relays)
        self.clock = clock
        self.auto_publish = auto_publish
        self.await_video_probe = await_video_probe
        self._get_file = get_file
        self._get_owners = get_owners
        self._contexts: dict[str, UploadContext] = {}  # videos waiting for their probe
        self._announcing: set[str] = set()
        self.bans = bans

    def event_for(self, f: StoredFile, context: UploadContext | None, *,
                  probe: ProbeResult | None = None, transcoding: bool = False) -> Event:
        info = torrent_info_for(f, context, self.links, probe=probe, transcoding=transcoding)
        return sign(torrent_event_template(info, int(self.clock.seconds())), self.key)

    async def on_stored(self, stored: StoredEvent) -> None:
        """The content store's "file stored" subscriber (a ``StoredEvent``)."""
        if not self.auto_publish or not self.relays:
            return
        if stored.context.derived:
            return  # renditions, HLS segments and playlists: served over HTTP, not torrents
        owner = stored.context.owner
        if owner and self.bans is not None and self.bans.is_banned(owner):
            return  # the gateway publishes nothing for a banned key
        f = stored.file
        if (self.await_video_probe and f.mime.lower().startswith("video/")
                and "video" not in f.meta):
            self._contexts[f.sha256] = stored.context  # announced once examined (video_found)
            return
        await self._publish_once(f, stored.context)

    async def video_found(self, f: StoredFile, probe: ProbeResult | None,
                          queued: bool) -> Event | None:
        """The transcoder examined a video upload: announce it with what the probe says (and the
        upload's context: kept since it was stored, else rebuilt from the store)."""
        context = self._contexts.pop(f.sha256, None)
        if not self.auto_publish or not self.relays:
            return None
        if context is None:
            context = await self.stored_context(f.sha256)
            owner = context.owner if context is not None else None
            if owner and self.bans is not None and self.bans.is_banned(owner):
                return None  # the gateway publishes nothing for a banned key
        return await self._publish_once(f, context, probe=probe, transcoding=queued)

    async def stored_context(self, sha256: str) -> UploadContext | None:
        """The upload's context as the store kept it: its first uploader's (not a derived
        owner), with the first title and description any uploader gave; None if unknown."""
        if self._get_owners is None:
            return None
        owners = [o for o in await self._get_owners(sha256) if not o.derived]
        if not owners:
            return None
        return replace(
            owners[0].context(),
            title=next((o.title for o in owners if o.title), None),
            description=next((o.description for o in owners if o.description), None))

    async def _publish_once(self, f: StoredFile, context: UploadContext | None, *,
                            probe: ProbeResult | None = None,
                            transcoding: bool = False) -> Event | None:
        if f.sha256 in self._announcing:
            return None
        self._announcing.add(f.sha256)
        try:
            if await live_events(self.outbox, f.sha256):
                return None  # announced before (same bytes uploaded again), and not retracted
            return await self._publish(f, context, probe=probe, transcoding=transcoding)
        finally:
            self._announcing.discard(f.sha256)

    async def announce(self, sha256: str, context: UploadContext | None = None) -> Event | None:
        """Publish a fresh announcement of a stored file now; None when it is unknown or no
        relay is configured. The caller checks ownership."""
        if not self.relays or self._get_file is None:
            return None
        f = await self._get_file(sha256)
        if f is None:
            return None
        return await self._publish(f, context)

    async def _publish(self, f: StoredFile, context: UploadContext | None, *,
                       probe: ProbeResult | None = None, transcoding: bool = False) -> Event:
        event = self.event_for(f, context, probe=probe, transcoding=transcoding)
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

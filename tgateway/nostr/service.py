"""The gateway's Nostr side as one service: identity, relay pool, outbox, NIP-35 announcer and
NIP-09 retractor.

:func:`build` (the component, built after storage so that the database opens first and closes
last) subscribes the NIP-35 announcer to the store's "stored" event and the NIP-09 retractor to
its "deleted" event (through ``tap``: the service subscribes nothing itself), hands both
announcers the block list (nothing is published for a banned key), and offers the
:class:`~tgateway.nostr.nip71.VideoAnnouncer` to the transcoder as its video listener: it passes
examined videos on to the NIP-35 announcer and publishes NIP-71 events to ``nostr.video_relays``
when ``nostr.publish_nip71`` and ``nostr.auto_publish`` are both on (either off: no NIP-71 event
goes out).

Construction loads (or creates) the key, so a bad ``nostr.private_key`` or relay URL raises
``ConfigError`` before the reactor starts. Children start in order pool, outbox and stop in
reverse, so attempts in flight are cancelled (and stay pending) before connections close.
The web layer reads :meth:`NostrService.identity` (``GET /api/nostr/identity``),
``announcer.announcements(sha256)`` and ``announcer.announce(sha256)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric
from twisted.application.service import MultiService
from twisted.logger import Logger

from tgateway.blocklist import Bans
from tgateway.component import Component, Deps, Provided
from tgateway.config import ConfigError, NostrConfig
from tgateway.links import Links
from tgateway.metrics import Collect, counter, gauge
from tgateway.nostr.announce import TorrentAnnouncer
from tgateway.nostr.event import Event, EventTemplate, sign
from tgateway.nostr.keys import load_or_create_key, npub_encode, public_key_of
from tgateway.nostr.nip09 import Retractor
from tgateway.nostr.nip71 import VideoAnnouncer
from tgateway.nostr.outbox import Outbox
from tgateway.nostr.pool import EndpointFactory, IRelayReactor, RelayPool, parse_relay_url
from tgateway.storage.api import ContentStore, Db
from tgateway.storage.nostr_outbox import OutboxStore

__all__ = ["NostrService", "build"]


def _check_relays(key: str, urls: tuple[str, ...]) -> None:
    for url in urls:
        try:
            parse_relay_url(url)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None


class NostrService(MultiService):
    log = Logger()
    name = "nostr"

    def __init__(
        self,
        config: NostrConfig,
        *,
        data_dir: str,
        db: Db,
        links: Links,
        reactor: IRelayReactor,
        store: ContentStore | None = None,
        endpoint_factory: EndpointFactory | None = None,
        await_video_probe: bool = False,
        bans: Bans | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        _check_relays("nostr.relays", tuple(config.relays))
        _check_relays("nostr.video_relays", tuple(config.video_relays))
        self.config = config
        self.key = load_or_create_key(config.private_key, data_dir)
        self.pubkey = public_key_of(self.key)
        self.npub = npub_encode(self.pubkey)
        self.reactor = reactor
        self.pool = RelayPool(reactor, private_key=self.key, endpoint_factory=endpoint_factory)
        self.pool.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.outbox = Outbox(OutboxStore(db), self.pool, reactor)
        self.outbox.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.announcer = TorrentAnnouncer(
            key=self.key,
            outbox=self.outbox,
            links=links,
            relays=tuple(config.relays) if config.publish_nip35 else (),
            clock=reactor,
            auto_publish=config.auto_publish,
            get_file=store.get if store is not None else None,
            get_owners=store.owners if store is not None else None,
            await_video_probe=await_video_probe,
            bans=bans,
        )
        # NIP-09: a deleted file's events are retracted on the relays that got them
        self.retractor = Retractor(sign=self.sign, outbox=self.outbox, clock=reactor)

    def startService(self) -> None:
        self.log.info("Nostr identity {npub}", npub=self.npub)
        for url in dict.fromkeys((*self.config.relays, *self.config.video_relays)):
            self.pool.relay(url)  # connect early; reconnects on its own
        super().startService()  # type: ignore[no-untyped-call]

    def identity(self) -> dict[str, Any]:
        """``GET /api/nostr/identity``."""
        return {
            "pubkey": self.pubkey,
            "npub": self.npub,
            "relays": list(self.config.relays),
            "video_relays": list(self.config.video_relays),
            "publish_nip35": self.config.publish_nip35,
            "publish_nip71": self.config.publish_nip71,
        }

    def status(self) -> dict[str, Any]:
        """For ``GET /api/health``: the identity and which relays are connected now."""
        urls = dict.fromkeys((*self.config.relays, *self.config.video_relays))
        return {
            "status": "ok",
            "npub": self.npub,
            "relays": {url: self.pool.is_connected(url) for url in urls},
        }

    async def health(self) -> dict[str, Any]:
        """For ``GET /api/health``: :meth:`status` and the signals of the relays' score: how
        many are connected, the outbox's backlog and its oldest delivery's age, deliveries
        rejected and given up since start."""
        count, oldest = await self.outbox.backlog()
        now = self.reactor.seconds()
        out = self.status()
        relays = out["relays"]
        out.update({
            "relays_connected": sum(1 for up in relays.values() if up),
            "relays_configured": len(relays),
            "outbox_backlog": count,
            "outbox_oldest_age": round(now - oldest, 3) if oldest is not None else 0.0,
            "deliveries": dict(self.outbox.results),
        })
        return out

    def families(self) -> Iterator[Metric]:
        urls = dict.fromkeys((*self.config.relays, *self.config.video_relays))
        yield gauge("tgateway_nostr_relay_connected", "1 when the relay's WebSocket is open",
                    ("relay",), {(url,): int(self.pool.is_connected(url)) for url in urls})
        yield counter("tgateway_nostr_publishes", "Event deliveries to relays by result "
                      "(accepted, rejected, failed: final; retry: a transient error)",
                      ("result",), {(r,): n for r, n in list(self.outbox.results.items())})

    def sign(self, template: EventTemplate) -> Event:
        """Sign with the gateway key (NIP-71 and other events built elsewhere)."""
        return sign(template, self.key)


def build(section: NostrConfig, deps: Deps) -> Component[NostrService]:
    if deps.db is None or deps.store is None:
        raise RuntimeError("Nostr needs the storage component")
    # The transcoder is built in every mode that builds Nostr (tap.COMPONENTS) and reports every
    # upload that looks like a video (probed or not): NIP-35 events of videos wait for it.
    nostr = NostrService(section, data_dir=deps.config.data_dir, db=deps.db, links=deps.links,
                         reactor=deps.reactor, store=deps.store, await_video_probe=True,
                         bans=deps.blocks)
    nip71 = section.publish_nip71 and section.auto_publish
    videos = VideoAnnouncer(sign=nostr.sign, outbox=nostr.outbox,
                            relays=section.video_relays if nip71 else (), clock=deps.reactor,
                            links=deps.links, store=deps.store,
                            addressable=section.nip71_addressable, torrents=nostr.announcer,
                            bans=deps.blocks)
    return Component(name="nostr", part=nostr, services=[nostr], report=nostr.health,
                     metrics=[Collect(nostr.families)],
                     on_stored=nostr.announcer.on_stored, on_deleted=nostr.retractor.on_deleted,
                     provides=Provided(nostr=nostr, videos=videos))

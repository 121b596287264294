"""``twistd tgateway``: options, and the service tree built from the configuration.

This is the only module that knows every component: it reads the config, builds each core,
wraps it in its adapters, subscribes components to the content store's events and attaches the
listeners. Nothing listens until the service tree starts. Storage starts first and stops last.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from tgateway import __version__
from tgateway.config import MODES, Config, ConfigError, load_config
from tgateway.endpoints import tcp_server
from tgateway.links import Links
from tgateway.storage.crashpoints import CrashPoints
from tgateway.storage.db import Database
from tgateway.storage.disk import DiskLayout
from tgateway.storage.store import LocalContentStore
from tgateway.uploads import Uploads

log = Logger()

DEFAULT_CONFIG = "configs/config.yaml"

# Which components each mode starts (each is also subject to its own ``enabled`` key).
MODE_COMPONENTS: dict[str, frozenset[str]] = {
    "unified": frozenset({"gateway", "blossom", "tracker", "dht", "peer", "nostr", "transcode"}),
    "gateway-only": frozenset({"gateway", "tracker", "peer", "nostr", "transcode"}),
    "blossom-only": frozenset({"blossom"}),
    "dht-only": frozenset({"dht"}),
}
NEEDS_STORAGE = frozenset({"gateway", "blossom", "tracker", "peer", "nostr", "transcode"})


class Options(usage.Options):
    synopsis = "[--config PATH] [--data-dir DIR] [--mode MODE]"
    longdesc = "Run the tgateway BitTorrent gateway (HTTP API, Blossom, tracker, DHT, ...)."
    optParameters = [
        ["config", "c", None, f"YAML configuration file (default: {DEFAULT_CONFIG} if present, "
                              "else the embedded defaults)"],
        ["data-dir", "d", None, "data folder (overrides data_dir; moves every path under it)"],
        ["mode", "m", None, "unified | gateway-only | blossom-only | dht-only (overrides mode)"],
    ]

    config: Config

    def opt_version(self) -> None:
        print(f"tgateway {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        try:
            self.config = build_config(self["config"], self["data-dir"], self["mode"])
        except ConfigError as e:
            # One line, no traceback, no usage text: the message names key, value, expectation.
            raise SystemExit(f"tgateway: configuration error: {e}") from None


def build_config(path: str | None, data_dir: str | None, mode: str | None) -> Config:
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    config = load_config(path)
    if data_dir:
        config = config.with_data_dir(data_dir)
    if mode:
        if mode not in MODES:
            raise ConfigError(f"--mode: got {mode!r}, expected one of {', '.join(MODES)}")
        config = config.with_mode(mode)
    return config


def components_for(config: Config) -> frozenset[str]:
    wanted = set(MODE_COMPONENTS[config.mode])
    enabled = {
        "gateway": config.gateway.enabled,
        "blossom": config.blossom_server.enabled,
        "tracker": config.tracker.enabled,
        "dht": config.dht.enabled,
        "peer": config.peer.enabled,
    }
    return frozenset(c for c in wanted if enabled.get(c, True))


class GatewayService(MultiService):
    """The top of the tree: children start in the order they were added and stop in reverse,
    one after the other, so that every component has finished with the content store and the
    database (a transcode storing its outputs, an outbox write) before the storage closes.
    Twisted's MultiService stops them all at once."""

    _stopped: Deferred[None] | None = None

    def startService(self) -> None:
        self._stopped = None
        super().startService()

    def stopService(self) -> Deferred[None]:
        """Stop once; a second call waits for the same stop."""
        if self._stopped is None:
            Service.stopService(self)
            self._stopped = Deferred.fromCoroutine(self._stop_in_order())
        waiter: Deferred[None] = Deferred()
        self._stopped.addBoth(lambda r: (waiter.callback(None), r)[1])
        return waiter

    async def _stop_in_order(self) -> None:
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                log.failure("stopping {name} failed", name=service.name)


class StorageService(Service):
    """Opens the database and the content store first; closes them last.

    Once open, the storage check runs in the background (it does not delay serving and is safe
    against uploads and deletions meanwhile): bytes a crash left without a row are removed,
    rows whose bytes are missing are logged. Stopping stops the check after its current shard.
    """

    name = "storage"

    def __init__(self, db: Database, store: LocalContentStore) -> None:
        self.db = db
        self.store = store
        self._check: Deferred[Any] | None = None

    def startService(self) -> None:
        self.db.open()
        self.store.start()
        super().startService()
        check = Deferred.fromCoroutine(self.store.check())
        check.addErrback(lambda f: log.failure("the storage check failed", f))
        self._check = check

    async def _stop(self) -> None:
        check, self._check = self._check, None
        if check is not None and not check.called:
            self.store.stop_check()
            await check
        self.store.stop()
        self.db.close()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


@dataclass
class Gateway:
    """What makeService built; kept on the returned service as ``.gateway`` for inspection."""

    config: Config
    components: frozenset[str]
    store: LocalContentStore | None = None
    uploads: Uploads | None = None  # the one upload handler (gateway API, Blossom, mirror)
    db: Database | None = None
    links: Links | None = None
    sites: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, Any] = field(default_factory=dict)


def makeService(options: Options | dict[str, Any], reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config: Config = options.config if isinstance(options, Options) else options["config"]
    components = components_for(config)
    top = GatewayService()
    gw = Gateway(config=config, components=components)
    top.gateway = gw  # type: ignore[attr-defined]
    rng = random.Random(int.from_bytes(os.urandom(16), "big"))

    os.makedirs(config.data_dir, exist_ok=True)
    if components & NEEDS_STORAGE:
        db = Database(reactor, config.storage.metadata_db)
        layout = DiskLayout(config.storage.blob_storage, config.storage.chunk_storage)
        store = LocalContentStore(reactor=reactor, db=db, layout=layout, config=config.storage,
                                  crash_points=CrashPoints.from_environ(os.environ))
        StorageService(db, store).setServiceParent(top)
        gw.store = store
        gw.db = db
        limit = config.admin.default_user_storage_limit
        gw.uploads = Uploads(store=store, quota=lambda owner: limit)

    tracker_urls = _tracker_urls(config, components)
    gw.links = Links(
        base_url=config.gateway.base_url(),
        tracker_urls=tracker_urls,
        blossom_url=config.blossom_server.base_url() if "blossom" in components else None,
    )

    if "tracker" in components:
        from tgateway.tracker.service import build_tracker

        tracker = build_tracker(config.tracker, config.gateway.base_url(), reactor, rng,
                                gw.store.has_info_hash if gw.store is not None else None,
                                trusted_proxies=config.trusted_proxies)
        tracker.services.setName("tracker")
        tracker.services.setServiceParent(top)
        gw.parts["tracker"] = tracker  # _build_gateway mounts tracker.resource

    if "dht" in components:
        from tgateway.dht.service import build_dht
        from tgateway.peer.service import announce_ips

        # The gateway's BitTorrent peer, at the addresses the tracker lists it under.
        dht = build_dht(config.dht, os.path.join(config.data_dir, "dht"), reactor, rng,
                        config.peer.port, announce_ips=announce_ips(config.peer,
                                                                    config.gateway.base_url()))
        if gw.store is not None:
            dht.set_known_info_hashes(gw.store.info_hashes)
            gw.store.subscribe_stored(dht.on_file_stored)
        dht.setServiceParent(top)
        gw.parts["dht"] = dht  # dht.status() is the body of GET /api/dht/status

    if "peer" in components and gw.store is not None:
        from tgateway.peer.service import build_peer

        peer = build_peer(config.peer, store=gw.store, reactor=reactor, rng=rng,
                          tracker=gw.parts.get("tracker"),
                          gateway_base_url=config.gateway.base_url(),
                          dht_port=config.dht.port if "dht" in components else 0)
        gw.store.subscribe_stored(peer.on_file_stored)
        gw.store.subscribe_deleted(peer.on_file_deleted)
        peer.setServiceParent(top)
        gw.parts["peer"] = peer  # peer.status(): connections, unchoked, bytes sent, trackers

    if "nostr" in components and gw.db is not None:
        from tgateway.nostr.service import NostrService

        # Key, relay pool, outbox and the NIP-35 announcer (subscribed to the store; it honours
        # nostr.publish_nip35 and nostr.auto_publish). Logs the npub at start.
        nostr = NostrService(config.nostr, data_dir=config.data_dir, db=gw.db, links=gw.links,
                             reactor=reactor, store=gw.store)
        nostr.setServiceParent(top)
        gw.parts["nostr"] = nostr

    if "gateway" in components:
        _build_gateway(top, gw, reactor, rng)

    if "transcode" in components and gw.store is not None:
        _build_transcode(top, gw, reactor)

    if "blossom" in components:
        _build_blossom(top, gw, reactor)

    log.info("tgateway {version}: mode {mode}, components {components}",
             version=__version__, mode=config.mode, components=sorted(components))
    return top


def _tracker_urls(config: Config, components: frozenset[str]) -> tuple[str, ...]:
    if "tracker" not in components:
        return ()
    try:
        from tgateway.tracker.service import announce_urls
    except ImportError:
        return ()
    return tuple(announce_urls(config))


def _build_gateway(top: MultiService, gw: Gateway, reactor: Any, rng: random.Random) -> None:
    from tgateway.http.root import build_site
    from tgateway.http.upload import MULTIPART_SLACK
    from tgateway.web.api import GatewayApi

    config = gw.config
    assert gw.store is not None and gw.db is not None and gw.links is not None
    from tgateway.web.users import build_user_routes

    users = build_user_routes(config=config, db=gw.db, store=gw.store, links=gw.links,
                              clock=reactor, nostr=gw.parts.get("nostr"))
    users.service().setServiceParent(top)
    api = GatewayApi(config=config, store=gw.store, links=gw.links, clock=reactor, auth=users.auth,
                     uploads=gw.uploads)
    if "nostr" in gw.parts:
        api.extra_status["nostr"] = gw.parts["nostr"].status
    tracker = gw.parts.get("tracker")
    mounts = {"/announce": tracker.resource, "/scrape": tracker.resource} if tracker else {}
    dht = gw.parts.get("dht")
    if dht is not None:
        from tgateway.http.status import JsonStatus

        mounts["/api/dht/status"] = JsonStatus(dht.status)
        api.extra_status["dht"] = lambda: {"status": "ok", "good_nodes": dht.status().get("good_nodes")}
    if tracker is not None:
        api.extra_status["tracker"] = tracker.status
    peer = gw.parts.get("peer")
    if peer is not None:
        api.extra_status["peer"] = peer.status
    site, root = build_site(
        api.app.resource(),
        mounts=mounts,
        streaming_routes=[(b"POST", b"/api/upload"), (b"PUT", b"/api/upload")],
        max_request_body=config.gateway.max_request_body,
        max_stream_body=api.max_upload + MULTIPART_SLACK,
        clock=reactor,
    )
    gw.parts["api"] = api
    gw.parts["root"] = root
    users.mount(root, api.app.resource())  # /api/auth, /api/users, /api/nostr, announcements
    gw.parts["users"] = users
    gw.sites["gateway"] = site
    endpoint = serverFromString(reactor, tcp_server(config.gateway.port, config.gateway.host))
    svc = StreamServerEndpointService(endpoint, site)
    svc.setName("gateway-http")
    svc.setServiceParent(top)


def _build_transcode(top: MultiService, gw: Gateway, reactor: Any) -> None:
    """Probing and transcoding of video uploads, NIP-71 events, and the stream routes."""
    from tgateway.transcode.jobs import Transcoder
    from tgateway.transcode.tools import find_ffmpeg

    config = gw.config
    assert gw.store is not None and gw.db is not None and gw.links is not None
    announcer = None
    nostr = gw.parts.get("nostr")
    if nostr is not None and config.nostr.publish_nip71 and config.nostr.video_relays:
        from tgateway.nostr.nip71 import VideoAnnouncer

        announcer = VideoAnnouncer(sign=nostr.sign, outbox=nostr.outbox,
                                   relays=config.nostr.video_relays, clock=reactor)
    transcoder = Transcoder(config=config.transcoding, store=gw.store, db=gw.db, links=gw.links,
                            reactor=reactor, tools=find_ffmpeg(), announcer=announcer)
    gw.store.subscribe_stored(transcoder.on_stored)
    gw.store.subscribe_deleted(transcoder.on_deleted)
    transcoder.setServiceParent(top)
    gw.parts["transcode"] = transcoder
    root, users = gw.parts.get("root"), gw.parts.get("users")
    if root is not None and users is not None:
        from tgateway.http.root import PathSplit
        from tgateway.web.stream import StreamApi

        sc = config.rate_limiting.stream
        stream = StreamApi(store=gw.store, transcoder=transcoder, auth=users.auth, clock=reactor,
                           requests_per_second=sc.requests_per_second, burst_size=sc.burst_size,
                           max_concurrent=sc.max_concurrent)
        resource = stream.app.resource()
        root.mount_app("/api/stream", resource)
        root.mount_app("/api/admin/transcode", resource)
        # /api/users/me/files/<sha256>/transcoding-status here, the rest in the users app
        root.mount_app("/api/users/me/files", PathSplit(
            lambda path: bool(path) and path[-1] == b"transcoding-status",
            resource, users.users_api.app.resource()))
        gw.parts["api"].extra_status["transcode"] = transcoder.health
        gw.parts["stream"] = stream


def _build_blossom(top: MultiService, gw: Gateway, reactor: Any) -> None:
    """The Blossom server on ``blossom_server.port``: its own site, the same content store."""
    from tgateway.blossom.server import BlossomServer
    from tgateway.http.site import StreamingSite
    from tgateway.storage.blossom_reports import BlossomStore

    config = gw.config
    assert gw.store is not None and gw.db is not None and gw.links is not None
    blossom = BlossomServer(config=config, store=gw.store, blossom_store=BlossomStore(gw.db),
                            links=gw.links, clock=reactor, uploads=gw.uploads,
                            media=_media_optimizer(gw, reactor))
    site = StreamingSite(
        blossom.app.resource(),
        streaming_routes=[(b"PUT", b"/upload"), (b"PUT", b"/media")],
        max_request_body=64 * 1024,  # /mirror and /report bodies are small JSON
        clock=reactor,
    )
    site.displayTracebacks = False
    gw.parts["blossom"] = blossom
    gw.sites["blossom"] = site
    bc = config.blossom_server
    endpoint = serverFromString(reactor, tcp_server(bc.port, bc.host))
    svc = StreamServerEndpointService(endpoint, site)
    svc.setName("blossom-http")
    svc.setServiceParent(top)


def _media_optimizer(gw: Gateway, reactor: Any) -> Any:
    """BUD-05 ``/media``: FFmpeg with the transcoding settings, when transcoding is on and FFmpeg
    is there (the transcoder's, else looked up); None otherwise (``/media`` answers 503)."""
    tc = gw.config.transcoding
    if not tc.enabled:
        return None
    transcoder = gw.parts.get("transcode")
    if transcoder is not None:
        tools = transcoder.tools
    else:
        from tgateway.transcode.tools import find_ffmpeg

        tools = find_ffmpeg()
    if tools is None:
        return None
    from tgateway.blossom.media import MediaOptimizer
    from tgateway.transcode.argv import Profile

    return MediaOptimizer(
        reactor=reactor, tools=tools, work_dir=tc.work_dir, preset=tc.preset,
        segment=float(tc.hls_segment_duration),
        profiles=[Profile(p.name, p.height, int(p.video_bitrate), int(p.audio_bitrate))
                  for p in tc.profiles])

"""The tracker component: one swarm store, three front ends, the services that run them.

:func:`build` (the component) puts ``tracker.resource`` at ``/announce`` and ``/scrape`` on the
gateway's port, runs ``tracker.services`` (UDP, the dedicated HTTP+WebSocket port, expiry) and
offers the gateway's peer a place in every swarm (:class:`~tgateway.tracker.core.LocalPeers`).
:func:`build_tracker` builds the tracker alone (tests, benchmarks).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from prometheus_client.core import Metric
from twisted.application import internet, service
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource

from tgateway.component import Component, Deps, IGatewayReactor, Mount, Provided
from tgateway.config import Config, TrackerConfig
from tgateway.endpoints import tcp_server
from tgateway.http.openapi import Op, Param, Reply, Route
from tgateway.metrics import Collect, counter, gauge
from tgateway.tracker.core import ConnectionIds, DenyList, PeerScorer, SwarmStore
from tgateway.tracker.http import HttpTracker, TrackerHTTPFactory, TrackerResource
from tgateway.tracker.memory import MemorySwarmStore
from tgateway.tracker.udp import UdpTracker, udp_counts
from tgateway.tracker.ws import WsTracker, WsTrackerFactory

__all__ = ["Tracker", "build", "build_tracker", "announce_urls", "tracker_urls"]


class Tracker:
    """The built tracker: ``resource``, ``services``, ``announce_urls()``, local peers."""

    def __init__(
        self,
        config: TrackerConfig,
        gateway_base_url: str,
        store: SwarmStore,
        http: HttpTracker,
        udp: UdpTracker | None,
        ws: WsTracker,
        ws_factory: WsTrackerFactory,
        resource: Resource,
        services: service.MultiService,
    ) -> None:
        self.config = config
        self.gateway_base_url = gateway_base_url.rstrip("/")
        self.store = store
        self.http = http
        self.udp = udp
        self.ws = ws
        self.ws_factory = ws_factory
        self.resource = resource
        self.services = services
        self.addresses = http.addresses

    def udp_port(self) -> int:
        """The UDP port actually bound (differs from the config when it says 0... or is off)."""
        if self.udp is not None and self.udp.transport is not None:
            return int(self.udp.transport.getHost().port)
        return self.config.udp_port

    def announce_urls(self) -> list[str]:
        """Announce URLs for torrents and magnets: the dedicated HTTP port first (see
        :func:`tracker_urls`), then the gateway port's HTTP, the UDP and the WebSocket one."""
        return tracker_urls(self.gateway_base_url, self.udp_port() if self.udp is not None else 0,
                            self.config.http_port)

    def requests(self) -> dict[tuple[str, str, str], int]:
        """``{(protocol, action, result): n}`` since start, over HTTP, UDP and WebSocket."""
        out = {("http", *k): n for k, n in list(self.http.counts.items())}
        out.update({("ws", *k): n for k, n in list(self.ws.counts.items())})
        if self.udp is not None:
            out.update({("udp", *k): n for k, n in udp_counts(self.udp).items()})
        return out

    def families(self) -> Iterator[Metric]:
        by = self.requests()
        for action in ("announce", "scrape"):
            yield counter(f"tgateway_tracker_{action}s", f"Tracker {action}s by protocol and result",
                          ("protocol", "result"),
                          {(p, r): n for (p, a, r), n in by.items() if a == action})
        yield gauge("tgateway_tracker_swarms", "Swarms the tracker keeps", (),
                    {(): self.store.swarm_count()})
        yield gauge("tgateway_tracker_peers", "Peers in the tracker's swarms", (),
                    {(): self.store.peer_count()})

    def status(self) -> dict[str, Any]:
        """For /api/health: swarms, peers, announces and their errors since start, WebSocket
        connections, and what slow readers cost them."""
        by = self.requests()
        announces = sum(n for (_, a, r), n in by.items() if a == "announce" and r != "dropped")
        errors = sum(n for (_, a, r), n in by.items() if a == "announce" and r == "error")
        return {
            "status": "ok",
            "announces": announces,
            "announce_errors": errors,
            "peers": self.store.peer_count(),
            "swarms": self.store.swarm_count(),
            "ws_connections": self.ws_factory.connections,
            "ws_offers_dropped": self.store.ws_dropped,  # not sent to congested sockets
            "ws_dropped_slow": self.ws_factory.dropped_slow,  # sockets dropped for not reading
        }

    def add_local_peer(self, info_hash: bytes, ip: str, port: int) -> None:
        """List the gateway's own BitTorrent peer first for this torrent, forever."""
        self.store.add_local_peer(info_hash, self.addresses.pack(ip) + port.to_bytes(2, "big"))

    def remove_local_peer(self, info_hash: bytes, ip: str, port: int) -> None:
        self.store.remove_local_peer(info_hash, self.addresses.pack(ip) + port.to_bytes(2, "big"))


def tracker_urls(gateway_base_url: str, udp_port: int, http_port: int = 0) -> list[str]:
    """The announce URLs, in the order clients should try them.

    First the dedicated HTTP port (``http_port``, when not 0) on the host of the gateway's base
    URL, as opentracker serves HTTP and UDP on one port number: clients try the first URL of a
    torrent's announce list first, and this port answers an announce several times faster than
    the gateway's twisted.web site (``docs/benchmarks.md``). Then ``/announce`` on the gateway's
    base URL (HTTPS behind the installer's nginx, and reachable wherever the gateway is, should
    the tracker's port be closed by a firewall), the UDP URL on the same host (when ``udp_port``
    is not 0), and the WebSocket URL on the gateway's base URL (``wss`` under HTTPS, as browsers
    on an HTTPS page require)."""
    base = gateway_base_url.rstrip("/")
    parts = urlsplit(base)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    urls = [f"http://{host}:{http_port}/announce"] if http_port else []
    urls.append(base + "/announce")
    if udp_port:
        urls.append(f"udp://{host}:{udp_port}/announce")
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    urls.append(f"{ws_scheme}://{parts.netloc}{parts.path}/announce")
    return urls


def announce_urls(config: Config) -> list[str]:
    """The announce URLs a gateway with this configuration serves (for torrents and magnets)."""
    if not config.tracker.enabled:
        return []
    return tracker_urls(config.gateway.base_url(), config.tracker.udp_port,
                        config.tracker.http_port)


def build_tracker(
    config: TrackerConfig,
    gateway_base_url: str,
    clock: IReactorTime,
    rng: random.Random | None = None,
    is_known_info_hash: Callable[[bytes], bool] | None = None,
    reactor: IGatewayReactor | None = None,
    scorer: PeerScorer | None = None,
    trusted_proxies: Sequence[str] = (),
    blocked: Callable[[bytes], bool] | None = None,
) -> Tracker:
    """Build the store, the three front ends and their (not yet started) services.

    ``clock`` provides ``seconds()``/``callLater``; ``reactor`` (default: ``clock``) is used for
    listening. ``is_known_info_hash`` answers synchronously whether the gateway stores a file
    with that info-hash (``mode: gateway-only``). ``scorer`` ranks peers (proximity, measured
    speed) instead of the default random choice among equals. ``trusted_proxies`` (the config's
    top-level key) may name the client in ``X-Forwarded-For``. ``blocked``: the gateway's block
    list (:meth:`tgateway.blocklist.BlockList.is_blocked_info_hash`), refused by HTTP, UDP and
    WebSocket as ``tracker.deny_list`` is (one :class:`~tgateway.tracker.core.DenyList`).
    """
    if rng is None:
        rng = random.Random(int.from_bytes(os.urandom(16), "big"))
    listener: Any = reactor if reactor is not None else clock  # a Clock in unit tests
    store = MemorySwarmStore(
        rng,
        interval=config.announce_interval,
        ws_interval=config.ws_announce_interval,
        grace=config.peer_grace,
        max_peers_per_torrent=config.max_peers_per_torrent,
        max_torrents=config.max_torrents,
        gateway_only=config.mode == "gateway-only",
        is_known_info_hash=is_known_info_hash,
        deny_list=DenyList((bytes.fromhex(h) for h in config.deny_list), blocked),
        scorer=scorer,
    )
    interval = int(config.announce_interval)
    http = HttpTracker(
        store,
        clock,
        interval=interval,
        min_interval=int(config.min_interval),
        default_numwant=config.default_numwant,
        max_numwant=config.max_numwant,
        full_scrape=config.full_scrape,
        trusted_proxies=trusted_proxies,
    )
    ws = WsTracker(store, clock, interval=int(config.ws_announce_interval),
                   full_scrape=config.full_scrape)
    ws_factory = WsTrackerFactory(ws)
    resource = TrackerResource(http, WebSocketResource(ws_factory))
    services = service.MultiService()
    udp = None
    if config.udp_port:
        udp = UdpTracker(
            store,
            ConnectionIds(os.urandom, clock.seconds()),
            clock,
            interval=interval,
            default_numwant=config.default_numwant,
            max_numwant=config.max_numwant,
        )
        udp_service = internet.UDPServer(
            config.udp_port, udp, interface=config.host, reactor=listener
        )
        udp_service.setName("tracker-udp")
        udp_service.setServiceParent(services)
    if config.http_port:
        endpoint = serverFromString(listener, tcp_server(config.http_port, config.host))
        http_service = StreamServerEndpointService(
            endpoint, TrackerHTTPFactory(http, clock, ws_factory)
        )
        http_service.setName("tracker-http")
        http_service.setServiceParent(services)
    # Every second, 1/30 of the peers (at least 20,000): each swarm is swept about every 30 s
    # and a store of millions of peers never blocks the reactor for long.
    sweep = TimerService(1.0, lambda: store.expire_some(clock.seconds()))
    sweep.clock = clock
    sweep.setName("tracker-expiry")
    sweep.setServiceParent(services)
    return Tracker(config, gateway_base_url, store, http, udp, ws, ws_factory, resource, services)


_BENCODED = {200: Reply("a bencoded dictionary: the answer, or a failure reason (BEP 3)",
                        content={"text/plain": {"type": "string"}})}
_INFO_HASH = Param("info_hash", required=True,
                   description="the torrent's 20-byte info-hash, percent-encoded")
ANNOUNCE = Route("/announce", ["GET"], Op(
    "Announce to the tracker (BEP 3, 23, 7)", tags=("tracker",), name="tracker_announce",
    description="Also the WebTorrent tracker: a WebSocket upgrade on this path.",
    params=[_INFO_HASH,
            Param("peer_id", required=True, description="20 bytes, percent-encoded"),
            Param("port", required=True, schema={"type": "integer", "minimum": 1,
                                                 "maximum": 65535}),
            *(Param(n, schema={"type": "integer", "minimum": 0})
              for n in ("uploaded", "downloaded", "left", "numwant")),
            Param("event", schema={"type": "string",
                                   "enum": ["started", "stopped", "completed"]}),
            Param("compact", schema={"type": "string", "enum": ["0", "1"]})],
    replies=_BENCODED))
SCRAPE = Route("/scrape", ["GET"], Op(
    "Scrape the tracker (BEP 48)", tags=("tracker",), name="tracker_scrape",
    params=[Param("info_hash", description="an info-hash, percent-encoded (repeatable)")],
    replies=_BENCODED))


def build(section: TrackerConfig, deps: Deps) -> Component[Tracker]:
    config = deps.config
    tracker = build_tracker(section, config.gateway.base_url(), deps.reactor, deps.rng,
                            deps.store.has_info_hash if deps.store is not None else None,
                            trusted_proxies=config.trusted_proxies,
                            blocked=deps.blocks.is_blocked_info_hash if deps.blocks else None)
    tracker.services.setName("tracker")
    return Component(
        name="tracker", part=tracker, services=[tracker.services],
        mounts=[Mount("gateway", "/announce", tracker.resource, routes=[ANNOUNCE]),
                Mount("gateway", "/scrape", tracker.resource, routes=[SCRAPE])],
        report=tracker.status, metrics=[Collect(tracker.families)],
        provides=Provided(local_peers=tracker),
    )

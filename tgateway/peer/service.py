"""The peer component: listener(s), timers, announcer.

:func:`build` (the component) subscribes :meth:`PeerService.on_file_stored` /
:meth:`PeerService.on_file_deleted` to the content store and lists the peer on the built-in
tracker (its :class:`~tgateway.tracker.core.LocalPeers` face); at start the service announces
every stored torrent (``ContentStore.announced_info_hashes``: derived files are not torrents).
A handshake for a torrent on the block list is refused as one for a torrent the gateway does
not have; a deleted file's connections are closed (an admin's deletion is a deletion too).
:func:`build_peer` builds the service alone (tests).
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.core import Metric
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime, IReactorUDP
from twisted.logger import Logger

from tgateway.component import Component, Deps
from tgateway.config import PeerConfig
from tgateway.endpoints import tcp_server
from tgateway.metrics import Collect, counter, gauge
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredEvent, StoredFile
from tgateway.tracker.core import LocalPeers

from .announce import TrackerAnnouncer, UdpAnnounceClient
from .core import SessionConfig
from .factory import PeerFactory
from .utp.udp import UtpSocket

__all__ = ["PeerService", "build", "build_peer", "make_peer_id", "announce_ips"]

PEER_ID_PREFIX = b"-TG0010-"


def make_peer_id(rng: random.Random) -> bytes:
    alphabet = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return PEER_ID_PREFIX + bytes(rng.choice(alphabet) for _ in range(12))


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None


def announce_ips(config: PeerConfig, gateway_base_url: str) -> tuple[str, ...]:
    """The addresses the built-in tracker lists for the gateway's peer (IPv4, then IPv6).

    IPv4: ``external_ip``, else ``host`` when it is a specific IPv4 address, else the host of the
    gateway's public URL when that is an IPv4 address and the peer listens on IPv4. IPv6 (only
    when ``host`` is an IPv6 address or "::"): ``external_ip6``, else ``host`` when specific, else
    the public URL's host when that is an IPv6 address."""
    public = _ip(urlsplit(gateway_base_url).hostname or "")
    host = _ip(config.host)
    out: list[str] = []
    v4 = config.external_ip
    if not v4 and host is not None and host.version == 4 and not host.is_unspecified:
        v4 = str(host)
    listens_v4 = host is None or host.is_unspecified or host.version == 4
    if not v4 and listens_v4 and public is not None and public.version == 4:
        v4 = str(public)
    if v4:
        out.append(v4)
    if host is not None and host.version == 6:
        v6 = config.external_ip6
        if not v6 and not host.is_unspecified:
            v6 = str(host)
        if not v6 and public is not None and public.version == 6:
            v6 = str(public)
        if v6:
            out.append(v6)
    return tuple(out)


class IPeerReactor(IReactorTime, IReactorTCP, IReactorUDP, IReactorCore):
    """What the peer needs of the reactor: its clock, TCP to listen on, UDP for the BEP 15
    client, and ``resolve`` for tracker host names."""


class PeerService(MultiService):
    log = Logger()
    name = "peer"

    def __init__(
        self,
        config: PeerConfig,
        factory: PeerFactory,
        announcer: TrackerAnnouncer,
        known_info_hashes: Callable[[], Any],
        reactor: IPeerReactor,
        udp: UdpAnnounceClient | None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.config = config
        self.factory = factory
        self.announcer = announcer
        self.known_info_hashes = known_info_hashes
        self.reactor = reactor
        self.udp = udp
        self._udp_port: Any = None
        endpoint = serverFromString(reactor, tcp_server(config.port, config.host))  # type: ignore[no-untyped-call]
        self.listener = StreamServerEndpointService(endpoint, factory)  # type: ignore[no-untyped-call]
        self.listener.setName("peer-tcp")  # type: ignore[no-untyped-call]
        self.listener.setServiceParent(self)  # type: ignore[no-untyped-call]
        for name, period, fn in (("peer-tick", 5.0, factory.tick),
                                 ("peer-choker", factory.choker.interval, factory.rechoke)):
            t = TimerService(period, fn)  # type: ignore[no-untyped-call]
            t.clock = factory.clock
            t.setName(name)  # type: ignore[no-untyped-call]
            t.setServiceParent(self)  # type: ignore[no-untyped-call]
        # uTP (BEP 29) on the UDP port of the same number, into the same factory and budgets.
        self.utp: UtpSocket | None = None
        self._utp_port: Any = None
        if config.utp:
            self.utp = UtpSocket(
                factory, factory.clock, random.SystemRandom(),
                max_connections=2 * (factory.max_connections + factory.max_unidentified),
                max_half_open=max(8, factory.max_unidentified),
                max_half_open_per_ip=factory.max_connections_per_ip)

    @property
    def port(self) -> int:
        """The TCP port actually bound (after start)."""
        p = getattr(self.listener, "_waitingForPort", None)
        if p is not None and p.called:
            return int(p.result.getHost().port)
        return self.config.port

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.udp is not None:
            self._udp_port = self.reactor.listenUDP(0, self.udp, "", 8192)
        d = getattr(self.listener, "_waitingForPort", None)

        def listening(_: Any = None) -> Any:
            self._listen_utp()
            self.announcer.port = self.port
            self.factory.session_config = _with_port(self.factory.session_config, self.port)
            self.announcer.start(self.known_info_hashes())
            return _

        if d is not None:
            d.addCallback(listening)
        else:
            listening()

    def _listen_utp(self) -> None:
        if self.utp is None or self._utp_port is not None:
            return
        try:
            self._utp_port = self.reactor.listenUDP(self.port, self.utp, self.config.host, 8192)
        except Exception:
            self.log.failure("uTP: cannot listen on UDP port {port}; TCP only", port=self.port)

    def stopService(self) -> defer.Deferred[Any]:
        d1 = self.announcer.stop()
        self.factory.close_all()
        if self.utp is not None:
            self.utp.close_all()

        async def stop() -> None:
            await d1
            if self._utp_port is not None:
                port, self._utp_port = self._utp_port, None
                await defer.maybeDeferred(port.stopListening)
            if self._udp_port is not None:
                await defer.maybeDeferred(self._udp_port.stopListening)
            await defer.maybeDeferred(MultiService.stopService, self)

        return defer.Deferred.fromCoroutine(stop())

    # store events ----------------------------------------------------------------

    def on_file_stored(self, event: StoredEvent) -> None:
        if event.context.derived:
            return  # served over HTTP; not a torrent the gateway announces
        self.factory.add_file(event.file)
        self.announcer.add(event.file.info_hash_bytes)

    def on_file_deleted(self, f: StoredFile) -> None:
        self.factory.remove_file(f)
        self.announcer.remove(f.info_hash_bytes)

    def families(self) -> Iterator[Metric]:
        f = self.factory
        yield gauge("tgateway_peer_connections", "Peer wire connections (established: handshake "
                    "done)", ("state",), {("open",): len(f.connections),
                                           ("established",): f.established})
        yield counter("tgateway_peer_refused", "Peer connections refused (limits)", (),
                      {(): f.refused})
        yield counter("tgateway_served_bytes", "Content bytes served, by path (download, "
                      "webseed, stream, blossom, peer)", ("path",), {("peer",): f.bytes_sent})
        yield gauge("tgateway_peer_torrents", "Torrents the peer seeds", (),
                    {(): len(self.announcer.torrents)})

    def status(self) -> dict[str, Any]:
        out = self.factory.status()
        out["port"] = self.port
        out["utp"] = self.utp.status() if self._utp_port is not None and self.utp else None
        out["torrents"] = len(self.announcer.torrents)
        out["trackers"] = dict(self.announcer.results)
        return out


def _with_port(cfg: SessionConfig, port: int) -> SessionConfig:
    from dataclasses import replace

    return replace(cfg, listen_port=port)


def build_peer(
    config: PeerConfig,
    *,
    store: ContentStore,
    reactor: IPeerReactor,
    rng: random.Random,
    tracker: LocalPeers | None = None,
    gateway_base_url: str = "http://127.0.0.1",
    http_get: Callable[..., Any] | None = None,
    dht_port: int = 0,
    refused: Callable[[bytes], bool] | None = None,
) -> PeerService:
    """The peer service for ``makeService``: reads through ``store.reader``, lists itself on
    ``tracker`` (the built-in one, or None) and on ``config.trackers``; ``dht_port``: the
    gateway's DHT node, told to peers that support the DHT (0: none); ``refused``: the
    gateway's block list (:meth:`tgateway.blocklist.BlockList.is_blocked_info_hash`): a
    handshake for such a torrent is refused as for one the gateway does not have."""
    peer_id = make_peer_id(rng)
    has_info_hash: Callable[[bytes], bool] = store.has_info_hash
    if refused is not None:
        is_refused = refused

        def ours_and_allowed(info_hash: bytes) -> bool:
            return store.has_info_hash(info_hash) and not is_refused(info_hash)

        has_info_hash = ours_and_allowed

    factory = PeerFactory(
        clock=reactor,
        reader=store.reader,
        session_config=SessionConfig(peer_id=peer_id, dht_port=dht_port),
        has_info_hash=has_info_hash,
        get_by_info_hash=lambda h: defer.Deferred.fromCoroutine(store.get_by_info_hash(h)),
        max_connections=config.max_connections,
        max_connections_per_ip=config.max_connections_per_ip,
        max_uploads=config.max_uploads,
        upload_rate=int(config.upload_rate),
        rng=rng,
        info_hashes=store.info_hashes,
    )
    urls = tuple(config.trackers)
    udp = UdpAnnounceClient(reactor, os.urandom) if any(u.startswith("udp:") for u in urls) else None
    if http_get is None and any(u.startswith("http") for u in urls):
        import treq

        http_get = treq.get
    announcer = TrackerAnnouncer(
        clock=reactor,
        peer_id=peer_id,
        port=config.port,
        interval=float(config.announce_interval),
        local=tracker,
        local_ips=announce_ips(config, gateway_base_url),
        urls=urls,
        http_get=http_get,
        udp=udp,
        resolve=getattr(reactor, "resolve", None),
        key=rng.getrandbits(32),
    )
    return PeerService(config, factory, announcer, store.announced_info_hashes, reactor, udp)


def build(section: PeerConfig, deps: Deps) -> Component[PeerService]:
    if deps.store is None:
        raise RuntimeError("the peer needs the storage component")
    peer = build_peer(section, store=deps.store, reactor=deps.reactor, rng=deps.rng,
                      tracker=deps.local_peers, gateway_base_url=deps.config.gateway.base_url(),
                      dht_port=deps.dht.config.port if deps.dht is not None else 0,
                      refused=deps.blocks.is_blocked_info_hash if deps.blocks is not None else None)
    return Component(name="peer", part=peer, services=[peer], report=peer.status,
                     metrics=[Collect(peer.families)],
                     on_stored=peer.on_file_stored, on_deleted=peer.on_file_deleted)

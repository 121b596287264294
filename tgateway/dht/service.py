"""The DHT as a Twisted service: state on disk, bootstrap, periodic maintenance and announces.

:func:`build` (the component) runs it with its state in ``<data_dir>/dht``, announcing the
gateway's peer port for every stored torrent (not for derived files: see
``ContentStore.announced_info_hashes``), subscribed to the store's "stored" event, with its full
status at ``GET /api/dht/status`` on the gateway's port and a summary in ``/api/health``.
``build_dht(config, state_dir, clock, rng, announce_port, announce_ips=...)`` returns a
:class:`DhtService`. On start it
loads the node id and routing table from ``<state_dir>/dht.json`` (a new random id otherwise), binds
the UDP port (one node per address family: ``dht.host`` and, when set, ``dht.host6``), resolves
``dht.bootstrap_nodes`` through the reactor and joins. Every stored torrent is re-announced once per
``dht.announce_interval``, spread evenly over the interval (each info-hash has its own phase), and a
newly stored file is announced at once when its upload asked for it; a deleted one is no longer
announced. Info-hashes of the gateway's block list (``refused``) are never announced, and the
node never stores, answers or samples peers for them. On stop the routing table and node id are
saved so a restart rejoins at once.

The node also lists the gateway's peer in its own peer store for every info-hash it announces, so a
node that asks the gateway directly (one bootstrapped from it alone) finds the gateway. The address
comes from ``announce_ips``, the same addresses the built-in tracker lists for the peer
(:func:`tgateway.peer.service.announce_ips`: ``peer.external_ip``, else the peer's listening host,
else the host of ``gateway.public_url``); else the DHT's own host when it is a specific address;
else the external address the DHT's nodes report (BEP 42 votes), once they agree.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric
from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tgateway.component import Component, Deps, IGatewayReactor, Mount, Provided
from tgateway.config import DhtConfig
from tgateway.dht.bootstrap import is_ip, parse_host_port, resolve_host
from tgateway.dht.lookup import LookupResult
from tgateway.dht.node import DhtNode
from tgateway.dht.protocol import DhtProtocol, V6OnlyPort
from tgateway.dht.state import STATE_FILE, load_state, save_state
from tgateway.metrics import Collect, counter, gauge
from tgateway.storage.model import StoredEvent, StoredFile

__all__ = ["DhtService", "build", "build_dht"]

TICK = 1.0  # announce scheduler and rate sampling
MAINTENANCE = 5.0  # routing table maintenance
SAVE_EVERY = 600.0
KNOWN_REFRESH = 60.0  # re-read a callable list of stored info-hashes
MAX_CONCURRENT_ANNOUNCES = 4

InfoHashes = Iterable[bytes | str] | Callable[[], Iterable[bytes | str]]


def _to_bytes(h: bytes | str) -> bytes | None:
    if isinstance(h, bytes):
        return h if len(h) == 20 else None
    try:
        b = bytes.fromhex(h)
    except ValueError:
        return None
    return b if len(b) == 20 else None


class _Family:
    """One bound node (IPv4 or IPv6)."""

    def __init__(self, node: DhtNode, proto: DhtProtocol, host: str):
        self.node = node
        self.proto = proto
        self.host = host
        self.port: Any = None


class DhtService(service.Service):
    log = Logger()
    name = "dht"

    def __init__(
        self,
        config: DhtConfig,
        state_dir: str,
        clock: IReactorTime,
        rng: random.Random,
        announce_port: int,
        reactor: IGatewayReactor | None = None,
        announce_ips: Sequence[str] = (),
        refused: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.config = config
        # the gateway's block list: never announced, stored, answered or sampled
        self.refused: Callable[[bytes], bool] = refused or (lambda info_hash: False)
        self.state_dir = Path(state_dir)
        self.clock = clock
        self.reactor: Any = reactor if reactor is not None else clock  # a Clock in unit tests
        self.rng = rng
        self.announce_port = announce_port
        self.announce_ips = tuple(announce_ips)
        self.families: list[_Family] = []
        self._known_source: Callable[[], Iterable[bytes | str]] | None = None
        self._known: set[bytes] = set()
        self._known_read_at = -1e18
        self._schedule: list[tuple[float, bytes]] = []  # (phase, info_hash), sorted
        self._phases: list[float] = []
        self._schedule_dirty = True
        self._epoch = 0.0
        self._last_pos = 0.0
        self._queue: deque[bytes] = deque()
        self._queued: set[bytes] = set()
        self._announcing = 0
        self._announces_done = 0
        self._loops: list[LoopingCall] = []
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=11)
        self._last_save = 0.0
        self._last_maintenance = -1e18
        self._waiting: set[Deferred[list[tuple[str, int]]]] = set()

    # ------------------------------------------------------------------ public API

    @property
    def node_id(self) -> bytes | None:
        return self.families[0].node.node_id if self.families else None

    @property
    def ports(self) -> list[int]:
        return [f.port.getHost().port for f in self.families if f.port is not None]

    def set_known_info_hashes(self, hashes: InfoHashes) -> None:
        """The info-hashes the gateway serves: an iterable (a snapshot) or a callable (re-read
        every minute). They are re-announced every ``announce_interval`` and offered to BEP 51
        indexers."""
        if callable(hashes):
            self._known_source = hashes
            self._known_read_at = -1e18
            if self.running:  # otherwise read at start, once the store is open
                self._refresh_known(self.clock.seconds())
        else:
            self._known_source = None
            self._known = {b for b in map(_to_bytes, hashes) if b is not None}
            self._schedule_dirty = True

    def _refresh_known(self, now: float) -> None:
        if self._known_source is None or now - self._known_read_at < KNOWN_REFRESH:
            return
        self._known_read_at = now
        try:
            fresh = {b for b in map(_to_bytes, self._known_source()) if b is not None}
        except Exception:
            self.log.failure("listing stored info-hashes failed")
            return
        if fresh != self._known:
            self._known = fresh
            self._schedule_dirty = True

    def _known_list(self) -> Iterable[bytes]:
        return self._known

    def on_file_deleted(self, f: StoredFile) -> None:
        """Subscriber for the content store's "deleted" event: the info-hash is no longer
        announced (the DHT forgets us there once our last announce expires)."""
        ih = _to_bytes(f.info_hash)
        if ih is None:
            return
        if ih in self._known:
            self._known.discard(ih)
            self._schedule_dirty = True
        if ih in self._queued:
            self._queued.discard(ih)
            self._queue.remove(ih)
        for fam in self.families:
            fam.node.withdraw(ih, self.announce_port, local_ip=self._local_ip(fam))

    def on_file_stored(self, event: StoredEvent) -> None:
        """Subscriber for the content store's "file stored" event."""
        ih = _to_bytes(event.file.info_hash)
        if ih is None or not event.context.announce_dht or event.context.derived:
            return
        if ih not in self._known:
            self._known.add(ih)
            self._schedule_dirty = True
        self.announce(ih)

    def announce(self, info_hash: bytes) -> None:
        """Queue an announce of ``announce_port`` for ``info_hash`` (at most 4 run at once)."""
        if len(info_hash) != 20 or info_hash in self._queued or self.refused(info_hash):
            return
        self._queued.add(info_hash)
        self._queue.append(info_hash)
        if self.running:
            self._pump()

    def get_peers(self, info_hash: bytes) -> Deferred[list[tuple[str, int]]]:
        """Peers for ``info_hash`` from a lookup on every bound family (and our own store).

        Fires once the lookups finish (a few seconds at most: per-query timeouts of 4 s, α = 3);
        with an empty list if the service stops first. Fails at once with ValueError for a bad
        info-hash and RuntimeError when the service is not running.
        """
        if len(info_hash) != 20:
            return defer.fail(ValueError("info_hash must be 20 bytes"))
        if not self.families:
            return defer.fail(RuntimeError("the DHT is not running"))
        d: Deferred[list[tuple[str, int]]] = Deferred()
        results: list[LookupResult] = []
        now = self.clock.seconds()
        self._waiting.add(d)

        def fire(peers: list[tuple[str, int]]) -> None:
            if d in self._waiting:
                self._waiting.discard(d)
                d.callback(peers)

        def one_done(result: LookupResult) -> None:
            results.append(result)
            if len(results) == len(self.families):
                peers = list(dict.fromkeys(p for r in results for p in r.peers))
                self.clock.callLater(0, fire, peers)

        for f in self.families:
            f.node.get_peers(info_hash, now, one_done)
        return d

    def status(self) -> dict[str, Any]:
        now = self.clock.seconds()
        out: dict[str, Any] = {
            "running": bool(self.running and self.families),
            "node_id": self.node_id.hex() if self.node_id else None,
            "announce_port": self.announce_port,
            "known_torrents": len(self._known),
            "announces_queued": len(self._queue),
            "announces_running": self._announcing,
            "announces_done": self._announces_done,
        }
        qin = qout = 0.0
        if self._samples and len(self._samples) >= 2:
            t0, i0, o0 = self._samples[0]
            t1, i1, o1 = self._samples[-1]
            if t1 > t0:
                qin, qout = round((i1 - i0) / (t1 - t0), 1), round((o1 - o0) / (t1 - t0), 1)
        out["queries_in_per_second"] = qin
        out["queries_out_per_second"] = qout
        fams = [f.node.status(now) | {"port": self._port_of(f)} for f in self.families]
        out["families"] = fams
        for key in ("routing_table_size", "good_nodes", "stored_torrents", "stored_peers"):
            out[key] = sum(f[key] for f in fams)
        return out

    def health(self) -> dict[str, Any]:
        """For ``GET /api/health``: the signals of its score (good nodes, queries answered and
        sent, responses, timeouts since start)."""
        now = self.clock.seconds()
        stats = [f.node.stats for f in self.families]
        return {"status": "ok" if self.running and self.families else "stopped",
                "good_nodes": sum(f.node.table.good_count(now) for f in self.families),
                "nodes": sum(len(f.node.table) for f in self.families),
                "queries_in": sum(s.queries_in for s in stats),
                "queries_out": sum(s.queries_out for s in stats),
                "responses_in": sum(s.responses_in for s in stats),
                "timeouts": sum(s.timeouts for s in stats)}

    def families_metrics(self) -> Iterator[Metric]:
        now = self.clock.seconds()
        queries: dict[tuple[str, str, str], int] = {}
        nodes: dict[tuple[str, str], int] = {}
        for f in self.families:
            fam = "ipv6" if f.node.ipv6 else "ipv4"
            for direction, by in (("in", f.node.stats.methods_in), ("out", f.node.stats.methods_out)):
                for method, n in list(by.items()):
                    queries[(fam, direction, method.decode("ascii", "replace"))] = n
            nodes[(fam, "good")] = f.node.table.good_count(now)
            nodes[(fam, "known")] = len(f.node.table)
        yield counter("tgateway_dht_queries", "KRPC queries answered (in) and sent (out), by type",
                      ("family", "direction", "type"), queries)
        yield counter("tgateway_dht_timeouts", "Our queries that got no answer", ("family",),
                      {("ipv6" if f.node.ipv6 else "ipv4",): f.node.stats.timeouts
                       for f in self.families})
        yield gauge("tgateway_dht_nodes", "Nodes in the routing table (good: heard from lately)",
                    ("family", "state"), nodes)
        yield gauge("tgateway_dht_torrents", "Torrents the node stores peers for", (),
                    {(): sum(f.node.store.torrent_count for f in self.families)})

    def _port_of(self, f: _Family) -> int | None:
        return f.port.getHost().port if f.port is not None else None

    # ------------------------------------------------------------------ lifecycle

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        now = self.clock.seconds()
        ids, saved = load_state(self.state_dir / STATE_FILE, self.rng)
        self._epoch = now
        c = self.config
        hosts = [c.host] + ([c.host6] if c.host6 else [])
        for host in hosts:
            ipv6 = ":" in host
            node_id, external_ip = ids[ipv6]
            proto = DhtProtocol(self.clock)
            node = DhtNode(
                node_id,
                proto,
                self.rng,
                now,
                ipv6=ipv6,
                max_torrents=c.max_torrents,
                max_peers_per_torrent=c.max_peers_per_torrent,
                query_rate=c.query_rate_limit,
                query_burst=c.query_burst,
                max_outstanding=c.max_outstanding_queries,
                secret_rng=random.SystemRandom(),
            )
            node.known_info_hashes = self._known_list
            node.refused = self.refused
            node.on_id_change = self._on_id_change
            node.external_ip = external_ip
            proto.node = node
            nodes = [n for n in saved if (":" in n[1]) == ipv6]
            node.table.load(nodes, now)
            fam = _Family(node, proto, host)
            if ipv6:
                port = V6OnlyPort(c.port, proto, host, 8192, self.reactor)  # type: ignore[no-untyped-call]
                port.startListening()  # type: ignore[no-untyped-call]
                fam.port = port
            else:
                fam.port = self.reactor.listenUDP(c.port, proto, interface=host, maxPacketSize=8192)
            self.families.append(fam)
            self.log.info(
                "DHT node {node_id} on {host} port {port} ({n} saved nodes)",
                node_id=node_id.hex(),
                host=host,
                port=fam.port.getHost().port,
                n=len(node.table),
            )
        if len(self.families) == 2:
            self.families[0].node.sibling = self.families[1].node
            self.families[1].node.sibling = self.families[0].node
        self._last_save = now
        for fn, every in ((self._tick, TICK),):
            loop = LoopingCall(fn)
            loop.clock = self.clock
            loop.start(every, now=False).addErrback(
                lambda f: self.log.failure("DHT periodic task failed", f)
            )
            self._loops.append(loop)
        for fam in self.families:
            fam.node.tick(now)  # pings the loaded nodes
        self._refresh_known(now)
        d = self._resolve_bootstrap()
        d.addErrback(lambda f: self.log.failure("DHT bootstrap failed", f))
        self._pump()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        try:
            self._save()
        except OSError:
            self.log.failure("saving DHT state failed")
        ds = []
        for f in self.families:
            if f.port is not None:
                ds.append(defer.maybeDeferred(f.port.stopListening))
            f.proto.node = None
        self.families = []
        # Lookups die with the sockets: callers waiting on get_peers get what is known, nothing.
        waiting, self._waiting = self._waiting, set()
        for d in waiting:
            d.callback([])
        return defer.gatherResults(ds).addCallback(lambda _: None)

    # ------------------------------------------------------------------ internals

    def _tick(self) -> None:
        now = self.clock.seconds()
        if self.families:
            qin = sum(f.node.stats.queries_in for f in self.families)
            qout = sum(f.node.stats.queries_out for f in self.families)
            self._samples.append((now, qin, qout))
        if now - self._last_maintenance >= MAINTENANCE:
            self._last_maintenance = now
            for f in self.families:
                f.node.tick(now)
        self._refresh_known(now)
        self._schedule_announces(now)
        self._pump()
        if now - self._last_save >= SAVE_EVERY:
            self._last_save = now
            try:
                self._save()
            except OSError:
                self.log.failure("saving DHT state failed")

    def _schedule_announces(self, now: float) -> None:
        """Queue the info-hashes whose phase fell in the window since the last tick."""
        interval = float(self.config.announce_interval)
        if self._schedule_dirty:
            self._schedule = sorted(
                (int.from_bytes(ih[:4], "big") / 2**32 * interval, ih) for ih in self._known
            )
            self._phases = [phase for phase, _ in self._schedule]
            self._schedule_dirty = False
        if not self._schedule:
            return
        pos = (now - self._epoch) % interval
        last = self._last_pos
        self._last_pos = pos
        windows = [(last, pos)] if pos >= last else [(last, interval), (-1.0, pos)]
        for lo, hi in windows:
            start = bisect.bisect_right(self._phases, lo)
            end = bisect.bisect_right(self._phases, hi)
            for _, ih in self._schedule[start:end]:
                self.announce(ih)

    def _pump(self) -> None:
        if not self.families:
            return
        now = self.clock.seconds()
        while self._queue and self._announcing < MAX_CONCURRENT_ANNOUNCES:
            ih = self._queue.popleft()
            self._queued.discard(ih)
            for f in self.families:
                self._announcing += 1
                f.node.announce(
                    ih, self.announce_port, now, self._announce_done, local_ip=self._local_ip(f)
                )

    def _announce_done(self, result: LookupResult, sent: int) -> None:
        self._announcing -= 1
        self._announces_done += 1
        self.log.debug(
            "announced {info_hash} to {sent} nodes", info_hash=result.target.hex(), sent=sent
        )
        self.clock.callLater(0, self._pump)

    def _local_ip(self, f: _Family) -> str | None:
        """The gateway's address in this family: the peer's announced address, else the DHT's
        own host when specific, else None (the node falls back to its voted external address)."""
        for ip in self.announce_ips:
            if (":" in ip) == f.node.ipv6:
                return ip
        if f.host in ("", "0.0.0.0", "::"):
            return None
        return f.host

    def _save(self) -> None:
        save_state(self.state_dir / STATE_FILE, [f.node for f in self.families])

    def _on_id_change(self, node_id: bytes) -> None:
        # Each family has its own BEP 42 id (it depends on that family's external address).
        self.log.info("DHT node id changed to {node_id} (BEP 42)", node_id=node_id.hex())

    # ------------------------------------------------------------------ bootstrap

    def _resolve_bootstrap(self) -> Deferred[None]:
        async def run() -> None:
            for f in self.families:
                addrs: list[tuple[str, int]] = []
                for entry in self.config.bootstrap_nodes:
                    try:
                        host, port = parse_host_port(entry)
                    except ValueError:
                        self.log.warn("bad DHT bootstrap node {entry!r}", entry=entry)
                        continue
                    if is_ip(host):
                        if (":" in host) == f.node.ipv6:
                            addrs.append((host, port))
                        continue
                    for ip in await resolve_host(self.reactor, host, f.node.ipv6):
                        addrs.append((ip, port))
                if not self.families or f not in self.families:
                    return
                if addrs or len(f.node.table):
                    f.node.bootstrap(addrs, self.clock.seconds())

        return Deferred.fromCoroutine(run())


def build_dht(
    config: DhtConfig,
    state_dir: str,
    clock: IReactorTime,
    rng: random.Random,
    announce_port: int,
    reactor: IGatewayReactor | None = None,
    announce_ips: Sequence[str] = (),
    refused: Callable[[bytes], bool] | None = None,
) -> DhtService:
    """The DHT service for ``makeService``. ``reactor`` (default: ``clock``) binds UDP and
    resolves bootstrap host names; ``announce_ips``: the addresses of the gateway's peer (IPv4
    and/or IPv6), as :func:`tgateway.peer.service.announce_ips` gives them to the tracker.
    ``refused``: the gateway's block list
    (:meth:`tgateway.blocklist.BlockList.is_blocked_info_hash`)."""
    return DhtService(config, state_dir, clock, rng, announce_port, reactor=reactor,
                      announce_ips=announce_ips, refused=refused)


def build(section: DhtConfig, deps: Deps) -> Component[DhtService]:
    from tgateway.http.openapi import Op, Reply, Route
    from tgateway.http.status import JsonStatus
    from tgateway.peer.service import announce_ips

    config = deps.config
    # the gateway's BitTorrent peer, at the addresses the tracker lists it under
    dht = build_dht(section, str(Path(config.data_dir) / "dht"), deps.reactor, deps.rng,
                    config.peer.port,
                    announce_ips=announce_ips(config.peer, config.gateway.base_url()),
                    refused=deps.blocks.is_blocked_info_hash if deps.blocks is not None else None)
    if deps.store is not None:
        dht.set_known_info_hashes(deps.store.announced_info_hashes)
    return Component(
        name="dht", part=dht, services=[dht],
        mounts=[Mount("gateway", "/api/dht/status", JsonStatus(dht.status), routes=[Route(
            "/api/dht/status", ["GET", "HEAD"], Op(
                "The DHT node's status", tags=("meta",),
                replies={200: Reply("its id, routing table and announces",
                                    json={"type": "object"})}))])],
        report=dht.health, metrics=[Collect(dht.families_metrics)],
        on_stored=dht.on_file_stored, on_deleted=dht.on_file_deleted,
        provides=Provided(dht=dht),
    )

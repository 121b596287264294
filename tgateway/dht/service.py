"""The DHT as a Twisted service: state on disk, bootstrap, periodic maintenance and announces.

:func:`build` (the component) runs it with its state in ``<data_dir>/dht``, announcing the
gateway's peer port for every stored torrent (not for derived files: see
``ContentStore.announced_info_hashes``), subscribed to the store's "stored" event, with its full
status at ``GET /api/dht/status`` on the gateway's port and a summary in ``/api/health``.
``build_dht(config, state_dir, clock, rng, announce_port, announce_ips=...)`` returns a
:class:`DhtService`. On start it
loads the node id and routing table from ``<state_dir>/dht.json`` (a new random id otherwise), binds
the UDP port (one node per address family: ``dht.host`` and, when set, ``dht.host6``; see
:mod:`.family`), resolves ``dht.bootstrap_nodes`` through the reactor and joins. Every stored
torrent is re-announced once per ``dht.announce_interval``, spread evenly over the interval (each
info-hash has its own phase: :mod:`.announces`, the schedule), and a newly stored file is announced
at once when its upload asked for it; a deleted one is no longer announced. Info-hashes of the gateway's block list (``refused``) are never announced, and the
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

import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
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
from tgateway.dht.announces import AnnounceSchedule, InfoHashes, to_info_hash
from tgateway.dht.bootstrap import bootstrap_addresses
from tgateway.dht.family import Family, open_family
from tgateway.dht.lookup import LookupResult
from tgateway.dht.state import STATE_FILE, load_state, save_state
from tgateway.metrics import Collect, counter, gauge
from tgateway.storage.model import StoredEvent, StoredFile

__all__ = ["DhtService", "build", "build_dht"]

TICK = 1.0  # announce scheduler and rate sampling
MAINTENANCE = 5.0  # routing table maintenance
SAVE_EVERY = 600.0


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
        self.families: list[Family] = []
        self.announces = AnnounceSchedule(config.announce_interval, self.refused)
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
        self.announces.set_known(hashes)
        if callable(hashes) and self.running:  # otherwise read at start, once the store is open
            self._refresh_known(self.clock.seconds())

    def _refresh_known(self, now: float) -> None:
        try:
            self.announces.refresh(now)
        except Exception:
            self.log.failure("listing stored info-hashes failed")

    def on_file_deleted(self, f: StoredFile) -> None:
        """Subscriber for the content store's "deleted" event: the info-hash is no longer
        announced (the DHT forgets us there once our last announce expires)."""
        ih = to_info_hash(f.info_hash)
        if ih is None:
            return
        self.announces.forget(ih)
        for fam in self.families:
            fam.node.withdraw(ih, self.announce_port, local_ip=fam.local_ip(self.announce_ips))

    def on_file_stored(self, event: StoredEvent) -> None:
        """Subscriber for the content store's "file stored" event."""
        ih = to_info_hash(event.file.info_hash)
        if ih is None or not event.context.announce_dht or event.context.derived:
            return
        self.announces.add(ih)
        self.announce(ih)

    def announce(self, info_hash: bytes) -> None:
        """Queue an announce of ``announce_port`` for ``info_hash`` (at most 4 run at once)."""
        if self.announces.queue(info_hash) and self.running:
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
            "known_torrents": len(self.announces.known),
            "announces_queued": self.announces.queued,
            "announces_running": self.announces.running,
            "announces_done": self.announces.done,
        }
        qin = qout = 0.0
        if self._samples and len(self._samples) >= 2:
            t0, i0, o0 = self._samples[0]
            t1, i1, o1 = self._samples[-1]
            if t1 > t0:
                qin, qout = round((i1 - i0) / (t1 - t0), 1), round((o1 - o0) / (t1 - t0), 1)
        out["queries_in_per_second"] = qin
        out["queries_out_per_second"] = qout
        fams = [f.node.status(now) | {"port": f.bound_port} for f in self.families]
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

    # ------------------------------------------------------------------ lifecycle

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        now = self.clock.seconds()
        ids, saved = load_state(self.state_dir / STATE_FILE, self.rng)
        self.announces.start(now)
        c = self.config
        hosts = [c.host] + ([c.host6] if c.host6 else [])
        for host in hosts:
            node_id, external_ip = ids[":" in host]
            fam = open_family(
                c, host, node_id, external_ip, saved, now=now, clock=self.clock,
                reactor=self.reactor, rng=self.rng,
                known_info_hashes=self.announces.known_info_hashes, refused=self.refused,
                on_id_change=self._on_id_change,
            )
            self.families.append(fam)
            self.log.info(
                "DHT node {node_id} on {host} port {port} ({n} saved nodes)",
                node_id=node_id.hex(),
                host=host,
                port=fam.bound_port,
                n=len(fam.node.table),
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
        for ih in self.announces.due(now):
            self.announce(ih)
        self._pump()
        if now - self._last_save >= SAVE_EVERY:
            self._last_save = now
            try:
                self._save()
            except OSError:
                self.log.failure("saving DHT state failed")

    def _pump(self) -> None:
        if not self.families:
            return
        now = self.clock.seconds()
        while (ih := self.announces.take()) is not None:
            for f in self.families:
                self.announces.started()
                f.node.announce(ih, self.announce_port, now, self._announce_done,
                                local_ip=f.local_ip(self.announce_ips))

    def _announce_done(self, result: LookupResult, sent: int) -> None:
        self.announces.finished()
        self.log.debug(
            "announced {info_hash} to {sent} nodes", info_hash=result.target.hex(), sent=sent
        )
        self.clock.callLater(0, self._pump)

    def _save(self) -> None:
        save_state(self.state_dir / STATE_FILE, [f.node for f in self.families])

    def _on_id_change(self, node_id: bytes) -> None:
        # Each family has its own BEP 42 id (it depends on that family's external address).
        self.log.info("DHT node id changed to {node_id} (BEP 42)", node_id=node_id.hex())

    # ------------------------------------------------------------------ bootstrap

    def _resolve_bootstrap(self) -> Deferred[None]:
        async def run() -> None:
            for f in self.families:
                addrs = await bootstrap_addresses(
                    self.reactor, self.config.bootstrap_nodes, f.node.ipv6
                )
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

"""The DHT node core (BEP 5, 32, 42, 43, 51): no reactor, no sockets, no Deferreds.

Inputs are method calls with ``now``: :meth:`DhtNode.datagram_received`, :meth:`DhtNode.timeout`,
:meth:`DhtNode.tick`, and the API (:meth:`DhtNode.get_peers`, :meth:`DhtNode.announce`,
:meth:`DhtNode.find_node`). Outputs go through an injected :class:`Output`: ``send`` a datagram,
``set_timer``/``cancel_timer`` for the per-query timeout of an outgoing query (the adapter calls
:meth:`DhtNode.timeout` when it fires). Randomness (transaction ids, secrets, samples) comes from an
injected ``random.Random``.

Its parts: the queries it answers (:class:`~tgateway.dht.answers.QueryAnswers`, mixed in), the
tokens of its ``get_peers`` replies (:mod:`tgateway.dht.tokens`), the peers announced to it
(:mod:`tgateway.dht.peer_store`: bounded, expiring after 30 minutes), and its iterative lookups
(:mod:`tgateway.dht.lookup`). Queries are rate-limited per source IP and our own outgoing queries
are capped (``max_outstanding``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tgateway.dht import bep42
from tgateway.dht.answers import MAX_VALUES, QueryAnswers
from tgateway.dht.krpc import (
    METHOD_UNKNOWN,
    PROTOCOL_ERROR,
    ErrorReply,
    KrpcDecodeError,
    ProtocolError,
    Query,
    Response,
    decode_message,
    encode_error,
    encode_query,
    encode_response,
    pack_addr,
    unpack_addr,
)
from tgateway.dht.lookup import Addr, Lookup, LookupResult
from tgateway.dht.peer_store import PeerStore
from tgateway.dht.routing import K, RoutingTable
from tgateway.dht.tokens import TokenManager
from tgateway.ratelimit import KeyedLimiter

__all__ = ["DhtNode", "Output", "QUERY_TIMEOUT"]

QUERY_TIMEOUT = 4.0
PROBE_AGAIN_AFTER = 300.0
EXTERNAL_IP_VOTES = 5

class Output(Protocol):
    """What the core asks of its adapter."""

    def send(self, data: bytes, addr: Addr) -> None: ...

    def set_timer(self, tid: bytes, delay: float) -> None: ...

    def cancel_timer(self, tid: bytes) -> None: ...


# --------------------------------------------------------------------------- the node


@dataclass
class Stats:
    queries_in: int = 0
    queries_out: int = 0
    responses_in: int = 0
    errors_out: int = 0
    timeouts: int = 0
    rate_limited: int = 0
    malformed: int = 0
    unexpected: int = 0
    # by KRPC method (b"other" for a method we do not serve): queries answered, queries sent
    methods_in: dict[bytes, int] = field(default_factory=dict)
    methods_out: dict[bytes, int] = field(default_factory=dict)


@dataclass
class _Pending:
    addr: Addr
    node_id: bytes | None
    method: bytes
    callback: Callable[[Response | None, float], None] | None
    sent_at: float


class DhtNode(QueryAnswers):
    def __init__(
        self,
        node_id: bytes,
        out: Output,
        rng: random.Random,
        now: float,
        *,
        ipv6: bool = False,
        k: int = K,
        max_torrents: int = 10000,
        max_peers_per_torrent: int = 200,
        query_rate: float = 0.0,
        query_burst: int = 100,
        max_outstanding: int = 256,
        query_timeout: float = QUERY_TIMEOUT,
        restrict_ips: bool = True,
        bep42_ids: bool = True,
        read_only: bool = False,
        secret_rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.out = out
        self.rng = rng
        self.ipv6 = ipv6
        self.k = k
        self.max_outstanding = max_outstanding
        self.query_timeout = query_timeout
        self.bep42_ids = bep42_ids
        self.read_only = read_only
        self.table = RoutingTable(node_id, now, k=k, restrict_ips=restrict_ips)
        self.store = PeerStore(max_torrents, max_peers_per_torrent)
        # Token secrets must not be predictable from what ``rng`` reveals (transaction ids,
        # samples): the service passes random.SystemRandom() here.
        self.tokens = TokenManager(secret_rng or rng, now)
        self.limiter: KeyedLimiter[str] | None = (
            KeyedLimiter(query_rate, max(1, query_burst)) if query_rate > 0 else None
        )
        self.stats = Stats()
        self.sibling: DhtNode | None = None  # the node of the other address family (BEP 32)
        # Info-hashes the gateway itself serves (for sample_infohashes).
        self.known_info_hashes: Callable[[], Iterable[bytes]] = lambda: ()
        # Info-hashes refused (the gateway's block list): never stored, answered or sampled.
        self.refused: Callable[[bytes], bool] = lambda info_hash: False
        self.bootstrap_addrs: list[Addr] = []
        self.external_ip: str | None = None
        self.on_id_change: Callable[[bytes], None] | None = None
        self._pending: dict[bytes, _Pending] = {}
        self._tid = rng.randrange(1 << 16)
        self._lookups: set[Lookup] = set()
        self._stalled: dict[Lookup, None] = {}
        self._probed: dict[bytes, float] = {}
        self._ip_votes: dict[str, set[str]] = {}
        self._closest_cache: dict[bytes, bytes] = {}
        self._closest_version = -1
        self._sample: tuple[float, bytes, int] = (-1.0, b"", 0)
        self._next_bootstrap = now
        self._bootstrap_backoff = 30.0
        self._handlers: dict[bytes, Callable[[Query, Addr, float], dict[bytes, Any]]] = {
            b"ping": self._q_ping,
            b"find_node": self._q_find_node,
            b"get_peers": self._q_get_peers,
            b"announce_peer": self._q_announce_peer,
            b"sample_infohashes": self._q_sample_infohashes,
        }

    # ------------------------------------------------------------------ input

    def datagram_received(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one datagram. Never raises for any input."""
        try:
            msg = decode_message(data)
        except KrpcDecodeError as e:
            self.stats.malformed += 1
            if e.t is not None and self._allowed(addr, now):
                self._reply_error(e.t, PROTOCOL_ERROR, "Protocol Error: " + str(e), addr)
            return
        if type(msg) is Query:
            if self.limiter is not None and not self._allowed(addr, now):
                return
            self._on_query(msg, addr, now)
        elif type(msg) is Response:
            self._on_response(msg, addr, now)
        else:
            self._on_error(msg, addr, now)  # type: ignore[arg-type]

    def _allowed(self, addr: Addr, now: float) -> bool:
        lim = self.limiter
        if lim is None or lim.take(addr[0], now) == 0.0:
            return True
        self.stats.rate_limited += 1
        return False

    def _on_query(self, q: Query, addr: Addr, now: float) -> None:
        self.stats.queries_in += 1
        handler = self._handlers.get(q.method)
        by = self.stats.methods_in
        method = q.method if handler is not None else b"other"
        by[method] = by.get(method, 0) + 1
        if handler is None:
            self._reply_error(q.t, METHOD_UNKNOWN, "Method Unknown", addr)
            return
        try:
            values = handler(q, addr, now)
        except ProtocolError as e:
            self._reply_error(q.t, e.code, e.message, addr)
            return
        try:
            ip = pack_addr(addr[0], addr[1])
        except ValueError:
            ip = None
        self.out.send(encode_response(q.t, values, ip), addr)
        if not q.ro:
            self._heard_from(q.sender, addr, now)

    def _reply_error(self, t: bytes, code: int, message: str, addr: Addr) -> None:
        self.stats.errors_out += 1
        self.out.send(encode_error(t, code, message), addr)

    def _heard_from(self, node_id: bytes, addr: Addr, now: float) -> None:
        """A node queried us: refresh it, or ping it if the table has room for it."""
        if self.table.heard_query(node_id, addr[0], addr[1], now) is not None:
            return
        last = self._probed.get(node_id)
        if last is not None and now - last < PROBE_AGAIN_AFTER:
            return
        if not self.table.wants(node_id, addr[0]):
            return
        if len(self._probed) > 10_000:
            self._probed.clear()
        self._probed[node_id] = now
        self._send_query(addr, b"ping", {}, now, None, node_id=node_id)

    def _on_response(self, r: Response, addr: Addr, now: float) -> None:
        p = self._pending.get(r.t)
        if p is None or p.addr != addr:
            self.stats.unexpected += 1
            return
        del self._pending[r.t]
        self.out.cancel_timer(r.t)
        self.stats.responses_in += 1
        _, to_ping = self.table.add(r.sender, addr[0], addr[1], now)
        if r.ip is not None:
            self._vote_external_ip(r.ip, addr[0], now)
        for n in to_ping[:2]:
            self.ping(n.addr, now, node_id=n.id)
        if p.callback is not None:
            p.callback(r, now)
        self._wake_stalled(now)

    def _on_error(self, e: ErrorReply, addr: Addr, now: float) -> None:
        p = self._pending.get(e.t)
        if p is None or p.addr != addr:
            self.stats.unexpected += 1
            return
        del self._pending[e.t]
        self.out.cancel_timer(e.t)
        if p.callback is not None:
            p.callback(None, now)
        self._wake_stalled(now)

    def timeout(self, tid: bytes, now: float) -> None:
        """The adapter's timer for an outgoing query fired."""
        p = self._pending.pop(tid, None)
        if p is None:
            return
        self.stats.timeouts += 1
        if p.node_id is not None:
            self.table.failed(p.node_id, now)
        if p.callback is not None:
            p.callback(None, now)
        self._wake_stalled(now)

    def _wake_stalled(self, now: float) -> None:
        while self._stalled and len(self._pending) < self.max_outstanding:
            lookup = next(iter(self._stalled))
            del self._stalled[lookup]
            lookup.step(now)

    # ------------------------------------------------------------------ queries we send

    def _new_tid(self) -> bytes:
        for _ in range(1 << 16):
            self._tid = (self._tid + 1) & 0xFFFF
            tid = self._tid.to_bytes(2, "big")
            if tid not in self._pending:
                return tid
        raise RuntimeError("no free transaction id")  # pragma: no cover (max_outstanding < 65536)

    def _send_query(
        self,
        addr: Addr,
        method: bytes,
        args: dict[bytes, Any],
        now: float,
        callback: Callable[[Response | None, float], None] | None,
        node_id: bytes | None = None,
    ) -> bool:
        """Send a query. False (nothing sent) when too many queries are outstanding."""
        if len(self._pending) >= self.max_outstanding:
            return False
        tid = self._new_tid()
        args[b"id"] = self.node_id
        self._pending[tid] = _Pending(addr, node_id, method, callback, now)
        self.stats.queries_out += 1
        by = self.stats.methods_out
        by[method] = by.get(method, 0) + 1
        self.out.send(encode_query(tid, method, args, self.read_only), addr)
        self.out.set_timer(tid, self.query_timeout)
        return True

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def ping(
        self,
        addr: Addr,
        now: float,
        callback: Callable[[Response | None, float], None] | None = None,
        node_id: bytes | None = None,
    ) -> bool:
        return self._send_query(addr, b"ping", {}, now, callback, node_id=node_id)

    def _lookup(
        self,
        target: bytes,
        method: bytes,
        now: float,
        on_done: Callable[[LookupResult], None],
        extra: Iterable[Addr] = (),
    ) -> Lookup:
        lookup = Lookup(self, target, method, on_done)
        for e in self.table.closest(target, self.k * 2):
            lookup.add(e.id, e.addr)
        for a in extra:
            lookup.add(None, a)
        if not lookup.order:
            for a in self.bootstrap_addrs:
                lookup.add(None, a)
        self._lookups.add(lookup)
        lookup.step(now)
        return lookup

    def find_node(
        self, target: bytes, now: float, on_done: Callable[[LookupResult], None]
    ) -> Lookup:
        return self._lookup(target, b"find_node", now, on_done)

    def get_peers(
        self, info_hash: bytes, now: float, on_done: Callable[[LookupResult], None]
    ) -> Lookup:
        """Look up peers for ``info_hash``; ``on_done`` gets peers found plus any stored here."""

        def done(result: LookupResult) -> None:
            local = [unpack_addr(p) for p in self.store.get(info_hash, now, MAX_VALUES, self.rng)]
            seen = dict.fromkeys(result.peers)
            for p in local:
                seen.setdefault(p, None)
            result.peers = list(seen)
            on_done(result)

        return self._lookup(info_hash, b"get_peers", now, done)

    def announce(
        self,
        info_hash: bytes,
        port: int,
        now: float,
        on_done: Callable[[LookupResult, int], None] | None = None,
        local_ip: str | None = None,
    ) -> Lookup:
        """get_peers lookup, then announce_peer(port) to the K closest nodes that gave a token.

        ``local_ip``: our own address, stored in our own peer store too (so a node that asks us
        directly finds the gateway). ``on_done(result, announces_sent)``.
        """
        ip = local_ip or self.external_ip
        if ip:
            try:
                self.store.add(info_hash, pack_addr(ip, port), now)
            except ValueError:
                pass

        def done(result: LookupResult) -> None:
            sent = 0
            for node_id, addr, token in result.nodes:
                if token is None:
                    continue
                args = {
                    b"info_hash": info_hash,
                    b"port": port,
                    b"token": token,
                    b"implied_port": 0,
                }
                if self._send_query(addr, b"announce_peer", args, now, None, node_id=node_id):
                    sent += 1
            if on_done is not None:
                on_done(result, sent)

        return self._lookup(info_hash, b"get_peers", now, done)

    def withdraw(self, info_hash: bytes, port: int, local_ip: str | None = None) -> None:
        """Undo what :meth:`announce` stored here: our own address for ``info_hash`` (we no
        longer serve it). What other nodes stored expires there."""
        ip = local_ip or self.external_ip
        if ip:
            try:
                self.store.discard(info_hash, pack_addr(ip, port))
            except ValueError:
                pass

    def bootstrap(self, addrs: Iterable[Addr], now: float) -> Lookup:
        """Join: a find_node lookup of our own id through the given addresses and the table."""
        self.bootstrap_addrs = list(addrs)
        self._next_bootstrap = now + self._bootstrap_backoff
        return self._lookup(self.node_id, b"find_node", now, lambda r: None, self.bootstrap_addrs)

    # ------------------------------------------------------------------ maintenance

    def tick(self, now: float) -> None:
        """Periodic work: refresh stale buckets, ping questionable nodes, expire peers."""
        self.tokens.rotate(now)
        self.store.expire(now)
        for b in self.table.stale_buckets(now):
            b.last_changed = now
            self.find_node(RoutingTable.random_id_in(b, self.rng), now, lambda r: None)
        pending_ids = {p.node_id for p in self._pending.values()}
        budget = max(0, min(16, self.max_outstanding // 4 - len(self._pending)))
        for n in sorted(self.table.questionable(now), key=lambda n: n.last_seen()):
            if budget <= 0:
                break
            if n.id in pending_ids:
                continue
            self.ping(n.addr, now, node_id=n.id)
            budget -= 1
        if len(self.table) == 0 and self.bootstrap_addrs and now >= self._next_bootstrap:
            self._bootstrap_backoff = min(self._bootstrap_backoff * 2, 600.0)
            self.bootstrap(self.bootstrap_addrs, now)
        elif len(self.table):
            self._bootstrap_backoff = 30.0

    def _vote_external_ip(self, compact: bytes, voter: str, now: float) -> None:
        try:
            ip, _ = unpack_addr(compact)
        except ValueError:
            return
        if (":" in ip) != self.ipv6 or bep42.is_exempt(ip):
            return
        voters = self._ip_votes.setdefault(ip, set())
        if len(self._ip_votes) > 64:
            self._ip_votes = {ip: voters}
        voters.add(voter)
        if len(voters) < EXTERNAL_IP_VOTES or self.external_ip == ip:
            return
        self.external_ip = ip
        if self.bep42_ids and not bep42.id_matches_ip(self.node_id, ip):
            self.change_id(bep42.node_id_for_ip(ip, self.rng), now)

    def change_id(self, node_id: bytes, now: float) -> None:
        """Take a new node id: rebuild the table around it and rejoin."""
        old = self.table
        self.node_id = node_id
        self.table = RoutingTable(node_id, now, k=self.k, restrict_ips=old.restrict_ips)
        for e in old.entries():
            self.table.add(e.id, e.ip, e.port, now, responded=False)
            new = self.table.get(e.id)
            if new is not None:
                new.last_response, new.last_query, new.fails = (
                    e.last_response,
                    e.last_query,
                    e.fails,
                )
        if self.on_id_change is not None:
            self.on_id_change(node_id)
        self._lookup(node_id, b"find_node", now, lambda r: None)

    # ------------------------------------------------------------------ state

    def export_nodes(self) -> list[tuple[bytes, str, int]]:
        return [(e.id, e.ip, e.port) for e in self.table.entries() if e.fails < 2]

    def status(self, now: float) -> dict[str, Any]:
        return {
            "node_id": self.node_id.hex(),
            "family": "ipv6" if self.ipv6 else "ipv4",
            "external_ip": self.external_ip,
            "routing_table_size": len(self.table),
            "buckets": len(self.table.buckets),
            "good_nodes": self.table.good_count(now),
            "stored_torrents": self.store.torrent_count,
            "stored_peers": self.store.peer_count,
            "outstanding_queries": len(self._pending),
            "lookups": len(self._lookups),
            "queries_in": self.stats.queries_in,
            "queries_out": self.stats.queries_out,
            "responses_in": self.stats.responses_in,
            "timeouts": self.stats.timeouts,
            "errors_out": self.stats.errors_out,
            "rate_limited": self.stats.rate_limited,
            "malformed": self.stats.malformed,
        }

"""The DHT node core (BEP 5, 32, 42, 43, 51): no reactor, no sockets, no Deferreds.

Inputs are method calls with ``now``: :meth:`DhtNode.datagram_received`, :meth:`DhtNode.timeout`,
:meth:`DhtNode.tick`, and the API (:meth:`DhtNode.get_peers`, :meth:`DhtNode.announce`,
:meth:`DhtNode.find_node`). Outputs go through an injected :class:`Output`: ``send`` a datagram,
``set_timer``/``cancel_timer`` for the per-query timeout of an outgoing query (the adapter calls
:meth:`DhtNode.timeout` when it fires). Randomness (transaction ids, secrets, samples) comes from an
injected ``random.Random``.

Queries served: ``ping``, ``find_node``, ``get_peers`` (``values`` when we hold peers, always the
closest ``nodes`` and a ``token``), ``announce_peer`` (token checked, ``implied_port``, ports 0 and
1 refused) and ``sample_infohashes`` (BEP 51). BEP 32: an IPv6 node answers with ``nodes6``; ``want``
(``n4``/``n6``) is honoured when a sibling node of the other family is attached. Tokens are the
first 8 bytes of SHA-1(secret + requester IP); the secret rotates every 5 minutes and the previous
one stays valid. The peer store is bounded (``max_torrents``, ``max_peers_per_torrent``) and
entries expire after 30 minutes. Queries are rate-limited per source IP and our own outgoing
queries are capped (``max_outstanding``).

Lookups are iterative: at most α = 3 queries in flight, converging on the K closest nodes that
answered; a get_peers lookup collects peers and tokens, and an announce sends ``announce_peer`` to
the K closest nodes that gave a token.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tgateway.dht import bep42
from tgateway.dht.krpc import (
    METHOD_UNKNOWN,
    PROTOCOL_ERROR,
    ErrorReply,
    KrpcDecodeError,
    ProtocolError,
    Query,
    Response,
    arg_bytes,
    arg_id20,
    arg_port,
    decode_message,
    encode_error,
    encode_query,
    encode_response,
    pack_addr,
    unpack_addr,
    unpack_nodes,
    unpack_peers,
)
from tgateway.dht.routing import ID_SPACE, K, RoutingTable
from tgateway.ratelimit import KeyedLimiter

__all__ = [
    "ALPHA",
    "Output",
    "PeerStore",
    "TokenManager",
    "LookupResult",
    "DhtNode",
]

ALPHA = 3
QUERY_TIMEOUT = 4.0
TOKEN_ROTATE = 5 * 60.0
PEER_TTL = 30 * 60.0
MAX_VALUES = 50  # peers per get_peers reply (fits one UDP datagram)
SAMPLE_COUNT = 20  # info-hashes per sample_infohashes reply
SAMPLE_INTERVAL = 300  # seconds a sample stays the same
MAX_LOOKUP_QUERIES = 200
PROBE_AGAIN_AFTER = 300.0
EXTERNAL_IP_VOTES = 5

Addr = tuple[str, int]


class Output(Protocol):
    """What the core asks of its adapter."""

    def send(self, data: bytes, addr: Addr) -> None: ...

    def set_timer(self, tid: bytes, delay: float) -> None: ...

    def cancel_timer(self, tid: bytes) -> None: ...


# --------------------------------------------------------------------------- tokens


class TokenManager:
    """Tokens bound to the requester's IP: SHA-1(secret + ip)[:8], secrets rotated every 5 min."""

    def __init__(self, rng: random.Random, now: float, rotate_every: float = TOKEN_ROTATE):
        self._rng = rng
        self.rotate_every = rotate_every
        self._secret = rng.randbytes(16)
        self._previous = self._secret
        self._rotate_at = now + rotate_every
        self._cache: dict[str, bytes] = {}

    def rotate(self, now: float) -> None:
        """Rotate the secret if its 5 minutes are up (also done lazily on use)."""
        if now >= self._rotate_at:
            # More than two periods of silence: the previous secret is stale too.
            stale = now >= self._rotate_at + self.rotate_every
            self._previous = self._rng.randbytes(16) if stale else self._secret
            self._secret = self._rng.randbytes(16)
            self._rotate_at = now + self.rotate_every
            self._cache.clear()

    @staticmethod
    def _make(secret: bytes, ip: str) -> bytes:
        return hashlib.sha1(secret + ip.encode()).digest()[:8]

    def token(self, ip: str, now: float) -> bytes:
        if now >= self._rotate_at:
            self.rotate(now)
        tok = self._cache.get(ip)
        if tok is None:
            if len(self._cache) > 50_000:
                self._cache.clear()
            tok = self._cache[ip] = self._make(self._secret, ip)
        return tok

    def valid(self, token: bytes, ip: str, now: float) -> bool:
        if token == self.token(ip, now):
            return True
        return token == self._make(self._previous, ip)


# --------------------------------------------------------------------------- peer store


class PeerStore:
    """Peers announced to us: info-hash -> {compact peer: expiry}, bounded and expiring."""

    def __init__(self, max_torrents: int, max_peers: int, ttl: float = PEER_TTL):
        self.max_torrents = max_torrents
        self.max_peers = max_peers
        self.ttl = ttl
        # Insertion order is expiry order (one ttl for everyone; a re-announce moves to the end).
        self._t: dict[bytes, dict[bytes, float]] = {}

    def add(self, info_hash: bytes, peer: bytes, now: float) -> bool:
        """Store a peer. False if the store is full of other torrents."""
        d = self._t.get(info_hash)
        if d is None:
            if len(self._t) >= self.max_torrents:
                self.expire(now)
                if len(self._t) >= self.max_torrents:
                    return False
            d = self._t[info_hash] = {}
        d.pop(peer, None)
        d[peer] = now + self.ttl
        while len(d) > self.max_peers:
            del d[next(iter(d))]
        return True

    def _live(self, info_hash: bytes, now: float) -> dict[bytes, float] | None:
        d = self._t.get(info_hash)
        if d is None:
            return None
        while d:
            first = next(iter(d))
            if d[first] > now:
                break
            del d[first]
        if not d:
            del self._t[info_hash]
            return None
        return d

    def get(self, info_hash: bytes, now: float, count: int, rng: random.Random) -> list[bytes]:
        d = self._live(info_hash, now)
        if d is None:
            return []
        if len(d) <= count:
            return list(d)
        return rng.sample(list(d), count)

    def expire(self, now: float) -> None:
        for ih in list(self._t):
            self._live(ih, now)

    def info_hashes(self) -> list[bytes]:
        return list(self._t)

    def __contains__(self, info_hash: bytes) -> bool:
        return info_hash in self._t

    @property
    def torrent_count(self) -> int:
        return len(self._t)

    @property
    def peer_count(self) -> int:
        return sum(len(d) for d in self._t.values())


# --------------------------------------------------------------------------- lookups


@dataclass
class LookupResult:
    target: bytes
    peers: list[Addr] = field(default_factory=list)
    # (node id, address, token) of the closest nodes that answered, closest first.
    nodes: list[tuple[bytes, Addr, bytes | None]] = field(default_factory=list)
    queries: int = 0


_NEW, _INFLIGHT, _DONE, _FAILED = 0, 1, 2, 3


class _Candidate:
    __slots__ = ("id", "addr", "key", "state", "token")

    def __init__(self, node_id: bytes | None, addr: Addr, key: int):
        self.id = node_id
        self.addr = addr
        self.key = key
        self.state = _NEW
        self.token: bytes | None = None


class Lookup:
    """One iterative find_node / get_peers lookup."""

    def __init__(
        self,
        node: DhtNode,
        target: bytes,
        method: bytes,
        on_done: Callable[[LookupResult], None],
    ):
        self.node = node
        self.target = target
        self.t_int = int.from_bytes(target, "big")
        self.method = method
        self.on_done = on_done
        self.cands: dict[Any, _Candidate] = {}
        self.order: list[_Candidate] = []
        self.in_flight = 0
        self.peers: dict[Addr, None] = {}
        self.queries = 0
        self.finished = False
        self._anon = 0
        self._dirty = True

    def add(self, node_id: bytes | None, addr: Addr) -> None:
        key: Any
        if node_id is None:
            key = (addr, None)
            if key in self.cands:
                return
            self._anon += 1
            c = _Candidate(None, addr, ID_SPACE + self._anon)
        else:
            if node_id in self.cands or node_id == self.node.node_id:
                return
            key = node_id
            c = _Candidate(node_id, addr, int.from_bytes(node_id, "big") ^ self.t_int)
        self.cands[key] = c
        self.order.append(c)
        self._dirty = True

    def step(self, now: float) -> None:
        if self.finished:
            return
        if self._dirty:
            self.order.sort(key=lambda c: c.key)
            self._dirty = False
        k = self.node.k
        seen = 0
        for c in self.order:
            if self.in_flight >= ALPHA:
                break
            if c.state == _FAILED:
                continue
            if seen >= k:
                break
            seen += 1
            if c.state != _NEW:
                continue
            if self.queries >= MAX_LOOKUP_QUERIES:
                break
            args: dict[bytes, Any]
            if self.method == b"get_peers":
                args = {b"info_hash": self.target}
            else:
                args = {b"target": self.target}
            sent = self.node._send_query(
                c.addr,
                self.method,
                args,
                now,
                functools.partial(self._answer, c),
                node_id=c.id,
            )
            if not sent:
                self.node._stalled[self] = None  # retried when a query slot frees up
                return
            c.state = _INFLIGHT
            self.in_flight += 1
            self.queries += 1
        if self.in_flight == 0:
            self._finish()

    def _answer(self, c: _Candidate, msg: Response | None, now: float) -> None:
        self.in_flight -= 1
        if msg is None or msg.sender == self.node.node_id:
            c.state = _FAILED  # silent, an error, or ourselves (our address in a bootstrap list)
        else:
            c.state = _DONE
            if c.id is None:
                # A bootstrap address: now we know its id.
                c.id = msg.sender
                c.key = int.from_bytes(msg.sender, "big") ^ self.t_int
                self._dirty = True
            elif c.id != msg.sender:
                c.id = msg.sender
                c.key = int.from_bytes(msg.sender, "big") ^ self.t_int
                self._dirty = True
            v = msg.values
            tok = v.get(b"token")
            if type(tok) is bytes and len(tok) <= 64:
                c.token = tok
            key = b"nodes6" if self.node.ipv6 else b"nodes"
            raw = v.get(key)
            if raw is not None:
                try:
                    for nid, ip, port in unpack_nodes(raw, self.node.ipv6):
                        self.add(nid, (ip, port))
                except (ProtocolError, ValueError):
                    pass
            if self.method == b"get_peers" and b"values" in v:
                try:
                    for p in unpack_peers(v[b"values"]):
                        self.peers[p] = None
                except (ProtocolError, ValueError):
                    pass
        self.step(now)

    def _finish(self) -> None:
        self.finished = True
        self.node._stalled.pop(self, None)
        self.node._lookups.discard(self)
        result = LookupResult(self.target, list(self.peers), [], self.queries)
        for c in self.order:
            if c.state == _DONE and c.id is not None:
                result.nodes.append((c.id, c.addr, c.token))
                if len(result.nodes) >= self.node.k:
                    break
        self.on_done(result)


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


@dataclass
class _Pending:
    addr: Addr
    node_id: bytes | None
    method: bytes
    callback: Callable[[Response | None, float], None] | None
    sent_at: float


class DhtNode:
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

    # ------------------------------------------------------------------ queries we answer

    def _q_ping(self, q: Query, addr: Addr, now: float) -> dict[bytes, Any]:
        return {b"id": self.node_id}

    def _nodes_fields(self, target: bytes, args: dict[bytes, Any], out: dict[bytes, Any]) -> None:
        want = args.get(b"want")
        own_key = b"nodes6" if self.ipv6 else b"nodes"
        if type(want) is list and want:
            want4, want6 = b"n4" in want, b"n6" in want
            for w, key in ((want4, b"nodes"), (want6, b"nodes6")):
                if not w:
                    continue
                if key == own_key:
                    out[key] = self.closest_compact(target)
                elif self.sibling is not None:
                    out[key] = self.sibling.closest_compact(target)
            if b"nodes" in out or b"nodes6" in out:
                return
        out[own_key] = self.closest_compact(target)

    def closest_compact(self, target: bytes) -> bytes:
        """The compact K closest good nodes to ``target`` (cached until the table changes)."""
        table = self.table
        cache = self._closest_cache
        if self._closest_version != table.version or len(cache) > 4096:
            cache.clear()
            self._closest_version = table.version
        got = cache.get(target)
        if got is None:
            got = cache[target] = b"".join(e.compact for e in table.closest(target))
        return got

    def _q_find_node(self, q: Query, addr: Addr, now: float) -> dict[bytes, Any]:
        target = arg_id20(q.args, b"target")
        out: dict[bytes, Any] = {b"id": self.node_id}
        self._nodes_fields(target, q.args, out)
        return out

    def _q_get_peers(self, q: Query, addr: Addr, now: float) -> dict[bytes, Any]:
        info_hash = arg_id20(q.args, b"info_hash")
        out: dict[bytes, Any] = {b"id": self.node_id, b"token": self.tokens.token(addr[0], now)}
        if info_hash in self.store._t:
            peers = self.store.get(info_hash, now, MAX_VALUES, self.rng)
            if peers:
                out[b"values"] = peers
        self._nodes_fields(info_hash, q.args, out)
        return out

    def _q_announce_peer(self, q: Query, addr: Addr, now: float) -> dict[bytes, Any]:
        a = q.args
        info_hash = arg_id20(a, b"info_hash")
        token = arg_bytes(a, b"token", 64)
        implied = a.get(b"implied_port")
        if implied is not None and type(implied) is not int:
            raise ProtocolError("implied_port must be an integer")
        if implied:
            port = addr[1]
            if port < 2:
                raise ProtocolError("port must be from 2 to 65535")
        else:
            port = arg_port(a, b"port")
        if not self.tokens.valid(token, addr[0], now):
            raise ProtocolError("bad token")
        try:
            peer = pack_addr(addr[0], port)
        except ValueError:
            raise ProtocolError("bad address") from None
        if not self.store.add(info_hash, peer, now):
            raise ProtocolError("peer store full", code=202)
        return {b"id": self.node_id}

    def _q_sample_infohashes(self, q: Query, addr: Addr, now: float) -> dict[bytes, Any]:
        target = arg_id20(q.args, b"target")
        at, samples, num = self._sample
        if at < 0 or now - at >= SAMPLE_INTERVAL:
            hashes = set(self.store.info_hashes())
            hashes.update(h for h in self.known_info_hashes() if len(h) == 20)
            num = len(hashes)
            pick = (
                sorted(hashes)
                if num <= SAMPLE_COUNT
                else self.rng.sample(sorted(hashes), SAMPLE_COUNT)
            )
            samples = b"".join(pick)
            self._sample = (now, samples, num)
        out: dict[bytes, Any] = {
            b"id": self.node_id,
            b"interval": SAMPLE_INTERVAL,
            b"num": num,
            b"samples": samples,
        }
        self._nodes_fields(target, q.args, out)
        return out

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

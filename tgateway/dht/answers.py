"""The queries a DHT node answers (BEP 5, 32, 42, 51): ``ping``, ``find_node``, ``get_peers``,
``announce_peer``, ``sample_infohashes``.

:class:`QueryAnswers` is mixed into :class:`~tgateway.dht.node.DhtNode`: each ``_q_<method>``
takes the parsed query, the sender's address and ``now``, and returns the reply's values (or
raises ``ProtocolError``, which the node answers with a KRPC error). ``get_peers`` always gives a
token and the closest ``nodes``, plus ``values`` when peers are stored here; ``announce_peer``
checks the token, takes ``implied_port``, refuses ports 0 and 1. Info-hashes the node
``refused`` (the gateway's block list) are acknowledged but never stored, never answered with
``values`` and never sampled. BEP 32: an IPv6 node answers with
``nodes6``; ``want`` (``n4``/``n6``) is honoured when a sibling node of the other family is attached.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tgateway.dht.krpc import ProtocolError, Query, arg_bytes, arg_id20, arg_port, pack_addr
from tgateway.dht.lookup import Addr
from tgateway.dht.peer_store import PeerStore
from tgateway.dht.routing import RoutingTable
from tgateway.dht.tokens import TokenManager

if TYPE_CHECKING:
    from tgateway.dht.node import DhtNode

__all__ = ["MAX_VALUES", "QueryAnswers", "SAMPLE_COUNT", "SAMPLE_INTERVAL"]

MAX_VALUES = 50  # peers per get_peers reply (fits one UDP datagram)
SAMPLE_COUNT = 20  # info-hashes per sample_infohashes reply
SAMPLE_INTERVAL = 300  # seconds a sample stays the same


class QueryAnswers:
    """Answers to incoming queries, from the node's state (declared here, set by the node)."""

    node_id: bytes
    ipv6: bool
    rng: random.Random
    table: RoutingTable
    store: PeerStore
    tokens: TokenManager
    sibling: DhtNode | None
    known_info_hashes: Callable[[], Iterable[bytes]]
    refused: Callable[[bytes], bool]
    _closest_cache: dict[bytes, bytes]
    _closest_version: int
    _sample: tuple[float, bytes, int]

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
        if info_hash in self.store and not self.refused(info_hash):
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
        if self.refused(info_hash):
            return {b"id": self.node_id}  # acknowledged, not stored: never served from here
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
            hashes = {h for h in hashes if not self.refused(h)}
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

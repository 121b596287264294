"""Iterative lookups (BEP 5): ``find_node`` and ``get_peers`` converging on the K closest nodes.

At most α = 3 queries in flight; each answer adds the nodes it names, closest first; a lookup ends
when the K closest nodes that answered have all been asked (or after ``MAX_LOOKUP_QUERIES``). A
get_peers lookup collects peers and tokens (``announce`` sends ``announce_peer`` to the K closest
nodes that gave one). A :class:`Lookup` belongs to its :class:`~tgateway.dht.node.DhtNode`: it
sends through the node's query slots, and waits in the node's stalled queue when all are taken.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tgateway.dht.krpc import ProtocolError, Response, unpack_nodes, unpack_peers
from tgateway.dht.routing import ID_SPACE

if TYPE_CHECKING:
    from tgateway.dht.node import DhtNode

__all__ = ["ALPHA", "MAX_LOOKUP_QUERIES", "Addr", "Lookup", "LookupResult"]

ALPHA = 3
MAX_LOOKUP_QUERIES = 200

Addr = tuple[str, int]


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

"""Kademlia routing table of k-buckets (BEP 5).

The id space [0, 2^160) is covered by buckets of at most K = 8 nodes each. Only the bucket that
holds our own id splits when full, so the table is dense near us and sparse far away.

Node states (BEP 5):
- good: answered one of our queries in the last 15 minutes, or answered at some time and queried
  us in the last 15 minutes;
- bad: failed to answer ``MAX_FAILS`` queries in a row;
- questionable: anything else (the node should be pinged).

A full bucket takes a new node only in place of a bad one; otherwise the newcomer waits in the
bucket's replacement cache, and the caller pings the bucket's questionable nodes: one that stays
silent turns bad and is replaced by the most recent replacement. A bucket unchanged for 15 minutes
is due for a refresh (a ``find_node`` lookup of a random id inside it).

Only nodes that answered one of our queries enter the table (an unconfirmed node is pinged first),
so the nodes we hand out are nodes we have talked to. Pure: time is passed in, randomness too.
"""

from __future__ import annotations

import bisect
import ipaddress
import random
from collections.abc import Iterable, Iterator
from typing import Literal

from tgateway.dht.krpc import pack_node

__all__ = ["K", "GOOD_WINDOW", "REFRESH_AFTER", "MAX_FAILS", "NodeEntry", "Bucket", "RoutingTable"]

K = 8
ID_BITS = 160
ID_SPACE = 1 << ID_BITS
GOOD_WINDOW = 15 * 60.0
REFRESH_AFTER = 15 * 60.0
MAX_FAILS = 2

NodeState = Literal["good", "questionable", "bad"]
AddResult = Literal["added", "updated", "replaced", "cached", "refused"]


def distance(a: bytes, b: bytes) -> int:
    """XOR distance between two 20-byte ids."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def _exempt_ip(ip: str) -> bool:
    """Addresses allowed to hold several table entries (loopback and private networks)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return a.is_loopback or a.is_private or a.is_link_local


class NodeEntry:
    """One routing-table node. ``last_response`` is None for a node loaded from disk."""

    __slots__ = ("id", "id_int", "ip", "port", "compact", "last_response", "last_query", "fails")

    def __init__(self, node_id: bytes, ip: str, port: int, last_response: float | None):
        self.id = node_id
        self.id_int = int.from_bytes(node_id, "big")
        self.ip = ip
        self.port = port
        self.compact = pack_node(node_id, ip, port)
        self.last_response = last_response
        self.last_query: float | None = None
        self.fails = 0

    @property
    def addr(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def state(self, now: float) -> NodeState:
        if self.fails >= MAX_FAILS:
            return "bad"
        lr = self.last_response
        if lr is not None:
            if now - lr <= GOOD_WINDOW:
                return "good"
            lq = self.last_query
            if lq is not None and now - lq <= GOOD_WINDOW:
                return "good"
        return "questionable"

    def last_seen(self) -> float:
        return max(self.last_response or 0.0, self.last_query or 0.0)

    def __repr__(self) -> str:
        return f"NodeEntry({self.id.hex()[:8]}.., {self.ip}:{self.port})"


class Bucket:
    """Nodes whose id lies in [lo, hi); at most K, plus up to K replacements."""

    __slots__ = ("lo", "hi", "nodes", "replacements", "last_changed")

    def __init__(self, lo: int, hi: int, now: float):
        self.lo = lo
        self.hi = hi
        self.nodes: list[NodeEntry] = []
        self.replacements: list[NodeEntry] = []
        self.last_changed = now

    def covers(self, id_int: int) -> bool:
        return self.lo <= id_int < self.hi

    def __repr__(self) -> str:
        return f"Bucket(2^{(self.hi - self.lo).bit_length() - 1}, {len(self.nodes)} nodes)"


class RoutingTable:
    def __init__(self, own_id: bytes, now: float, k: int = K, restrict_ips: bool = True) -> None:
        self.own_id = own_id
        self.own_int = int.from_bytes(own_id, "big")
        self.k = k
        self.restrict_ips = restrict_ips
        self.buckets: list[Bucket] = [Bucket(0, ID_SPACE, now)]
        self._los: list[int] = [0]
        self._nodes: dict[bytes, NodeEntry] = {}
        self._sorted: list[int] = []
        self._by_int: dict[int, NodeEntry] = {}
        self._ips: dict[str, int] = {}
        # Bumped on every membership change, so callers may cache closest() answers.
        self.version = 0

    # ------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[NodeEntry]:
        return iter(list(self._nodes.values()))

    def get(self, node_id: bytes) -> NodeEntry | None:
        return self._nodes.get(node_id)

    def bucket_for(self, id_int: int) -> Bucket:
        return self.buckets[bisect.bisect_right(self._los, id_int) - 1]

    def good_count(self, now: float) -> int:
        return sum(1 for n in self._nodes.values() if n.state(now) == "good")

    def closest(self, target: bytes, count: int | None = None) -> list[NodeEntry]:
        """The ``count`` (default K) closest non-bad nodes to ``target`` by XOR distance."""
        k = self.k if count is None else count
        t = int.from_bytes(target, "big")
        ids = self._sorted
        n = len(ids)
        by_int = self._by_int
        if n <= k:
            cands = ids
        else:
            # The longest prefix of t whose id range holds >= k nodes contains the k closest.
            lo_p, hi_p = 0, ID_BITS
            bl = bisect.bisect_left
            while lo_p < hi_p:
                mid = (lo_p + hi_p + 1) >> 1
                shift = ID_BITS - mid
                base = (t >> shift) << shift
                if bl(ids, base + (1 << shift)) - bl(ids, base) >= k:
                    lo_p = mid
                else:
                    hi_p = mid - 1
            p = lo_p
            while True:
                shift = ID_BITS - p
                base = (t >> shift) << shift
                cands = ids[bl(ids, base) : bl(ids, base + (1 << shift))]
                good = [i for i in cands if by_int[i].fails < MAX_FAILS]
                if len(good) >= k or p == 0:
                    cands = good
                    break
                p -= 1
        best = sorted(cands, key=lambda i: i ^ t)
        out = []
        for i in best:
            e = by_int[i]
            if e.fails < MAX_FAILS:
                out.append(e)
                if len(out) == k:
                    break
        return out

    # ------------------------------------------------------------------ updates

    def wants(self, node_id: bytes, ip: str) -> bool:
        """Would a new node with this id fit (worth pinging it to confirm it)?"""
        if node_id in self._nodes or node_id == self.own_id:
            return False
        if self.restrict_ips and ip in self._ips and not _exempt_ip(ip):
            return False
        b = self.bucket_for(int.from_bytes(node_id, "big"))
        if len(b.nodes) < self.k or b.covers(self.own_int):
            return True
        return any(e.fails >= MAX_FAILS for e in b.nodes)

    def heard_query(self, node_id: bytes, ip: str, port: int, now: float) -> NodeEntry | None:
        """A node queried us. Returns its entry if it is in the table (and the address matches)."""
        e = self._nodes.get(node_id)
        if e is not None and e.port == port and e.ip == ip:
            e.last_query = now
            return e
        return None

    def add(
        self, node_id: bytes, ip: str, port: int, now: float, responded: bool = True
    ) -> tuple[AddResult, list[NodeEntry]]:
        """A node answered one of our queries (or was loaded from disk, ``responded=False``).

        Returns what happened and the questionable nodes of a full bucket that should be pinged.
        """
        if node_id == self.own_id:
            return "refused", []
        e = self._nodes.get(node_id)
        if e is not None:
            if e.ip != ip or e.port != port:
                if e.state(now) != "bad":
                    return "refused", []  # keep the address we know works
                self._remove(e)
            else:
                if responded:
                    if e.fails >= MAX_FAILS:
                        self.version += 1  # back from bad: closest() answers change
                    e.last_response = now
                    e.fails = 0
                    self.bucket_for(e.id_int).last_changed = now
                return "updated", []
        if self.restrict_ips and ip in self._ips and not _exempt_ip(ip):
            return "refused", []
        entry = NodeEntry(node_id, ip, port, now if responded else None)
        while True:
            b = self.bucket_for(entry.id_int)
            if len(b.nodes) < self.k:
                self._insert(b, entry, now)
                return "added", []
            if b.covers(self.own_int) and b.hi - b.lo > 1:
                self._split(b)
                continue
            break
        for old in b.nodes:
            if old.fails >= MAX_FAILS:
                self._remove(old)
                self._insert(b, entry, now)
                return "replaced", []
        # Full of live nodes: keep the newcomer as a replacement, ask for pings.
        b.replacements = [r for r in b.replacements if r.id != node_id]
        b.replacements.append(entry)
        del b.replacements[: -self.k]
        to_ping = sorted(
            (n for n in b.nodes if n.state(now) == "questionable"), key=NodeEntry.last_seen
        )
        return "cached", to_ping

    def failed(self, node_id: bytes, now: float) -> bool:
        """A query to this node timed out. Returns True if the node was dropped (replaced)."""
        e = self._nodes.get(node_id)
        if e is None:
            return False
        e.fails += 1
        if e.fails < MAX_FAILS:
            return False
        if e.fails == MAX_FAILS:
            self.version += 1  # now bad: closest() answers change
        b = self.bucket_for(e.id_int)
        if b.replacements:
            self._remove(e)
            repl = b.replacements.pop()
            if repl.id not in self._nodes:
                self._insert(b, repl, now)
            return True
        return False

    def remove(self, node_id: bytes) -> None:
        e = self._nodes.get(node_id)
        if e is not None:
            self._remove(e)

    def _insert(self, b: Bucket, e: NodeEntry, now: float) -> None:
        b.nodes.append(e)
        b.last_changed = now
        self._nodes[e.id] = e
        self._by_int[e.id_int] = e
        bisect.insort(self._sorted, e.id_int)
        self._ips[e.ip] = self._ips.get(e.ip, 0) + 1
        self.version += 1

    def _remove(self, e: NodeEntry) -> None:
        b = self.bucket_for(e.id_int)
        b.nodes.remove(e)
        del self._nodes[e.id]
        del self._by_int[e.id_int]
        i = bisect.bisect_left(self._sorted, e.id_int)
        del self._sorted[i]
        left = self._ips[e.ip] - 1
        if left:
            self._ips[e.ip] = left
        else:
            del self._ips[e.ip]
        self.version += 1

    def _split(self, b: Bucket) -> None:
        mid = (b.lo + b.hi) >> 1
        low, high = Bucket(b.lo, mid, b.last_changed), Bucket(mid, b.hi, b.last_changed)
        for n in b.nodes:
            (low if n.id_int < mid else high).nodes.append(n)
        for n in b.replacements:
            (low if n.id_int < mid else high).replacements.append(n)
        i = self.buckets.index(b)
        self.buckets[i : i + 1] = [low, high]
        self._los[i : i + 1] = [low.lo, high.lo]

    # ------------------------------------------------------------------ maintenance

    def stale_buckets(self, now: float) -> list[Bucket]:
        """Buckets not changed for REFRESH_AFTER seconds (due for a refresh lookup)."""
        return [b for b in self.buckets if now - b.last_changed >= REFRESH_AFTER]

    @staticmethod
    def random_id_in(b: Bucket, rng: random.Random) -> bytes:
        return (b.lo + rng.randrange(b.hi - b.lo)).to_bytes(20, "big")

    def questionable(self, now: float) -> list[NodeEntry]:
        return [n for n in self._nodes.values() if n.state(now) == "questionable"]

    def entries(self) -> list[NodeEntry]:
        return list(self._nodes.values())

    def load(self, nodes: Iterable[tuple[bytes, str, int]], now: float) -> int:
        """Insert saved nodes as questionable ones (they get pinged). Returns how many fit."""
        count = 0
        for node_id, ip, port in nodes:
            result, _ = self.add(node_id, ip, port, now, responded=False)
            if result in ("added", "replaced"):
                count += 1
        return count

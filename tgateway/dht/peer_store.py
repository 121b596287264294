"""The peers announced to this node (``announce_peer``), served in ``get_peers`` replies.

Bounded (``max_torrents``, ``max_peers`` per torrent: the oldest go first) and expiring (30
minutes after the last announce). Pure: no reactor; ``now`` comes with every call.
"""

from __future__ import annotations

import random

__all__ = ["PEER_TTL", "PeerStore"]

PEER_TTL = 30 * 60.0


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

    def discard(self, info_hash: bytes, peer: bytes) -> None:
        """Forget one peer of a torrent (our own, once we stop serving it)."""
        d = self._t.get(info_hash)
        if d is not None:
            d.pop(peer, None)
            if not d:
                del self._t[info_hash]

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

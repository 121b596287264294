"""How the in-memory swarm store keeps peers, and how it picks peers for a reply.

Pure data structures (see :mod:`tgateway.tracker.memory` for the memory they take): an HTTP/UDP
peer is one int (:func:`peer_value`) in a dict keyed by its compact address, with the same keys
in a list for sampling; a WebTorrent peer is a :class:`WsPeer` keyed by peer_id.
:class:`PeerPicker` chooses the peers of a reply: the gateway's own first, then the other kind,
then the same kind, random among equals (or ranked by a :class:`~tgateway.tracker.core.PeerScorer`).
"""

from __future__ import annotations

from typing import Any

from tgateway.tracker.core import PeerScorer, Rng, WsSession

__all__ = ["PeerPicker", "Swarm", "WsPeer", "peer_expires", "peer_id_of", "peer_value"]

_ID_BITS = 160
_ID_MASK = (1 << _ID_BITS) - 1
_EXP_SHIFT = 192
_POS_MASK = 0xFFFFFFFF << _ID_BITS
_NOT_POS = ~_POS_MASK


def peer_value(peer_id: bytes, expires: float, position: int = 0) -> int:
    """How an HTTP/UDP peer is stored: ``expires`` (whole seconds) above its 32-bit position in
    the swarm's key list above the 160-bit peer_id.

    One int instead of an object: ints are not tracked by the garbage collector (nor is a dict
    holding only bytes keys and ints), so millions of peers add nothing to GC pauses, and an int
    costs less memory than an object plus a bytes peer_id. The position lets a peer leave the
    key list in O(1) (swap with the last key), so sampling never copies a swarm.
    """
    return (int(expires) << _EXP_SHIFT) | (position << _ID_BITS) | int.from_bytes(peer_id, "big")


def peer_expires(value: int) -> int:
    return value >> _EXP_SHIFT


def _insert(d: dict[bytes, int], keys: list[bytes], key: bytes, value: int) -> None:
    d[key] = value | (len(keys) << _ID_BITS)
    keys.append(key)


def _delete(d: dict[bytes, int], keys: list[bytes], key: bytes) -> None:
    """Remove ``key`` (which must be there) from the dict and, by swapping, from the list."""
    i = (d.pop(key) >> _ID_BITS) & 0xFFFFFFFF
    last = keys.pop()
    if i < len(keys):
        keys[i] = last
        d[last] = (d[last] & _NOT_POS) | (i << _ID_BITS)


def peer_id_of(value: int) -> bytes:
    return (value & _ID_MASK).to_bytes(20, "big")



class WsPeer:
    """A WebTorrent peer, reachable only through its socket."""

    __slots__ = ("session", "expires")

    def __init__(self, session: WsSession, expires: float) -> None:
        self.session = session
        self.expires = expires


class Swarm:
    """Peers of one torrent, split by family and by seeder/leecher."""

    __slots__ = (
        "seeds4", "leech4", "seeds6", "leech6", "ks4", "kl4", "ks6", "kl6",
        "wseeds", "wleech", "downloaded", "keys",
    )

    def __init__(self) -> None:
        # compact address -> peer_value(peer_id, expires, position in the matching key list)
        self.seeds4: dict[bytes, int] = {}
        self.leech4: dict[bytes, int] = {}
        self.seeds6: dict[bytes, int] = {}
        self.leech6: dict[bytes, int] = {}
        # the same keys as lists, for sampling by index
        self.ks4: list[bytes] = []
        self.kl4: list[bytes] = []
        self.ks6: list[bytes] = []
        self.kl6: list[bytes] = []
        self.wseeds: dict[str, WsPeer] = {}
        self.wleech: dict[str, WsPeer] = {}
        self.downloaded = 0
        # WebSocket peers: id(dict) -> list(dict), for sampling without copying the dict on
        # every announce; None whenever a WebSocket peer joins, leaves or changes kind.
        self.keys: dict[int, list[Any]] | None = None

    def seeders(self) -> int:
        return len(self.seeds4) + len(self.seeds6) + len(self.wseeds)

    def leechers(self) -> int:
        return len(self.leech4) + len(self.leech6) + len(self.wleech)

    def size(self) -> int:
        return (
            len(self.seeds4)
            + len(self.leech4)
            + len(self.seeds6)
            + len(self.leech6)
            + len(self.wseeds)
            + len(self.wleech)
        )



class PeerPicker:
    """Chooses up to ``n`` peers of a swarm for a requester (the order is documented in
    :mod:`tgateway.tracker.core`); randomness from ``rng``, or a ``scorer``'s ranking."""

    def __init__(self, rng: Rng, scorer: PeerScorer | None = None) -> None:
        self._rng = rng
        self._scorer = scorer

    def pick(
        self,
        swarm: Swarm,
        info_hash: bytes,
        seeds: dict[Any, Any],
        leech: dict[Any, Any],
        seed_keys: list[Any] | None,
        leech_keys: list[Any] | None,
        seed: bool,
        exclude: Any,
        n: int,
        local: dict[bytes, None] | None,
        keylen: int,
    ) -> list[Any]:
        out: list[Any] = []
        if local:
            for k in local:
                if len(k) == keylen and k != exclude:
                    out.append(k)
            n -= len(out)
        if seed:
            order = ((leech, leech_keys), (seeds, seed_keys))
        else:
            order = ((seeds, seed_keys), (leech, leech_keys))
        for d, keys in order:
            if n > 0 and d:
                got = self.sample(swarm, info_hash, d, keys, n, exclude)
                if local:
                    # A local peer that also announces normally must not appear twice.
                    got = [k for k in got if k not in local]
                if out:
                    out.extend(got)
                else:
                    out = got
                n -= len(got)
        return out

    def sample(
        self,
        swarm: Swarm,
        info_hash: bytes,
        d: dict[Any, Any],
        keys: list[Any] | None,
        n: int,
        exclude: Any,
    ) -> list[Any]:
        """Up to n keys of d except ``exclude``: random, or best-scored first with a scorer."""
        if self._scorer is not None:
            return self._ranked(info_hash, d, n, exclude)
        has_self = exclude in d
        m = len(d)
        if m - has_self <= n:
            everyone = list(d)
            if has_self:
                everyone.remove(exclude)
            return everyone
        # A window of n (+1) keys at a random offset of the (insertion-ordered) keys, wrapping
        # around: every peer is picked with the same probability, for one random number and
        # C-speed slicing (random.sample costs a Python-level call per pick). HTTP/UDP peers
        # keep their key list up to date; for WebSocket peers it is cached until they change.
        if keys is None:
            cache = swarm.keys
            if cache is None:
                cache = swarm.keys = {}
            keys = cache.get(id(d))
            if keys is None:
                keys = cache[id(d)] = list(d)
        want = n + has_self
        start = int(self._rng.random() * m)
        got = keys[start : start + want]
        if len(got) < want:
            got += keys[: want - len(got)]
        if has_self:
            if exclude in got:
                got.remove(exclude)
            else:
                got.pop()
        return got

    def _ranked(self, info_hash: bytes, d: dict[Any, Any], n: int, exclude: Any) -> list[Any]:
        score = self._scorer.score  # type: ignore[union-attr]
        rnd = self._rng.random
        ranked = sorted(
            ((score(info_hash, exclude, k), rnd(), k) for k in d if k != exclude),
            key=lambda t: (-t[0], t[1]),
        )
        return [t[2] for t in ranked[:n]]

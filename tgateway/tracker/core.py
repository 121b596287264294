"""The tracker's core vocabulary and the swarm store seam.

The three front ends (HTTP, UDP, WebSocket) parse their wire format, call a :class:`SwarmStore`
with plain values and ``now``, and encode what it returns. Nothing here imports the reactor, a
transport or a Deferred. :class:`~tgateway.tracker.memory.MemorySwarmStore` is the store of one
process; a store shared by several processes (Redis) implements the same protocol.

Peers: HTTP and UDP peers are compact addresses (``ip`` + ``port`` big-endian, 6 bytes for IPv4,
18 for IPv6) taken from the connection, so a client can only create, refresh or remove entries at
its own address; WebSocket (WebTorrent) peers are peer_ids owned by the :class:`WsSession` (socket)
that announced them. Selection never returns the requester, puts the gateway's own peers
(``add_local_peer``) first, then peers of the other kind (seeders for leechers, leechers for
seeders), then the same kind, random among equals (a :class:`PeerScorer` can rank them).

:class:`ConnectionIds`: BEP 15 connection ids without per-client state.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

__all__ = [
    "EVENT_NONE",
    "EVENT_COMPLETED",
    "EVENT_STARTED",
    "EVENT_STOPPED",
    "AnnounceResult",
    "TrackerError",
    "Rng",
    "PeerScorer",
    "WsSession",
    "SwarmStore",
    "LocalPeers",
    "ConnectionIds",
    "DenyList",
]

# BEP 15 numbering; HTTP's "paused" (BEP 21) and "" map to EVENT_NONE.
EVENT_NONE = 0
EVENT_COMPLETED = 1
EVENT_STARTED = 2
EVENT_STOPPED = 3

#: Most info-hashes answered in one scrape (a UDP reply of 8 + 12 * 74 bytes fits any MTU).
MAX_SCRAPE = 74
#: How many forwarded-but-unanswered offers a WebSocket session remembers (at least half as many:
#: the older half is forgotten when it is full).
MAX_PENDING_OFFERS = 256
#: Upper bound on offers forwarded for one announce (bittorrent-tracker uses 50 as well).
MAX_WS_OFFERS = 50
#: Swarm memberships one WebSocket connection may hold (WebTorrent uses one per torrent).
MAX_WS_ENTRIES = 1000


class TrackerError(Exception):
    """A request the tracker refuses; ``message`` becomes the ``failure reason``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DenyList:
    """The info-hashes the tracker refuses, one mechanism for every front end: the static
    ``tracker.deny_list`` and the gateway's block list (``blocked``, a function answering from
    memory, see :mod:`tgateway.blocklist`). ``info_hash in deny`` is what the swarm store asks on
    every announce and scrape; an empty list costs one set lookup."""

    __slots__ = ("static", "blocked")

    def __init__(self, static: Iterable[bytes] = (),
                 blocked: Callable[[bytes], bool] | None = None) -> None:
        self.static = frozenset(static)
        self.blocked = blocked

    def __contains__(self, info_hash: object) -> bool:
        if info_hash in self.static:
            return True
        return self.blocked is not None and isinstance(info_hash, bytes) and self.blocked(info_hash)

    def __bool__(self) -> bool:
        return bool(self.static) or self.blocked is not None


class Rng(Protocol):
    """The part of :class:`random.Random` the store uses (injected for tests)."""

    def sample(self, population: Sequence[Any], k: int) -> list[Any]: ...

    def shuffle(self, x: list[Any]) -> None: ...

    def random(self) -> float: ...


class PeerScorer(Protocol):
    """Ranks candidate peers for a requester: higher is better (proximity, measured speed...).

    ``requester`` and ``candidate`` are compact addresses for HTTP/UDP and peer_ids for WebSocket.
    """

    def score(self, info_hash: bytes, requester: Any, candidate: Any) -> float: ...



class WsSession:
    """One WebSocket connection: what it announced, and offers forwarded to it.

    ``handle`` is the adapter's object (the protocol); the store never calls it.
    ``entries`` maps (info_hash, peer_id) of the swarms this socket is in; ``pending`` maps
    offering peer_id + offer_id -> info_hash (as latin-1 text) + recipient peer_id for offers
    forwarded to it, so that only answers to offers the tracker really forwarded are routed.
    (Strings, not tuples: they are not tracked by the garbage collector, and a busy socket holds
    hundreds. peer_ids and offer_ids are 20 characters, so the concatenations are unambiguous.)
    ``congested`` is set by the adapter while the socket does not take what is written to it:
    offers and answers are best effort, and none is sent to a congested socket.
    """

    __slots__ = ("handle", "entries", "pending", "closed", "congested")

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.entries: dict[tuple[bytes, str], None] = {}
        self.pending: dict[str, str] = {}
        self.closed = False
        self.congested = False



#: announce() result: (complete, incomplete, downloaded, peers4, peers6), peers as compact keys.
AnnounceResult = tuple[int, int, int, list[bytes], list[bytes]]


class SwarmStore(Protocol):
    """All swarms of a tracker: what the front ends and the service ask of them. Every method
    that changes or reads peers takes ``now``; refusals raise :class:`TrackerError`."""

    @property
    def max_peers(self) -> int:
        """Peers kept per torrent (a full swarm still answers)."""

    @property
    def ws_dropped(self) -> int:
        """Offers and answers not sent because the socket was congested."""

    def announce(
        self,
        info_hash: bytes,
        peer_id: bytes,
        key: bytes,
        left: int,
        event: int,
        numwant: int,
        now: float,
        want4: bool = True,
        want6: bool = True,
    ) -> AnnounceResult:
        """Record an HTTP/UDP announce from compact address ``key``; pick peers for it."""

    def scrape(self, info_hashes: Sequence[bytes]) -> list[tuple[int, int, int]]:
        """(complete, downloaded, incomplete) for each info-hash; zeros for unknown ones."""

    def scrape_all(self) -> list[tuple[bytes, int, int, int]]:
        """(info_hash, complete, downloaded, incomplete) for every swarm (full scrape)."""

    def peer_ids(self, info_hash: bytes) -> dict[bytes, bytes]:
        """compact address -> peer_id of the HTTP/UDP peers of a torrent."""

    def add_local_peer(self, info_hash: bytes, key: bytes) -> None:
        """The gateway seeds this torrent at ``key``: list it first, never expire it."""

    def remove_local_peer(self, info_hash: bytes, key: bytes) -> None: ...

    def ws_announce(
        self,
        session: WsSession,
        info_hash: bytes,
        peer_id: str,
        seed: bool,
        event: int,
        offer_ids: Sequence[str],
        now: float,
    ) -> tuple[int, int, list[WsSession]]:
        """Record a WebTorrent announce; (complete, incomplete, where each offer goes)."""

    def ws_answer(
        self, session: WsSession, info_hash: bytes, peer_id: str, to_peer_id: str, offer_id: str
    ) -> WsSession | None:
        """Where an answer goes, if ``session`` really received that offer."""

    def ws_close(self, session: WsSession) -> None:
        """The socket closed: ``stopped`` for each of its swarms."""

    def expire(self, now: float) -> int:
        """Drop peers not heard from in time; returns how many."""

    def expire_some(self, now: float, min_peers: int = 20_000, cycle: int = 30) -> int:
        """An incremental :meth:`expire` (a slice of the swarms per call)."""

    def swarm_count(self) -> int: ...

    def peer_count(self) -> int: ...


class LocalPeers(Protocol):
    """The built-in tracker's face for the gateway's own BitTorrent peer: listed first for
    every torrent it seeds, never expired (see :meth:`SwarmStore.add_local_peer`)."""

    def add_local_peer(self, info_hash: bytes, ip: str, port: int) -> None:
        """Raises ValueError for an address the tracker cannot list."""

    def remove_local_peer(self, info_hash: bytes, ip: str, port: int) -> None: ...


class ConnectionIds:
    """BEP 15 connection ids without per-client state.

    An id is 16 bits of the issue time (seconds mod 65536) followed by a 48-bit keyed BLAKE2b MAC
    of the client address and that time. It is valid for ``lifetime`` seconds (BEP 15: 2 minutes).
    The key rotates every ``rotate`` seconds; ids made with the previous key stay valid.
    """

    def __init__(
        self,
        randbytes: Callable[[int], bytes],
        now: float,
        lifetime: int = 120,
        rotate: float = 3600,
    ) -> None:
        """``randbytes`` makes the MAC keys: pass ``os.urandom`` (a seeded PRNG whose output
        the tracker also reveals through peer selection would make the keys guessable)."""
        if rotate < lifetime:
            raise ValueError("the key must live at least as long as the ids it makes")
        self._randbytes = randbytes
        self.lifetime = lifetime
        self._rotate = rotate
        self._key = randbytes(32)
        self._old_key = self._key
        self._rotate_at = now + rotate

    def _mac(self, key: bytes, addr: bytes, t: int) -> int:
        digest = hashlib.blake2b(addr + t.to_bytes(2, "big"), key=key, digest_size=6).digest()
        return int.from_bytes(digest, "big")

    def _maybe_rotate(self, now: float) -> None:
        if now >= self._rotate_at:
            if now >= self._rotate_at + self._rotate:
                # Idle for more than a period: nothing issued with either key is still valid.
                self._old_key = self._randbytes(32)
            else:
                self._old_key = self._key
            self._key = self._randbytes(32)
            self._rotate_at = now + self._rotate

    def issue(self, addr: bytes, now: float) -> int:
        """A connection id for the client at ``addr`` (any bytes naming its address and port)."""
        self._maybe_rotate(now)
        t = int(now) & 0xFFFF
        return (t << 48) | self._mac(self._key, addr, t)

    def check(self, cid: int, addr: bytes, now: float) -> bool:
        """True if ``cid`` was issued to ``addr`` less than ``lifetime`` seconds ago."""
        self._maybe_rotate(now)
        t = cid >> 48
        if (int(now) - t) & 0xFFFF > self.lifetime:
            return False
        mac = cid & 0xFFFFFFFFFFFF
        if hmac.compare_digest(
            self._mac(self._key, addr, t).to_bytes(6, "big"), mac.to_bytes(6, "big")
        ):
            return True
        return hmac.compare_digest(
            self._mac(self._old_key, addr, t).to_bytes(6, "big"), mac.to_bytes(6, "big")
        )

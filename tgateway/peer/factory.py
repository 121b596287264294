"""What the gateway's peer connections share: the peer's server factory.

:class:`PeerFactory` holds what connections share: the torrents by info-hash, the chunk reader,
the choker, the upload rate bucket, and the connection limits. A connection is *unidentified*
until its BitTorrent handshake is complete (plaintext, or after the encryption handshake);
unidentified connections have their own budget (``max_unidentified``) and their own deadline
(``SessionConfig.handshake_timeout``, 10 s), apart from ``max_connections``, which counts
identified ones only. A new connection is accepted while identified slots are free (and its
address has fewer than ``max_connections_per_ip``); when the unidentified budget is full, the
oldest unidentified connection of the address holding the most of them is dropped to make room,
so a flood of silent connections from a few addresses evicts itself and never keeps a real peer
out. A handshake for an info-hash the store does not have is closed at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.ratelimit import TokenBucket
from tgateway.storage.api import BlockReader
from tgateway.storage.model import StoredFile

from . import wire
from .choker import Choker
from .core import SessionConfig
from .mse import req2_hash
from .protocol import PeerProtocol

__all__ = ["PeerFactory"]


class PeerFactory(protocol.ServerFactory):
    """Shared state of every peer connection (see the module docstring)."""

    log = Logger()
    noisy = False

    def __init__(
        self,
        *,
        clock: IReactorTime,
        reader: BlockReader,
        session_config: SessionConfig,
        has_info_hash: Callable[[bytes], bool],
        get_by_info_hash: Callable[[str], Deferred[StoredFile | None]],
        max_connections: int = 200,
        max_connections_per_ip: int = 8,
        max_unidentified: int | None = None,
        max_uploads: int = 8,
        upload_rate: int = 0,
        rng: random.Random | None = None,
        info_hashes: Callable[[], Iterable[bytes]] | None = None,
        encryption: bool = True,
    ) -> None:
        self.clock = clock
        self.reader = reader
        self.session_config = session_config
        self.has_info_hash = has_info_hash
        self.get_by_info_hash = get_by_info_hash
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        # connections without a complete handshake: a quarter of max_connections, at least 8
        self.max_unidentified = (
            max_unidentified if max_unidentified is not None else max(8, max_connections // 4))
        self.choker = Choker(max_uploads, rng or random.Random())
        self.bucket: TokenBucket | None = None
        if upload_rate:
            burst = max(upload_rate / 4, 4 * wire.BLOCK_MAX)
            self.bucket = TokenBucket.full(upload_rate, burst, clock.seconds())
        self.files: dict[bytes, StoredFile] = {}
        # MSE: torrents by HASH('req2', info-hash), rebuilt from ``info_hashes`` at most every 10 s
        self.info_hashes = info_hashes
        self.encryption = encryption
        self._req2: dict[bytes, bytes] = {}
        self._req2_built = float("-inf")
        self.connections: dict[PeerProtocol, None] = {}
        self.per_ip: dict[str, int] = {}
        # unidentified connections by address, oldest first
        self.unidentified: dict[str, dict[PeerProtocol, None]] = {}
        self.unidentified_count = 0
        self.established = 0
        self.refused = 0
        self.evicted = 0
        self.bytes_sent = 0
        self.closes: dict[str, int] = {}

    # ------------------------------------------------------------------ torrents

    def add_file(self, f: StoredFile) -> None:
        self.files[f.info_hash_bytes] = f
        self._req2[req2_hash(f.info_hash_bytes)] = f.info_hash_bytes

    def find_skey(self, req2: bytes) -> bytes | None:
        """The info-hash an encrypted handshake names by HASH('req2', info-hash), if ours."""
        ih = self._req2.get(req2)
        if ih is None and self.info_hashes is not None:
            now = self.clock.seconds()
            if now - self._req2_built >= 10.0:
                self._req2_built = now
                self._req2 = {req2_hash(h): h for h in self.info_hashes()}
                ih = self._req2.get(req2)
        if ih is not None and not self.has_info_hash(ih):
            return None
        return ih

    def remove_file(self, f: StoredFile) -> None:
        """Forget a deleted file and drop its connections."""
        ih = f.info_hash_bytes
        self.files.pop(ih, None)
        for conn in list(self.connections):
            s = conn.session
            if s is not None and s.handshake is not None and s.handshake.info_hash == ih:
                s.close("file deleted")

    def lookup(self, info_hash: bytes) -> StoredFile | Deferred[StoredFile | None] | None:
        if not self.has_info_hash(info_hash):
            return None
        f = self.files.get(info_hash)
        if f is not None:
            return f

        def keep(f: StoredFile | None) -> StoredFile | None:
            if f is not None:
                self.files[info_hash] = f
            return f

        return self.get_by_info_hash(info_hash.hex()).addCallback(keep)

    # ------------------------------------------------------------------ connections

    def buildProtocol(self, addr: Any) -> PeerProtocol | None:
        host = getattr(addr, "host", "")
        if self.established >= self.max_connections or (
            self.per_ip.get(host, 0) >= self.max_connections_per_ip
        ):
            self.refused += 1
            return None
        if self.unidentified_count >= self.max_unidentified and self.unidentified:
            self._evict_one()
        p = PeerProtocol(self, host)
        p.factory = self
        return p

    def _evict_one(self) -> None:
        """Drop the oldest unidentified connection of the address that holds the most."""
        conns = max(self.unidentified.values(), key=len)
        victim = next(iter(conns))
        self._forget_unidentified(victim)
        self.evicted += 1
        victim.evict("evicted: too many connections without a handshake")

    def _forget_unidentified(self, p: PeerProtocol) -> bool:
        conns = self.unidentified.get(p.host)
        if conns is None or conns.pop(p, 0) is not None:
            return False
        self.unidentified_count -= 1
        if not conns:
            del self.unidentified[p.host]
        return True

    def connection_made(self, p: PeerProtocol) -> None:
        self.connections[p] = None
        self.per_ip[p.host] = self.per_ip.get(p.host, 0) + 1
        self.unidentified.setdefault(p.host, {})[p] = None
        self.unidentified_count += 1

    def identified(self, p: PeerProtocol) -> bool:
        """``p`` completed its handshake: give it an established slot (False: none is free)."""
        if not self._forget_unidentified(p) or self.established >= self.max_connections:
            return False
        self.established += 1
        p.identified = True
        return True

    def session_started(self, p: PeerProtocol) -> None:
        if p.session is not None and not p.session.closed:
            self.choker.add(p.session)

    def connection_lost(self, p: PeerProtocol) -> None:
        if self.connections.pop(p, 0) is None:
            n = self.per_ip.get(p.host, 1) - 1
            if n <= 0:
                self.per_ip.pop(p.host, None)
            else:
                self.per_ip[p.host] = n
            self._forget_unidentified(p)
            if p.identified:
                p.identified = False
                self.established -= 1
        if p.session is not None:
            self.choker.remove(p.session, self.clock.seconds())

    def log_close(self, p: PeerProtocol, reason: str) -> None:
        key = reason.split(":", 1)[0]
        self.closes[key] = self.closes.get(key, 0) + 1

    def rate_wait(self, length: int, now: float) -> float:
        if self.bucket is None:
            return 0.0
        return self.bucket.take(now, length)

    # ------------------------------------------------------------------ timers

    def tick(self) -> None:
        now = self.clock.seconds()
        for p in list(self.connections):
            if p.session is not None:
                p.session.tick(now)

    def rechoke(self) -> None:
        self.choker.rechoke(self.clock.seconds())

    def close_all(self) -> None:
        for p in list(self.connections):
            transport: Any = p.transport
            if transport is not None:
                transport.abortConnection()

    def status(self) -> dict[str, Any]:
        sessions = [p.session for p in self.connections if p.session is not None]
        return {
            "connections": len(self.connections),
            "established": self.established,
            "unidentified": self.unidentified_count,
            "evicted": self.evicted,
            "unchoked": sum(1 for s in sessions if not s.am_choking),
            "interested": sum(1 for s in sessions if s.peer_interested),
            "refused": self.refused,
            "bytes_sent": self.bytes_sent,
            "closes": dict(self.closes),
            "torrents_cached": len(self.files),
        }

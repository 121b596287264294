"""Upload slots (BitTorrent's choking algorithm): who the gateway's peer uploads to.

Pure: takes ``now``, no reactor; the factory calls :meth:`Choker.rechoke` every ``interval``
seconds and tells it when peers come, go, or change their interest.
"""

from __future__ import annotations

import random

from .core import PeerSession

__all__ = ["Choker"]


class Choker:
    """Upload slots: the ``max_uploads`` interested peers we upload to fastest stay unchoked,
    plus one optimistic unchoke that rotates every ``optimistic_interval`` seconds.

    A peer becoming interested takes a free slot at once; ``rechoke`` (every ``interval``
    seconds) re-ranks by the bytes sent to each peer during the last round.
    """

    def __init__(
        self,
        max_uploads: int,
        rng: random.Random,
        *,
        interval: float = 10.0,
        optimistic_interval: float = 30.0,
    ) -> None:
        self.max_uploads = max_uploads
        self.rng = rng
        self.interval = interval
        self.optimistic_interval = optimistic_interval
        self.peers: dict[PeerSession, None] = {}
        self.optimistic: PeerSession | None = None
        self.optimistic_since = float("-inf")

    def _regular(self) -> int:
        return sum(1 for p in self.peers if not p.am_choking and p is not self.optimistic)

    def add(self, peer: PeerSession) -> None:
        self.peers[peer] = None

    def remove(self, peer: PeerSession, now: float) -> None:
        self.peers.pop(peer, None)
        if peer is self.optimistic:
            self.optimistic = None
            peer.optimistic = False
        if not peer.am_choking:
            peer.am_choking = True  # gone: its slot is free
        self._fill(now)

    def interest_changed(self, peer: PeerSession, now: float) -> None:
        if peer not in self.peers:
            return
        if peer.peer_interested:
            if peer.am_choking and self._regular() < self.max_uploads:
                peer.set_choked(False, now)
        elif not peer.am_choking:
            if peer is self.optimistic:
                self.optimistic = None
                peer.optimistic = False
            peer.set_choked(True, now)
            self._fill(now)

    def _fill(self, now: float) -> None:
        """Give free regular slots to waiting interested peers (fastest first)."""
        free = self.max_uploads - self._regular()
        if free <= 0:
            return
        waiting = [p for p in self.peers if p.am_choking and p.peer_interested and not p.closed]
        waiting.sort(key=lambda p: p.round_uploaded, reverse=True)
        for p in waiting[:free]:
            p.set_choked(False, now)

    def rechoke(self, now: float) -> None:
        """One choking round."""
        live = [p for p in self.peers if not p.closed]
        interested = [p for p in live if p.peer_interested]
        self.rng.shuffle(interested)  # ties broken at random
        interested.sort(key=lambda p: p.round_uploaded, reverse=True)
        regular = interested[: self.max_uploads]
        rest = interested[self.max_uploads :]
        opt = self.optimistic
        if (
            opt is None
            or opt not in self.peers
            or opt.closed
            or not opt.peer_interested
            or opt in regular
            or now - self.optimistic_since >= self.optimistic_interval
        ):
            if opt is not None:
                opt.optimistic = False
            choices = [p for p in rest if p is not opt] or rest
            opt = self.rng.choice(choices) if choices else None
            self.optimistic = opt
            self.optimistic_since = now
            if opt is not None:
                opt.optimistic = True
        unchoke = set(regular)
        if opt is not None:
            unchoke.add(opt)
        for p in live:
            p.set_choked(p not in unchoke, now)
            p.round_uploaded = 0

"""The in-memory swarm store: announce, scrape and expiry as plain functions of state and ``now``.

Implements :class:`~tgateway.tracker.core.SwarmStore` for one process (a store shared by several
processes, in Redis say, would implement the same face). Nothing here imports the reactor, a
transport or a Deferred.

Peers
    * HTTP and UDP peers are keyed by their compact address (``ip`` + ``port`` big-endian, 6 bytes
      for IPv4, 18 for IPv6). The address comes from the connection, so a client can only create,
      refresh or remove entries at its own address. The key doubles as the pre-encoded compact peer
      string: a reply is ``b"".join(keys)``.
    * WebSocket (WebTorrent) peers are keyed by peer_id (a 20-character latin-1 ``str``, as it
      arrives in JSON) and belong to the :class:`WsSession` (socket) that announced them; another
      socket cannot refresh, remove or take over a live entry. Closing a socket counts as
      ``stopped`` for every swarm it announced in.
    * A swarm keeps seeders and leechers in separate dicts per family (v4, v6, ws), so counts are
      ``len()`` and selection prefers the other kind without scanning.
    * Peers expire ``interval + grace`` seconds after their last announce (:meth:`SwarmStore.expire`).

Memory per stored HTTP/UDP peer: the compact key (a 6-byte bytes object, 39 bytes), one int holding
expiry and peer_id (:func:`peer_value`, 52 bytes) and the dict slot (~100 bytes amortised with the
dict's spare room), about 200 bytes; none of it is tracked by the garbage collector. Measured
figures are in ``docs/benchmarks.md``. Counts are capped by ``max_peers_per_torrent`` and
``max_torrents``.

Selection never returns the requester, puts the gateway's own peers (``add_local_peer``) first,
then peers of the other kind (seeders for leechers, leechers for seeders), then the same kind,
random among equals. A :class:`PeerScorer` can replace the random order within each kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_STOPPED,
    MAX_PENDING_OFFERS,
    MAX_WS_ENTRIES,
    MAX_WS_OFFERS,
    AnnounceResult,
    DenyList,
    PeerScorer,
    Rng,
    TrackerError,
    WsSession,
)
from tgateway.tracker.swarm import (
    _EXP_SHIFT,
    _POS_MASK,
    PeerPicker,
    Swarm,
    WsPeer,
    _delete,
    _insert,
    peer_id_of,
)

__all__ = ["MemorySwarmStore"]

_EMPTY: dict[Any, Any] = {}


class MemorySwarmStore:
    """All swarms of the tracker, in this process's memory (implements
    :class:`~tgateway.tracker.core.SwarmStore`). Every method takes ``now``; randomness comes
    from ``rng``."""

    def __init__(
        self,
        rng: Rng,
        *,
        interval: float = 1800,
        ws_interval: float = 120,
        grace: float = 300,
        max_peers_per_torrent: int = 5000,
        max_torrents: int = 100_000,
        gateway_only: bool = False,
        is_known_info_hash: Callable[[bytes], bool] | None = None,
        deny_list: Iterable[bytes] | DenyList = (),
        scorer: PeerScorer | None = None,
    ) -> None:
        self.interval = interval
        self.ws_interval = ws_interval
        self.grace = grace
        self.max_peers = max_peers_per_torrent
        self.max_torrents = max_torrents
        self.gateway_only = gateway_only
        self._is_known = is_known_info_hash
        # tracker.deny_list and the block list: one check (``in``) for every front end
        self.deny = deny_list if isinstance(deny_list, DenyList) else DenyList(deny_list)
        picker = PeerPicker(rng, scorer)
        self._pick = picker.pick
        self._sample = picker.sample
        self.swarms: dict[bytes, Swarm] = {}
        # The gateway's own peers: info_hash -> {compact key: None}. Never expire.
        self.local: dict[bytes, dict[bytes, None]] = {}
        self._ttl = interval + grace
        self._ws_ttl = ws_interval + grace
        self._sweep: list[bytes] = []
        self._this_pass = 0
        self._last_pass = 0
        self.ws_dropped = 0  # offers and answers not sent to a congested socket

    # ------------------------------------------------------------------ policy

    def check(self, info_hash: bytes) -> None:
        """Raise TrackerError if this info-hash may not be tracked (deny list and block list,
        mode)."""
        if info_hash in self.deny:
            raise TrackerError("info_hash is not allowed on this tracker")
        if self.gateway_only and info_hash not in self.local:
            known = self._is_known
            if known is None or not known(info_hash):
                raise TrackerError("unregistered torrent: this tracker serves only the gateway's files")

    def _swarm_for_update(self, info_hash: bytes) -> Swarm:
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            self.check(info_hash)
            if len(self.swarms) >= self.max_torrents and not self._evict_empty():
                raise TrackerError("tracker is full, try again later")
            swarm = self.swarms[info_hash] = Swarm()
        elif self.deny and info_hash in self.deny:
            raise TrackerError("info_hash is not allowed on this tracker")
        return swarm

    def _evict_empty(self) -> bool:
        for ih, swarm in self.swarms.items():
            if swarm.size() == 0 and ih not in self.local:
                del self.swarms[ih]
                return True
        return False

    # ------------------------------------------------------------------ HTTP / UDP

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
        """Record an HTTP/UDP announce from compact address ``key`` and pick peers for it.

        Returns (complete, incomplete, downloaded, peers4, peers6); peers are compact keys of the
        wanted families. Raises TrackerError for refused info-hashes, port 0 or a full tracker.
        """
        if key[-2:] == b"\x00\x00":
            raise TrackerError("invalid port 0")
        swarm = self._swarm_for_update(info_hash)
        v6 = len(key) != 6
        if v6:
            seeds, leech, ks, kl = swarm.seeds6, swarm.leech6, swarm.ks6, swarm.kl6
        else:
            seeds, leech, ks, kl = swarm.seeds4, swarm.leech4, swarm.ks4, swarm.kl4
        if event == EVENT_STOPPED:
            if key in seeds:
                _delete(seeds, ks, key)
            elif key in leech:
                _delete(leech, kl, key)
            return (
                swarm.seeders() + len(self.local.get(info_hash, _EMPTY)),
                swarm.leechers(),
                swarm.downloaded,
                [],
                [],
            )
        seed = left == 0
        value = (int(now + self._ttl) << _EXP_SHIFT) | int.from_bytes(peer_id, "big")
        if seed:
            mine, mkeys, other, okeys = seeds, ks, leech, kl
        else:
            mine, mkeys, other, okeys = leech, kl, seeds, ks
        old = mine.get(key)
        if old is not None:
            mine[key] = value | (old & _POS_MASK)
        elif key in other:
            # Changed kind: a leecher that finished counts as one download.
            _delete(other, okeys, key)
            if seed:
                swarm.downloaded += 1
            _insert(mine, mkeys, key, value)
        elif swarm.size() < self.max_peers:
            _insert(mine, mkeys, key, value)
            if event == EVENT_COMPLETED:
                swarm.downloaded += 1
        local = self.local.get(info_hash)
        s4, l4, s6, l6 = swarm.seeds4, swarm.leech4, swarm.seeds6, swarm.leech6
        complete = len(s4) + len(s6) + len(swarm.wseeds)
        if local:
            complete += len(local)
        peers4: list[bytes] = []
        peers6: list[bytes] = []
        if numwant > 0:
            if want4 and (s4 or l4 or local):
                peers4 = self._pick(
                    swarm, info_hash, s4, l4, swarm.ks4, swarm.kl4, seed, key, numwant, local, 6
                )
            if want6 and (s6 or l6 or local):
                peers6 = self._pick(
                    swarm, info_hash, s6, l6, swarm.ks6, swarm.kl6, seed, key, numwant, local, 18
                )
        return complete, len(l4) + len(l6) + len(swarm.wleech), swarm.downloaded, peers4, peers6

    def peer_ids(self, info_hash: bytes) -> dict[bytes, bytes]:
        """compact address -> peer_id of the HTTP/UDP peers of a torrent (non-compact replies)."""
        swarm = self.swarms.get(info_hash)
        ids: dict[bytes, bytes] = {}
        if swarm is not None:
            for d in (swarm.seeds4, swarm.leech4, swarm.seeds6, swarm.leech6):
                for k, v in d.items():
                    ids[k] = peer_id_of(v)
        return ids

    def scrape(self, info_hashes: Sequence[bytes]) -> list[tuple[int, int, int]]:
        """(complete, downloaded, incomplete) for each info-hash; zeros for unknown ones."""
        out = []
        swarms = self.swarms
        local = self.local
        for ih in info_hashes:
            swarm = swarms.get(ih)
            nlocal = len(local[ih]) if ih in local else 0
            if swarm is None or ih in self.deny:
                out.append((nlocal, 0, 0))
            else:
                out.append((swarm.seeders() + nlocal, swarm.downloaded, swarm.leechers()))
        return out

    def scrape_all(self) -> list[tuple[bytes, int, int, int]]:
        """(info_hash, complete, downloaded, incomplete) for every swarm (full scrape)."""
        hashes = list(self.swarms)
        hashes.extend(ih for ih in self.local if ih not in self.swarms)
        return [(ih, *t) for ih, t in zip(hashes, self.scrape(hashes), strict=True)]

    # ------------------------------------------------------------------ the gateway's own peer

    def add_local_peer(self, info_hash: bytes, key: bytes) -> None:
        """The gateway seeds this torrent at ``key``: list it first, always, never expire it."""
        self.local.setdefault(info_hash, {})[key] = None

    def remove_local_peer(self, info_hash: bytes, key: bytes) -> None:
        peers = self.local.get(info_hash)
        if peers is not None:
            peers.pop(key, None)
            if not peers:
                del self.local[info_hash]

    # ------------------------------------------------------------------ WebSocket

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
        """Record a WebTorrent announce and choose where its offers go.

        Returns (complete, incomplete, targets): ``targets[i]`` receives offer ``offer_ids[i]``
        (fewer targets than offers when the swarm is small, or when picked peers are congested:
        those get no offer). Each forwarded offer is remembered in the target's session so its
        answer can be routed back. Raises TrackerError.
        """
        swarm = self._swarm_for_update(info_hash)
        wseeds, wleech = swarm.wseeds, swarm.wleech
        peer = wseeds.get(peer_id) or wleech.get(peer_id)
        if peer is not None and peer.session is not session:
            if not peer.session.closed and peer.expires > now:
                raise TrackerError("peer_id is in use by another connection")
            self._ws_remove(swarm, info_hash, peer_id)
            peer = None
        if event == EVENT_STOPPED:
            if peer is not None:
                self._ws_remove(swarm, info_hash, peer_id)
            return swarm.seeders() + len(self.local.get(info_hash, _EMPTY)), swarm.leechers(), []
        expires = now + self._ws_ttl
        mine, other = (wseeds, wleech) if seed else (wleech, wseeds)
        if peer is not None:
            peer.expires = expires
            if peer_id not in mine:
                del other[peer_id]
                mine[peer_id] = peer
                swarm.keys = None
                if seed:
                    swarm.downloaded += 1
        elif swarm.size() < self.max_peers:
            if len(session.entries) >= MAX_WS_ENTRIES:
                raise TrackerError("too many torrents on one connection")
            mine[peer_id] = WsPeer(session, expires)
            swarm.keys = None
            session.entries[(info_hash, peer_id)] = None
            if event == EVENT_COMPLETED:
                swarm.downloaded += 1
        targets: list[WsSession] = []
        n = len(offer_ids)
        if n:
            if n > MAX_WS_OFFERS:
                n = MAX_WS_OFFERS
            # _pick for WebSocket peers (no local peers): the other kind first, then the same.
            first, second = (wleech, wseeds) if seed else (wseeds, wleech)
            ih_text = info_hash.decode("latin-1")
            for d in (first, second):
                if not d:
                    continue
                for to_id in self._sample(swarm, info_hash, d, None, n, peer_id):
                    target = d[to_id].session
                    n -= 1
                    if target.congested:
                        self.ws_dropped += 1
                        continue
                    pending = target.pending
                    if len(pending) >= MAX_PENDING_OFFERS:
                        # Forget the older half at once. (One at a time, each next(iter())
                        # walks past the holes that earlier deletions left at the front.)
                        target.pending = pending = dict(
                            islice(pending.items(), MAX_PENDING_OFFERS // 2, None)
                        )
                    pending[peer_id + offer_ids[len(targets)]] = ih_text + to_id
                    targets.append(target)
                if n <= 0:
                    break
        local = self.local.get(info_hash) if self.local else None
        complete = len(swarm.seeds4) + len(swarm.seeds6) + len(wseeds)
        if local:
            complete += len(local)
        return complete, len(swarm.leech4) + len(swarm.leech6) + len(wleech), targets

    def ws_answer(
        self, session: WsSession, info_hash: bytes, peer_id: str, to_peer_id: str, offer_id: str
    ) -> WsSession | None:
        """Where an answer goes: the offering peer's session, if this session really received
        that offer (same info-hash, same recipient peer_id) and the offerer is still there and
        not congested."""
        key = to_peer_id + offer_id
        pending = session.pending
        if pending.get(key) != info_hash.decode("latin-1") + peer_id:
            return None
        del pending[key]
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return None
        peer = swarm.wseeds.get(to_peer_id) or swarm.wleech.get(to_peer_id)
        if peer is None or peer.session.closed:
            return None
        if peer.session.congested:
            self.ws_dropped += 1
            return None
        return peer.session

    def ws_close(self, session: WsSession) -> None:
        """The socket closed: ``stopped`` for each of its swarms."""
        session.closed = True
        session.pending.clear()
        for info_hash, peer_id in list(session.entries):
            swarm = self.swarms.get(info_hash)
            if swarm is not None:
                self._ws_remove(swarm, info_hash, peer_id, session)
        session.entries.clear()

    def _ws_remove(
        self, swarm: Swarm, info_hash: bytes, peer_id: str, only: WsSession | None = None
    ) -> None:
        peer = swarm.wseeds.get(peer_id) or swarm.wleech.get(peer_id)
        if peer is None or (only is not None and peer.session is not only):
            return
        swarm.wseeds.pop(peer_id, None)
        swarm.wleech.pop(peer_id, None)
        swarm.keys = None
        peer.session.entries.pop((info_hash, peer_id), None)

    # ------------------------------------------------------------------ expiry

    def expire(self, now: float) -> int:
        """Drop peers whose last announce is older than interval + grace, and swarms left with
        neither peers nor a download count. Returns how many peers were dropped."""
        self._sweep = []
        return self._expire_swarms(list(self.swarms), now)

    def expire_some(self, now: float, min_peers: int = 20_000, cycle: int = 30) -> int:
        """Incremental :meth:`expire`, resuming where the last call stopped: each call looks at
        whole swarms until it has seen ``1/cycle`` of the peers of the previous full pass (at
        least ``min_peers``), so a pass takes about ``cycle`` calls and no call stalls the
        reactor for long (~20,000 peers are ~2 ms)."""
        if not self._sweep:
            self._sweep = list(self.swarms)
            self._last_pass, self._this_pass = self._this_pass, 0
        budget = max(min_peers, self._last_pass // cycle)
        seen = 0
        batch = []
        sweep = self._sweep
        swarms = self.swarms
        while sweep and seen < budget:
            ih = sweep.pop()
            swarm = swarms.get(ih)
            if swarm is not None:
                seen += swarm.size() + 1
                batch.append(ih)
        self._this_pass += seen
        return self._expire_swarms(batch, now)

    def _expire_swarms(self, hashes: list[bytes], now: float) -> int:
        dropped = 0
        dead_swarms = []
        swarms = self.swarms
        for ih in hashes:
            swarm = swarms.get(ih)
            if swarm is None:
                continue
            for d, keys in (
                (swarm.seeds4, swarm.ks4),
                (swarm.leech4, swarm.kl4),
                (swarm.seeds6, swarm.ks6),
                (swarm.leech6, swarm.kl6),
            ):
                if d:
                    old = [k for k, v in d.items() if v >> _EXP_SHIFT <= now]
                    for k in old:
                        _delete(d, keys, k)
                    dropped += len(old)
            for wd in (swarm.wseeds, swarm.wleech):
                if wd:
                    wold = [w for w, wp in wd.items() if wp.expires <= now]
                    for w in wold:
                        wd[w].session.entries.pop((ih, w), None)
                        del wd[w]
                    if wold:
                        swarm.keys = None
                    dropped += len(wold)
            if swarm.downloaded == 0 and swarm.size() == 0:
                dead_swarms.append(ih)
        for ih in dead_swarms:
            del self.swarms[ih]
        return dropped

    def swarm_count(self) -> int:
        return len(self.swarms)

    def peer_count(self) -> int:
        return sum(s.size() for s in self.swarms.values())

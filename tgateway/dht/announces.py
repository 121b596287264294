"""Which info-hashes the DHT node announces, and when: a pure schedule (``now`` passed in).

The *known* info-hashes are the gateway's stored torrents: a snapshot, or a callable re-read every
``KNOWN_REFRESH`` seconds (it raises what the listing raises; the service logs it). Each is
re-announced once per ``interval`` at its own phase in the interval (its first 4 bytes scaled to
the interval, so the announces are spread evenly over it rather than sent in a burst); every
:meth:`AnnounceSchedule.due` call returns those whose phase fell between the previous call and
``now``. A newly stored file is queued at once; a deleted one leaves the schedule and the queue.

Announces wait in a queue (each info-hash at most once, never one that ``refused`` names) and at
most ``MAX_CONCURRENT_ANNOUNCES`` run at a time: :meth:`AnnounceSchedule.take` gives the next one
while there is room, the service counts each lookup it starts (one per bound address family) with
:meth:`~AnnounceSchedule.started` and each it sees finish with :meth:`~AnnounceSchedule.finished`.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterable

__all__ = ["AnnounceSchedule", "InfoHashes", "to_info_hash", "KNOWN_REFRESH",
           "MAX_CONCURRENT_ANNOUNCES"]

KNOWN_REFRESH = 60.0  # re-read a callable list of stored info-hashes
MAX_CONCURRENT_ANNOUNCES = 4

InfoHashes = Iterable[bytes | str] | Callable[[], Iterable[bytes | str]]


def to_info_hash(h: bytes | str) -> bytes | None:
    """20 bytes, or 40 hex digits, as 20 bytes; None for anything else."""
    if isinstance(h, bytes):
        return h if len(h) == 20 else None
    try:
        b = bytes.fromhex(h)
    except ValueError:
        return None
    return b if len(b) == 20 else None


class AnnounceSchedule:
    """The known info-hashes, their phases in the announce interval, and the announce queue."""

    def __init__(self, interval: float, refused: Callable[[bytes], bool]) -> None:
        self.interval = interval
        self.refused = refused
        self.source: Callable[[], Iterable[bytes | str]] | None = None
        self.known: set[bytes] = set()
        self._read_at = -1e18
        self._schedule: list[tuple[float, bytes]] = []  # (phase, info_hash), sorted
        self._phases: list[float] = []
        self._dirty = True
        self._epoch = 0.0
        self._last_pos = 0.0
        self._queue: deque[bytes] = deque()
        self._queued: set[bytes] = set()
        self.running = 0  # announce lookups started and not finished
        self.done = 0

    # ------------------------------------------------------------------ what is known

    def known_info_hashes(self) -> Iterable[bytes]:
        """The known info-hashes now (the node offers them to BEP 51 indexers)."""
        return self.known

    def set_known(self, hashes: InfoHashes) -> None:
        """A snapshot (taken now) or a callable (read at the next :meth:`refresh`)."""
        if callable(hashes):
            self.source = hashes
            self._read_at = -1e18
        else:
            self.source = None
            self.known = {b for b in map(to_info_hash, hashes) if b is not None}
            self._dirty = True

    def refresh(self, now: float) -> None:
        """Re-read the callable source once ``KNOWN_REFRESH`` has passed (raises what it raises)."""
        if self.source is None or now - self._read_at < KNOWN_REFRESH:
            return
        self._read_at = now
        fresh = {b for b in map(to_info_hash, self.source()) if b is not None}
        if fresh != self.known:
            self.known = fresh
            self._dirty = True

    def add(self, info_hash: bytes) -> None:
        """A newly stored torrent: announced every interval from now on."""
        if info_hash not in self.known:
            self.known.add(info_hash)
            self._dirty = True

    def forget(self, info_hash: bytes) -> None:
        """A deleted torrent: out of the schedule and the queue."""
        if info_hash in self.known:
            self.known.discard(info_hash)
            self._dirty = True
        if info_hash in self._queued:
            self._queued.discard(info_hash)
            self._queue.remove(info_hash)

    # ------------------------------------------------------------------ when

    def start(self, now: float) -> None:
        """Phases count from ``now`` (the service started)."""
        self._epoch = now

    def due(self, now: float) -> list[bytes]:
        """The known info-hashes whose phase fell in the window since the last call."""
        interval = float(self.interval)
        if self._dirty:
            self._schedule = sorted(
                (int.from_bytes(ih[:4], "big") / 2**32 * interval, ih) for ih in self.known
            )
            self._phases = [phase for phase, _ in self._schedule]
            self._dirty = False
        if not self._schedule:
            return []
        pos = (now - self._epoch) % interval
        last = self._last_pos
        self._last_pos = pos
        windows = [(last, pos)] if pos >= last else [(last, interval), (-1.0, pos)]
        out: list[bytes] = []
        for lo, hi in windows:
            start = bisect.bisect_right(self._phases, lo)
            end = bisect.bisect_right(self._phases, hi)
            out.extend(ih for _, ih in self._schedule[start:end])
        return out

    # ------------------------------------------------------------------ the queue

    @property
    def queued(self) -> int:
        return len(self._queue)

    def queue(self, info_hash: bytes) -> bool:
        """Queue an announce of ``info_hash``; False if it is malformed, queued or refused."""
        if len(info_hash) != 20 or info_hash in self._queued or self.refused(info_hash):
            return False
        self._queued.add(info_hash)
        self._queue.append(info_hash)
        return True

    def take(self) -> bytes | None:
        """The next info-hash to announce, if fewer than ``MAX_CONCURRENT_ANNOUNCES`` run."""
        if not self._queue or self.running >= MAX_CONCURRENT_ANNOUNCES:
            return None
        info_hash = self._queue.popleft()
        self._queued.discard(info_hash)
        return info_hash

    def started(self) -> None:
        self.running += 1

    def finished(self) -> None:
        self.running -= 1
        self.done += 1

"""When each stored file was last read, tracked without a database write per request.

Every read goes through the chunk reader (:mod:`tgateway.storage.reader`: downloads, webseed,
streams, Blossom, the BitTorrent peer's pieces); it calls :meth:`AccessLog.touch`, which only sets
``pending[sha256] = now`` in memory: one dictionary write, whatever the request rate. The storage
service writes what is pending every :data:`FLUSH_INTERVAL` in one transaction (``files.last_access``,
``schema/045_retention.sql``), and once more when it stops; retention flushes before it decides,
and asks :meth:`AccessLog.touched_since` about the reads that came in while it ran.

A crash loses the reads of the last interval at most: a file read in that minute looks idle since
its previous recorded read, which only matters to a file at the very end of its ``cleanup_age``.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .api import Db

__all__ = ["FLUSH_INTERVAL", "AccessLog"]

FLUSH_INTERVAL = 60.0  # seconds between two writes of the pending reads


def _record_access_txn(conn: sqlite3.Connection, reads: list[tuple[float, str]]) -> None:
    conn.executemany(
        "UPDATE files SET last_access = ?1 WHERE sha256 = ?2"
        " AND (last_access IS NULL OR last_access < ?1)", reads)


class AccessLog:
    """Last reads of stored files: kept in memory by :meth:`touch`, written by :meth:`flush`."""

    log = Logger()

    def __init__(self, clock: IReactorTime, db: Db) -> None:
        self._clock = clock
        self._db = db
        self._pending: dict[str, float] = {}  # not written yet
        self._recent: dict[str, float] = {}  # since retention's last flush (touched_since)
        self.touches = 0
        self.flushes = 0

    def touch(self, sha256: str) -> None:
        """(reactor) ``sha256`` was read now."""
        now = self._clock.seconds()
        self._pending[sha256] = now
        self._recent[sha256] = now
        self.touches += 1

    def touched_since(self, sha256: str, since: float) -> bool:
        """Was ``sha256`` read at ``since`` or later? Answers for the reads since the last
        ``flush(restart_recent=True)`` (retention's, at the start of a run)."""
        return self._recent.get(sha256, float("-inf")) >= since

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, *, restart_recent: bool = False) -> int:
        """Write the pending reads in one transaction; returns how many files were read.
        ``restart_recent``: afterwards, :meth:`touched_since` knows only the reads that came in
        during this flush (the others are in the database now)."""
        reads, self._pending = self._pending, {}
        if reads:
            try:
                await self._db.run(_record_access_txn, [(t, sha) for sha, t in reads.items()])
            except BaseException:
                for sha, t in reads.items():  # keep them for the next flush
                    if self._pending.get(sha, float("-inf")) < t:
                        self._pending[sha] = t
                raise
            self.flushes += 1
        if restart_recent:
            self._recent = dict(self._pending)
        return len(reads)

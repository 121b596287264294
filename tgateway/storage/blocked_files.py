"""SQL of the block list's files (table ``blocked_files``, ``schema/040_blocked_files.sql``).

A row is a tombstone: the SHA-256 (and, when the file was stored here, the v1 info-hash) of
content an admin deleted. The block list (:mod:`tgateway.storage.policy`) reads every row once
at start and keeps them in memory; it writes a row before anything else happens to the file.
Each ``_txn`` function runs on the database thread through ``Db.run``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from .api import Db

__all__ = ["BlockedFile", "BlockedFiles"]


@dataclass(frozen=True)
class BlockedFile:
    sha256: str
    info_hash: str | None  # hex; None when the file was never stored here
    reason: str
    blocked_by: str
    blocked_at: float

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "info_hash": self.info_hash, "reason": self.reason,
                "blocked_by": self.blocked_by, "blocked_at": self.blocked_at}


def _row(r: sqlite3.Row) -> BlockedFile:
    return BlockedFile(sha256=r["sha256"], info_hash=r["info_hash"], reason=r["reason"],
                       blocked_by=r["blocked_by"], blocked_at=r["blocked_at"])


def _all_txn(conn: sqlite3.Connection) -> list[tuple[str, str | None]]:
    return [(r[0], r[1]) for r in conn.execute("SELECT sha256, info_hash FROM blocked_files")]


def _block_txn(conn: sqlite3.Connection, sha256: str, info_hash: str | None, reason: str,
               by: str, now: float) -> bool:
    """Add a tombstone; False when ``sha256`` already had one (its info-hash is filled in if
    it was missing)."""
    old = conn.execute("SELECT info_hash FROM blocked_files WHERE sha256 = ?",
                       (sha256,)).fetchone()
    if old is not None:
        if old[0] is None and info_hash is not None:
            conn.execute("UPDATE blocked_files SET info_hash = ? WHERE sha256 = ?",
                         (info_hash, sha256))
        return False
    conn.execute(
        "INSERT INTO blocked_files (sha256, info_hash, reason, blocked_by, blocked_at)"
        " VALUES (?, ?, ?, ?, ?)", (sha256, info_hash, reason, by, now))
    return True


def _get_txn(conn: sqlite3.Connection, sha256: str) -> BlockedFile | None:
    r = conn.execute("SELECT * FROM blocked_files WHERE sha256 = ?", (sha256,)).fetchone()
    return _row(r) if r else None


def _page_txn(conn: sqlite3.Connection, limit: int, offset: int) -> tuple[list[BlockedFile], int]:
    (total,) = conn.execute("SELECT count(*) FROM blocked_files").fetchone()
    rows = conn.execute(
        "SELECT * FROM blocked_files ORDER BY blocked_at DESC, sha256 LIMIT ? OFFSET ?",
        (limit, offset)).fetchall()
    return [_row(r) for r in rows], int(total)


class BlockedFiles:
    """The ``blocked_files`` table."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def load(self) -> list[tuple[str, str | None]]:
        """(sha256, info_hash) of every tombstone; blocking, for start-up."""
        return self.db.run_sync(_all_txn)

    async def block(self, sha256: str, info_hash: str | None, *, reason: str, by: str,
                    now: float) -> bool:
        """Write a tombstone durably (it must hold before the file's bytes go)."""
        new: bool = await self.db.run(_block_txn, sha256, info_hash, reason, by, now,
                                      durable=True)
        return new

    async def get(self, sha256: str) -> BlockedFile | None:
        found: BlockedFile | None = await self.db.run(_get_txn, sha256)
        return found

    async def page(self, limit: int, offset: int) -> tuple[list[BlockedFile], int]:
        page: tuple[list[BlockedFile], int] = await self.db.run(_page_txn, limit, offset)
        return page

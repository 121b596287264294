"""SQL of what admins decided about users (table ``users``, ``schema/041_users.sql``): a storage
limit of their own and a ban.

Who is a user: any pubkey that owns a file (``file_owners``) or has a row here; the admin's
listing (:func:`_listing_txn`) joins the two, with each user's files and bytes. The admin's
quota and ban state (:mod:`tgateway.admin`) read every row once at start and keep them in
memory. Each ``_txn`` function runs on the database thread through ``Db.run``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from .api import Db

__all__ = ["KEEP", "UserListing", "UserRecord", "Users"]

#: "leave this column as it is" for :meth:`Users.update`
KEEP: Any = object()


@dataclass(frozen=True)
class UserRecord:
    pubkey: str
    storage_limit: int | None  # None: admin.default_user_storage_limit
    banned: bool
    banned_at: float | None
    updated_by: str
    updated_at: float


@dataclass(frozen=True)
class UserListing:
    """One line of the admin's user list."""

    pubkey: str
    files: int
    bytes_used: int
    storage_limit: int | None
    banned: bool
    banned_at: float | None


def _record(r: sqlite3.Row) -> UserRecord:
    return UserRecord(pubkey=r["pubkey"], storage_limit=r["storage_limit"],
                      banned=bool(r["banned"]), banned_at=r["banned_at"],
                      updated_by=r["updated_by"], updated_at=r["updated_at"])


def _all_txn(conn: sqlite3.Connection) -> list[UserRecord]:
    return [_record(r) for r in conn.execute("SELECT * FROM users")]


def _get_txn(conn: sqlite3.Connection, pubkey: str) -> UserRecord | None:
    r = conn.execute("SELECT * FROM users WHERE pubkey = ?", (pubkey,)).fetchone()
    return _record(r) if r else None


def _update_txn(conn: sqlite3.Connection, pubkey: str, storage_limit: Any, banned: Any,
                by: str, now: float) -> UserRecord:
    """Set the given columns (:data:`KEEP` leaves one as it is); a user left with neither a
    limit nor a ban keeps a row (who changed it last, and when)."""
    old = _get_txn(conn, pubkey)
    limit = (old.storage_limit if old else None) if storage_limit is KEEP else storage_limit
    was_banned = old.banned if old else False
    ban = was_banned if banned is KEEP else bool(banned)
    banned_at = (old.banned_at if old else None) if ban == was_banned else (now if ban else None)
    conn.execute(
        "INSERT INTO users (pubkey, storage_limit, banned, banned_at, updated_by, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pubkey) DO UPDATE SET"
        " storage_limit = excluded.storage_limit, banned = excluded.banned,"
        " banned_at = excluded.banned_at, updated_by = excluded.updated_by,"
        " updated_at = excluded.updated_at",
        (pubkey, limit, 1 if ban else 0, banned_at, by, now))
    record = _get_txn(conn, pubkey)
    assert record is not None
    return record


_USERS = (
    "WITH ids AS (SELECT owner AS pubkey FROM file_owners"
    " WHERE owner <> '' AND owner NOT LIKE '%:%' UNION SELECT pubkey FROM users)"
)


def _listing_txn(conn: sqlite3.Connection, prefix: str | None, banned_only: bool, limit: int,
                 offset: int) -> tuple[list[UserListing], int]:
    """Users (owners of files, and pubkeys an admin changed), most bytes first. ``prefix``:
    hex a pubkey starts with. Owners such as ``transcode:<sha256>`` (renditions) are not
    users."""
    where = ["(? IS NULL OR substr(ids.pubkey, 1, length(?)) = ?)",
             "(? = 0 OR coalesce(u.banned, 0) = 1)"]
    args: list[Any] = [prefix, prefix, prefix, 1 if banned_only else 0]
    clause = " AND ".join(where)
    (total,) = conn.execute(
        f"{_USERS} SELECT count(*) FROM ids LEFT JOIN users u ON u.pubkey = ids.pubkey"
        f" WHERE {clause}", args).fetchone()
    rows = conn.execute(
        f"{_USERS}, usage AS (SELECT o.owner AS pubkey, count(*) AS files,"
        " sum(f.size) AS bytes FROM file_owners o JOIN files f ON f.sha256 = o.sha256"
        " GROUP BY o.owner)"
        " SELECT ids.pubkey, coalesce(usage.files, 0) AS files,"
        " coalesce(usage.bytes, 0) AS bytes, u.storage_limit, coalesce(u.banned, 0) AS banned,"
        " u.banned_at FROM ids LEFT JOIN users u ON u.pubkey = ids.pubkey"
        " LEFT JOIN usage ON usage.pubkey = ids.pubkey"
        f" WHERE {clause} ORDER BY bytes DESC, ids.pubkey LIMIT ? OFFSET ?",
        (*args, limit, offset)).fetchall()
    return [UserListing(pubkey=r["pubkey"], files=int(r["files"]), bytes_used=int(r["bytes"]),
                        storage_limit=r["storage_limit"], banned=bool(r["banned"]),
                        banned_at=r["banned_at"]) for r in rows], int(total)


def _counts_txn(conn: sqlite3.Connection) -> dict[str, int]:
    (total,) = conn.execute(f"{_USERS} SELECT count(*) FROM ids").fetchone()
    (banned,) = conn.execute("SELECT count(*) FROM users WHERE banned = 1").fetchone()
    (limited,) = conn.execute(
        "SELECT count(*) FROM users WHERE storage_limit IS NOT NULL").fetchone()
    return {"total": int(total), "banned": int(banned), "with_storage_limit": int(limited)}


class Users:
    """The ``users`` table."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def load(self) -> list[UserRecord]:
        """Every row; blocking, for start-up."""
        return self.db.run_sync(_all_txn)

    async def get(self, pubkey: str) -> UserRecord | None:
        found: UserRecord | None = await self.db.run(_get_txn, pubkey)
        return found

    async def update(self, pubkey: str, *, storage_limit: Any = KEEP, banned: Any = KEEP,
                     by: str, now: float) -> UserRecord:
        record: UserRecord = await self.db.run(_update_txn, pubkey, storage_limit, banned, by,
                                               now, durable=True)
        return record

    async def listing(self, *, prefix: str | None, banned_only: bool, limit: int,
                      offset: int) -> tuple[list[UserListing], int]:
        page: tuple[list[UserListing], int] = await self.db.run(
            _listing_txn, prefix, banned_only, limit, offset)
        return page

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = await self.db.run(_counts_txn)
        return counts

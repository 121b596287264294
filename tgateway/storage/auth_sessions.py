"""Sign-in sessions (table ``auth_sessions``, ``schema/011_auth_sessions.sql``): random bearer
tokens, stored hashed (SHA-256) with an expiry.

``SessionStore.create`` returns the token once (the caller hands it to the user); only its hash
is written, so the database alone cannot be used to sign in. ``lookup`` answers the pubkey of a
live session, ``revoke`` ends one (logout). Expired rows are swept when sessions are created;
each sign-in also records the user's last sign-in (``user_activity``), which outlives sessions.
SQL lives here; each ``_txn`` function runs on the database thread through ``Database.run``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from .api import Db

__all__ = ["Session", "SessionStore", "hash_token"]

TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    pubkey: str
    method: str
    created_at: float
    expires_at: float


def _create_txn(
    conn: sqlite3.Connection, token_hash: str, pubkey: str, method: str, now: float, expires: float
) -> None:
    conn.execute("DELETE FROM auth_sessions WHERE expires_at <= ?", (now,))
    conn.execute(
        "INSERT INTO auth_sessions (token_sha256, pubkey, method, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (token_hash, pubkey, method, now, expires),
    )
    # the last sign-in outlives the session (retention's inactive users, 045_retention.sql)
    conn.execute(
        "INSERT INTO user_activity (pubkey, signed_in_at) VALUES (?, ?) ON CONFLICT (pubkey)"
        " DO UPDATE SET signed_in_at = max(signed_in_at, excluded.signed_in_at)",
        (pubkey, now),
    )


def _lookup_txn(conn: sqlite3.Connection, token_hash: str, now: float) -> Session | None:
    row = conn.execute(
        "SELECT token_sha256, pubkey, method, created_at, expires_at FROM auth_sessions"
        " WHERE token_sha256 = ? AND expires_at > ?",
        (token_hash, now),
    ).fetchone()
    # the index lookup is by the hash; compare again in constant time for good measure
    if row is None or not hmac.compare_digest(row[0], token_hash):
        return None
    return Session(pubkey=row[1], method=row[2], created_at=row[3], expires_at=row[4])


def _revoke_txn(conn: sqlite3.Connection, token_hash: str) -> bool:
    cur = conn.execute("DELETE FROM auth_sessions WHERE token_sha256 = ?", (token_hash,))
    return cur.rowcount > 0


def _revoke_all_txn(conn: sqlite3.Connection, pubkey: str) -> int:
    return conn.execute("DELETE FROM auth_sessions WHERE pubkey = ?", (pubkey,)).rowcount


def _purge_txn(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM auth_sessions WHERE expires_at <= ?", (now,)).rowcount


class SessionStore:
    """Sessions in the metadata database (``db`` is a ``Database`` or ``SyncDatabase``)."""

    def __init__(
        self,
        db: Db,
        *,
        ttl: float,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self._random = random_bytes

    async def create(self, pubkey: str, method: str, now: float) -> tuple[str, Session]:
        """A new session for ``pubkey``: (the bearer token, the session)."""
        token = self._random(TOKEN_BYTES).hex()
        expires = now + self.ttl
        await self.db.run(_create_txn, hash_token(token), pubkey, method, now, expires)
        return token, Session(pubkey=pubkey, method=method, created_at=now, expires_at=expires)

    async def lookup(self, token: str, now: float) -> Session | None:
        """The live session of ``token``, or None (unknown, revoked or expired)."""
        if not token or len(token) > 256:
            return None
        result: Session | None = await self.db.run(_lookup_txn, hash_token(token), now)
        return result

    async def revoke(self, token: str) -> bool:
        """End the session of ``token``; False when there was none."""
        result: bool = await self.db.run(_revoke_txn, hash_token(token))
        return result

    async def revoke_all(self, pubkey: str) -> int:
        result: int = await self.db.run(_revoke_all_txn, pubkey)
        return result

    async def purge(self, now: float) -> int:
        result: int = await self.db.run(_purge_txn, now)
        return result

"""The Nostr outbox tables, ``nostr_outbox_events`` and ``nostr_outbox_deliveries``: events stored
before they are sent, and per-relay delivery status.

The publisher (``tgateway.nostr.outbox``) calls these; SQL lives only here. Events are kept as
opaque signed JSON (the storage layer imports nothing of Nostr). Each ``_txn`` function runs on
the database thread through ``Database.run``; :class:`OutboxStore` wraps them as coroutines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .api import Db

__all__ = [
    "ACCEPTED",
    "Delivery",
    "DueDelivery",
    "FAILED",
    "OutboxStore",
    "PENDING",
    "REJECTED",
]

PENDING = "pending"
ACCEPTED = "accepted"
REJECTED = "rejected"
FAILED = "failed"
FINAL = (ACCEPTED, REJECTED, FAILED)


@dataclass(frozen=True)
class Delivery:
    """One event's delivery to one relay, as shown by the announcements API."""

    event_id: str
    kind: int
    ref: str | None
    relay_url: str
    status: str
    attempts: int
    message: str
    next_attempt_at: float | None  # None once final
    updated_at: float
    queued_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "relay": self.relay_url,
            "status": self.status,
            "attempts": self.attempts,
            "message": self.message,
            "next_attempt_at": self.next_attempt_at,
            "updated_at": self.updated_at,
            "queued_at": self.queued_at,
        }


@dataclass(frozen=True)
class DueDelivery:
    """A pending delivery whose time has come."""

    event_id: str
    relay_url: str
    event_json: str
    attempts: int
    queued_at: float


def enqueue_txn(
    conn: sqlite3.Connection,
    event_id: str,
    kind: int,
    event_json: str,
    relays: Sequence[str],
    ref: str | None,
    now: float,
) -> int:
    """Store the event (once) and a pending delivery per relay not yet targeted.

    Returns the number of new deliveries; deliveries that exist keep their status.
    """
    conn.execute(
        "INSERT OR IGNORE INTO nostr_outbox_events (id, kind, event_json, ref, queued_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (event_id, kind, event_json, ref, now),
    )
    added = 0
    for relay in dict.fromkeys(relays):
        cur = conn.execute(
            "INSERT OR IGNORE INTO nostr_outbox_deliveries"
            " (event_id, relay_url, status, next_attempt_at, updated_at)"
            " VALUES (?, ?, 'pending', ?, ?)",
            (event_id, relay, now, now),
        )
        added += cur.rowcount
    return added


def due_txn(conn: sqlite3.Connection, now: float, limit: int) -> list[DueDelivery]:
    rows = conn.execute(
        "SELECT d.event_id, d.relay_url, e.event_json, d.attempts, e.queued_at"
        " FROM nostr_outbox_deliveries d JOIN nostr_outbox_events e ON e.id = d.event_id"
        " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
        " ORDER BY d.next_attempt_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [DueDelivery(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def claim_due_txn(
    conn: sqlite3.Connection, now: float, limit: int, lease_until: float
) -> list[DueDelivery]:
    """The due deliveries, each leased until ``lease_until`` (moved out of the due set).

    The lease keeps an attempt in flight from being picked again; if the process dies during
    the attempt, the delivery is simply due again once the lease ends.
    """
    due = due_txn(conn, now, limit)
    conn.executemany(
        "UPDATE nostr_outbox_deliveries SET next_attempt_at = ?"
        " WHERE event_id = ? AND relay_url = ? AND status = 'pending'",
        [(lease_until, d.event_id, d.relay_url) for d in due],
    )
    return due


def release_txn(conn: sqlite3.Connection, event_id: str, relay_url: str, now: float) -> None:
    """End a lease without recording an attempt (the attempt was cancelled): due at ``now``."""
    conn.execute(
        "UPDATE nostr_outbox_deliveries SET next_attempt_at = ?"
        " WHERE event_id = ? AND relay_url = ? AND status = 'pending'",
        (now, event_id, relay_url),
    )


def next_due_txn(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT MIN(next_attempt_at) FROM nostr_outbox_deliveries WHERE status = 'pending'"
    ).fetchone()
    return None if row[0] is None else float(row[0])


def record_txn(
    conn: sqlite3.Connection,
    event_id: str,
    relay_url: str,
    status: str,
    message: str,
    next_attempt_at: float,
    now: float,
) -> None:
    """Record one attempt's outcome (``attempts`` grows by one)."""
    if status not in (PENDING, *FINAL):
        raise ValueError(f"unknown delivery status {status!r}")
    conn.execute(
        "UPDATE nostr_outbox_deliveries SET status = ?, message = ?, next_attempt_at = ?,"
        " attempts = attempts + 1, updated_at = ?"
        " WHERE event_id = ? AND relay_url = ? AND status = 'pending'",
        (status, message[:1000], next_attempt_at, now, event_id, relay_url),
    )


_DELIVERY_COLUMNS = (
    "SELECT d.event_id, e.kind, e.ref, d.relay_url, d.status, d.attempts, d.message,"
    " d.next_attempt_at, d.updated_at, e.queued_at"
    " FROM nostr_outbox_deliveries d JOIN nostr_outbox_events e ON e.id = d.event_id"
)


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(
        event_id=row[0],
        kind=row[1],
        ref=row[2],
        relay_url=row[3],
        status=row[4],
        attempts=row[5],
        message=row[6],
        next_attempt_at=row[7] if row[4] == PENDING else None,
        updated_at=row[8],
        queued_at=row[9],
    )


def deliveries_for_event_txn(conn: sqlite3.Connection, event_id: str) -> list[Delivery]:
    rows = conn.execute(
        _DELIVERY_COLUMNS + " WHERE d.event_id = ? ORDER BY d.relay_url", (event_id,)
    ).fetchall()
    return [_delivery(r) for r in rows]


def deliveries_for_ref_txn(conn: sqlite3.Connection, ref: str) -> list[Delivery]:
    rows = conn.execute(
        _DELIVERY_COLUMNS + " WHERE e.ref = ? ORDER BY e.queued_at, e.id, d.relay_url", (ref,)
    ).fetchall()
    return [_delivery(r) for r in rows]


def event_json_txn(conn: sqlite3.Connection, event_id: str) -> str | None:
    row = conn.execute(
        "SELECT event_json FROM nostr_outbox_events WHERE id = ?", (event_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def events_for_ref_txn(conn: sqlite3.Connection, ref: str) -> list[str]:
    """The signed JSON of every event stored about ``ref``, oldest first."""
    return [str(r[0]) for r in conn.execute(
        "SELECT event_json FROM nostr_outbox_events WHERE ref = ? ORDER BY queued_at, id", (ref,))]


def count_pending_txn(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM nostr_outbox_deliveries WHERE status = 'pending'"
    ).fetchone()
    return int(row[0])


def backlog_txn(conn: sqlite3.Connection) -> tuple[int, float | None]:
    """Deliveries still pending, and when the oldest of them was queued."""
    row = conn.execute(
        "SELECT COUNT(*), MIN(e.queued_at) FROM nostr_outbox_deliveries d"
        " JOIN nostr_outbox_events e ON e.id = d.event_id WHERE d.status = 'pending'"
    ).fetchone()
    return int(row[0]), (float(row[1]) if row[1] is not None else None)


class OutboxStore:
    """Coroutine wrappers over the ``_txn`` functions, run on the database thread.

    ``db`` is a ``tgateway.storage.db.Database`` (or ``SyncDatabase`` in tests).
    """

    def __init__(self, db: Db) -> None:
        self._db = db

    async def enqueue(
        self,
        event_id: str,
        kind: int,
        event_json: str,
        relays: Sequence[str],
        ref: str | None,
        now: float,
    ) -> int:
        result: int = await self._db.run(
            enqueue_txn, event_id, kind, event_json, list(relays), ref, now
        )
        return result

    async def due(self, now: float, limit: int = 100) -> list[DueDelivery]:
        result: list[DueDelivery] = await self._db.run(due_txn, now, limit)
        return result

    async def claim_due(self, now: float, limit: int, lease_until: float) -> list[DueDelivery]:
        result: list[DueDelivery] = await self._db.run(claim_due_txn, now, limit, lease_until)
        return result

    async def release(self, event_id: str, relay_url: str, now: float) -> None:
        await self._db.run(release_txn, event_id, relay_url, now)

    async def next_due(self) -> float | None:
        result: float | None = await self._db.run(next_due_txn)
        return result

    async def record(
        self,
        event_id: str,
        relay_url: str,
        status: str,
        message: str,
        next_attempt_at: float,
        now: float,
    ) -> None:
        await self._db.run(record_txn, event_id, relay_url, status, message, next_attempt_at, now)

    async def deliveries_for_event(self, event_id: str) -> list[Delivery]:
        result: list[Delivery] = await self._db.run(deliveries_for_event_txn, event_id)
        return result

    async def deliveries_for_ref(self, ref: str) -> list[Delivery]:
        result: list[Delivery] = await self._db.run(deliveries_for_ref_txn, ref)
        return result

    async def event_json(self, event_id: str) -> str | None:
        result: str | None = await self._db.run(event_json_txn, event_id)
        return result

    async def events_for_ref(self, ref: str) -> list[str]:
        result: list[str] = await self._db.run(events_for_ref_txn, ref)
        return result

    async def count_pending(self) -> int:
        result: int = await self._db.run(count_pending_txn)
        return result

    async def backlog(self) -> tuple[int, float | None]:
        """Pending deliveries and the oldest one's queue time (:func:`backlog_txn`)."""
        result: tuple[int, float | None] = await self._db.run(backlog_txn)
        return result


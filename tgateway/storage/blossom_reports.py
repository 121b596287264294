"""SQL of the Blossom reports tables (BUD-09): ``blossom_reports`` and ``blossom_report_blobs``
(schema ``020_blossom_reports.sql``, ``021_blossom_report_limits.sql``).

:class:`BlossomStore` is what the Blossom server asks of the database: these reports, and the
per-owner blob listing (BUD-02 ``/list``), whose SQL is the content store's
(:mod:`tgateway.storage.files`) and returns the same :class:`~tgateway.storage.model.StoredFile`
records as the store.

Reports need no sign-in, so what they may store is bounded (:class:`ReportLimits`), checked in
the same transaction as the insert: every reported blob must be stored here, and a report is
refused (:class:`ReportRefused`) when its reporter already has ``per_reporter`` open reports,
when one of its blobs already has ``per_blob``, or when ``max_open`` reports are open in all.
Reports stop counting once the admin marks them ``dismissed`` or ``actioned``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .api import Db
from .files import ListedBlob, _list_txn, _uploaded_txn


@dataclass(frozen=True)
class Report:
    id: str
    pubkey: str
    created_at: int
    content: str
    event: dict[str, Any]
    blobs: tuple[tuple[str, str], ...]  # (sha256, type)
    received_at: float
    status: str


@dataclass(frozen=True)
class ReportLimits:
    """How many open reports may be stored: in all, by one reporter, about one blob."""

    max_open: int = 1000
    per_reporter: int = 10
    per_blob: int = 20


class ReportRefused(Exception):
    """A report was not stored. ``reason``: ``unknown_blob`` (``sha256`` is not stored here),
    ``reporter_full``, ``blob_full`` (``sha256`` has enough open reports) or ``full``."""

    def __init__(self, reason: str, message: str, sha256: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sha256 = sha256


def _check_report_txn(
    conn: sqlite3.Connection, pubkey: str, blobs: list[tuple[str, str]], limits: ReportLimits
) -> None:
    for sha, _ in blobs:
        if conn.execute("SELECT 1 FROM files WHERE sha256 = ?", (sha,)).fetchone() is None:
            raise ReportRefused("unknown_blob", f"blob {sha} is not stored here", sha)
    (total,) = conn.execute(
        "SELECT count(*) FROM blossom_reports WHERE status = 'open'").fetchone()
    if total >= limits.max_open:
        raise ReportRefused(
            "full", f"{total} reports are waiting for the operator; no more are taken for now")
    (mine,) = conn.execute(
        "SELECT count(*) FROM blossom_reports WHERE pubkey = ? AND status = 'open'", (pubkey,)
    ).fetchone()
    if mine >= limits.per_reporter:
        raise ReportRefused(
            "reporter_full", f"this key already has {mine} open reports (at most"
            f" {limits.per_reporter})")
    for sha, _ in blobs:
        (about,) = conn.execute(
            "SELECT count(*) FROM blossom_report_blobs b JOIN blossom_reports r"
            " ON r.id = b.report_id WHERE b.sha256 = ? AND r.status = 'open'", (sha,)
        ).fetchone()
        if about >= limits.per_blob:
            raise ReportRefused(
                "blob_full", f"blob {sha} already has {about} open reports (at most"
                f" {limits.per_blob})", sha)


def _add_report_txn(
    conn: sqlite3.Connection,
    event: dict[str, Any],
    blobs: list[tuple[str, str]],
    client_ip: str | None,
    now: float,
    limits: ReportLimits,
) -> bool:
    if conn.execute("SELECT 1 FROM blossom_reports WHERE id = ?", (event["id"],)).fetchone():
        return False  # the same report again: nothing new to store, nothing refused
    _check_report_txn(conn, event["pubkey"], blobs, limits)
    cur = conn.execute(
        "INSERT OR IGNORE INTO blossom_reports (id, pubkey, created_at, content, event_json,"
        " client_ip, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event["id"], event["pubkey"], event["created_at"], event["content"],
         json.dumps(event, ensure_ascii=False, separators=(",", ":")), client_ip, now),
    )
    if cur.rowcount == 0:
        return False
    conn.executemany(
        "INSERT OR IGNORE INTO blossom_report_blobs (report_id, sha256, type) VALUES (?, ?, ?)",
        [(event["id"], sha, kind) for sha, kind in blobs],
    )
    return True


def _report_filter(status: str | None, sha256: str | None) -> tuple[str, list[Any]]:
    where, args = [], []
    if status is not None:
        where.append("r.status = ?")
        args.append(status)
    if sha256 is not None:
        where.append("r.id IN (SELECT report_id FROM blossom_report_blobs WHERE sha256 = ?)")
        args.append(sha256)
    return (f"WHERE {' AND '.join(where)}" if where else ""), args


def _build_reports(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Report]:
    out = []
    for r in rows:
        blobs = tuple(
            (b[0], b[1])
            for b in conn.execute(
                "SELECT sha256, type FROM blossom_report_blobs WHERE report_id = ? ORDER BY sha256",
                (r["id"],),
            )
        )
        out.append(Report(
            id=r["id"], pubkey=r["pubkey"], created_at=r["created_at"], content=r["content"],
            event=json.loads(r["event_json"]), blobs=blobs, received_at=r["received_at"],
            status=r["status"],
        ))
    return out


def _reports_txn(
    conn: sqlite3.Connection, status: str | None, sha256: str | None, limit: int, offset: int
) -> list[Report]:
    clause, args = _report_filter(status, sha256)
    rows = conn.execute(
        f"SELECT * FROM blossom_reports r {clause} ORDER BY r.received_at DESC, r.id"
        " LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    return _build_reports(conn, rows)


def _set_report_status_txn(conn: sqlite3.Connection, report_id: str, status: str) -> bool:
    cur = conn.execute("UPDATE blossom_reports SET status = ? WHERE id = ?", (status, report_id))
    return cur.rowcount > 0


def _report_txn(conn: sqlite3.Connection, report_id: str) -> Report | None:
    rows = conn.execute("SELECT * FROM blossom_reports WHERE id = ?", (report_id,)).fetchall()
    return _build_reports(conn, rows)[0] if rows else None


def _count_reports_txn(conn: sqlite3.Connection, status: str | None, sha256: str | None) -> int:
    where, args = _report_filter(status, sha256)
    (n,) = conn.execute(f"SELECT count(*) FROM blossom_reports r {where}", args).fetchone()
    return int(n)


def _report_counts_txn(conn: sqlite3.Connection) -> dict[str, int]:
    counts = {"open": 0, "dismissed": 0, "actioned": 0}
    for status, n in conn.execute("SELECT status, count(*) FROM blossom_reports GROUP BY status"):
        counts[status] = int(n)
    return counts


def _close_reports_about_txn(conn: sqlite3.Connection, sha256: str, status: str) -> int:
    """Mark the open reports that name ``sha256`` as ``status``; how many."""
    cur = conn.execute(
        "UPDATE blossom_reports SET status = ? WHERE status = 'open' AND id IN"
        " (SELECT report_id FROM blossom_report_blobs WHERE sha256 = ?)", (status, sha256))
    return cur.rowcount


class BlossomStore:
    """Blossom's own queries, on the gateway's one database (``await db.run(txn, ...)``)."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def list_blobs(
        self,
        owner: str,
        *,
        since: int | None = None,
        until: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> list[ListedBlob]:
        rows: list[ListedBlob] = await self.db.run(_list_txn, owner, since, until, cursor, limit)
        return rows

    async def uploaded_at(self, sha256: str, owner: str) -> float | None:
        """When ``owner`` ('' for anonymous) stored ``sha256``, or None."""
        when: float | None = await self.db.run(_uploaded_txn, sha256, owner)
        return when

    async def add_report(
        self,
        event: dict[str, Any],
        blobs: list[tuple[str, str]],
        *,
        client_ip: str | None,
        now: float,
        limits: ReportLimits,
    ) -> bool:
        """Store a verified report event; False when the same event id was already stored.
        Raises :class:`ReportRefused` (nothing stored) for a blob not stored here or when one
        of ``limits`` is reached."""
        new: bool = await self.db.run(_add_report_txn, event, blobs, client_ip, now, limits)
        return new

    async def reports(
        self,
        *,
        status: str | None = "open",
        sha256: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Report]:
        """Reports for the admin, newest first."""
        out: list[Report] = await self.db.run(_reports_txn, status, sha256, limit, offset)
        return out

    async def set_report_status(self, report_id: str, status: str) -> bool:
        changed: bool = await self.db.run(_set_report_status_txn, report_id, status)
        return changed

    async def report(self, report_id: str) -> Report | None:
        found: Report | None = await self.db.run(_report_txn, report_id)
        return found

    async def count_reports(self, *, status: str | None = "open",
                            sha256: str | None = None) -> int:
        n: int = await self.db.run(_count_reports_txn, status, sha256)
        return n

    async def report_counts(self) -> dict[str, int]:
        """How many reports are open, dismissed and actioned."""
        counts: dict[str, int] = await self.db.run(_report_counts_txn)
        return counts

    async def close_reports_about(self, sha256: str, status: str = "actioned") -> int:
        """Mark the open reports naming ``sha256`` as handled (the blob was deleted)."""
        n: int = await self.db.run(_close_reports_about_txn, sha256, status)
        return n


__all__ = ["BlossomStore", "ListedBlob", "Report", "ReportLimits", "ReportRefused"]

"""SQL of retention (:mod:`tgateway.retention`): how recently each file was used, inactive users,
and the database's upkeep. Each ``_txn`` function runs on the database thread through ``Db.run``.

A file's use (:class:`FileUse`): when it was first stored (``files.created_at``), last read
(``files.last_access``, written by :mod:`tgateway.storage.access`), last uploaded by any owner
(``file_owners.created_at``), and last used through a file derived from it (a transcode output,
owned by ``transcode:<its sha256>``: an HLS segment served means the video is watched).

Candidates are read a page at a time in SHA-256 order (``after``): each page is one indexed
range scan, and a run over 100,000 files never holds them all in memory nor blocks the database
thread for long.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

__all__ = ["FileUse", "InactiveUser"]

DERIVED_OWNER = "transcode:"  # the owner prefix of transcode outputs (tgateway.transcode)

_USE = (
    "SELECT f.sha256, f.size, f.created_at, f.last_access,"
    " (SELECT max(o.created_at) FROM file_owners o WHERE o.sha256 = f.sha256),"
    " (SELECT max(coalesce(g.last_access, g.created_at)) FROM file_owners d"
    "  JOIN files g ON g.sha256 = d.sha256 WHERE d.owner = ? || f.sha256)"
    " FROM files f"
)


@dataclass(frozen=True)
class FileUse:
    """What retention decides a file's fate on (see the module docstring)."""

    sha256: str
    size: int
    created_at: float
    last_access: float | None = None  # None: not read since it was stored
    last_upload: float | None = None  # the newest owner's reference
    derived_use: float | None = None  # the last use of a file derived from it

    @property
    def last_use(self) -> float:
        return max(t for t in (self.created_at, self.last_access, self.last_upload,
                               self.derived_use) if t is not None)


def _use(row: sqlite3.Row | tuple[object, ...]) -> FileUse:
    sha, size, created, access, upload, derived = tuple(row)
    return FileUse(sha256=str(sha), size=int(size),  # type: ignore[call-overload]
                   created_at=float(created),  # type: ignore[arg-type]
                   last_access=None if access is None else float(access),  # type: ignore[arg-type]
                   last_upload=None if upload is None else float(upload),  # type: ignore[arg-type]
                   derived_use=None if derived is None else float(derived))  # type: ignore[arg-type]


def _candidates_txn(conn: sqlite3.Connection, after: str, idle_before: float,
                    created_before: float, limit: int) -> list[FileUse]:
    """Up to ``limit`` files after ``after`` (SHA-256 order) that were stored before
    ``created_before`` or not read since ``idle_before``: those retention looks at closer (an
    upload or a derived file may still make them recent)."""
    rows = conn.execute(
        _USE + " WHERE f.sha256 > ? AND (f.created_at < ? OR coalesce(f.last_access,"
        " f.created_at) < ?) ORDER BY f.sha256 LIMIT ?",
        (DERIVED_OWNER, after, created_before, idle_before, limit)).fetchall()
    return [_use(r) for r in rows]


def _uses_txn(conn: sqlite3.Connection, sha256s: list[str]) -> dict[str, FileUse]:
    """The use of each of these files that is still stored."""
    out: dict[str, FileUse] = {}
    for i in range(0, len(sha256s), 500):
        batch = sha256s[i:i + 500]
        marks = ",".join("?" * len(batch))
        for r in conn.execute(_USE + f" WHERE f.sha256 IN ({marks})", (DERIVED_OWNER, *batch)):
            use = _use(r)
            out[use.sha256] = use
    return out


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class InactiveUser:
    pubkey: str
    last_seen: float  # the newest of their last sign-in and their last upload


def _inactive_users_txn(conn: sqlite3.Connection, before: float, limit: int) -> list[InactiveUser]:
    """Users whose last sign-in and last upload are both older than ``before`` (users: the
    pubkeys that signed in, or hold a session)."""
    rows = conn.execute(
        "WITH ids AS (SELECT pubkey FROM user_activity UNION SELECT pubkey FROM auth_sessions),"
        " seen AS (SELECT ids.pubkey AS pubkey, max("
        "  coalesce((SELECT signed_in_at FROM user_activity a WHERE a.pubkey = ids.pubkey), 0),"
        "  coalesce((SELECT max(created_at) FROM auth_sessions s WHERE s.pubkey = ids.pubkey), 0),"
        "  coalesce((SELECT max(created_at) FROM file_owners o WHERE o.owner = ids.pubkey), 0)"
        " ) AS last_seen FROM ids)"
        " SELECT pubkey, last_seen FROM seen WHERE last_seen < ? ORDER BY last_seen, pubkey"
        " LIMIT ?", (before, limit)).fetchall()
    return [InactiveUser(str(r[0]), float(r[1])) for r in rows]


def _forget_users_txn(conn: sqlite3.Connection, pubkeys: list[str], before: float) -> int:
    """Remove these users' sessions and activity rows when they are still inactive since
    ``before`` (a sign-in or an upload meanwhile keeps them). Returns the sessions removed."""
    sessions = 0
    for pubkey in pubkeys:
        if conn.execute(
            "SELECT 1 FROM user_activity WHERE pubkey = ? AND signed_in_at >= ? UNION ALL"
            " SELECT 1 FROM auth_sessions WHERE pubkey = ? AND created_at >= ? UNION ALL"
            " SELECT 1 FROM file_owners WHERE owner = ? AND created_at >= ? LIMIT 1",
            (pubkey, before, pubkey, before, pubkey, before)).fetchone():
            continue
        sessions += conn.execute("DELETE FROM auth_sessions WHERE pubkey = ?",
                                 (pubkey,)).rowcount
        conn.execute("DELETE FROM user_activity WHERE pubkey = ?", (pubkey,))
    return sessions


# --------------------------------------------------------------------------- upkeep


def _upkeep_txn(conn: sqlite3.Connection, max_pages: int,
                apply: bool = True) -> dict[str, int | str]:
    """``PRAGMA optimize`` (fresh statistics for the query planner), then give back up to
    ``max_pages`` free pages to the file system (incremental vacuum: only in a database created
    with ``auto_vacuum=INCREMENTAL``; older ones report ``auto_vacuum: none``). Without
    ``apply`` (a dry run) only the mode and the free pages are read."""
    if apply:
        conn.execute("PRAGMA optimize")
    mode = {0: "none", 1: "full", 2: "incremental"}.get(
        conn.execute("PRAGMA auto_vacuum").fetchone()[0], "unknown")
    free_before = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    free = free_before
    if apply and mode == "incremental":
        # Python's sqlite3 steps a PRAGMA once, and each step frees one page (or more: pointer
        # map pages go with them).
        steps = 0
        while free and steps < max_pages:
            conn.execute("PRAGMA incremental_vacuum")
            left = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            steps += 1
            if left >= free:
                break  # what is left cannot be given back (the last page of the map)
            free = left
    return {"auto_vacuum": mode, "free_pages": free_before, "pages_freed": free_before - free}

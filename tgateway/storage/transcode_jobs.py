"""SQL of the transcoding job queue (``schema/030_transcode_jobs.sql``).

Every function is a ``_txn``-style function ``fn(conn, ...)`` run by ``Database.run``, wrapped by
:class:`JobStore`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .api import Db

__all__ = ["Job", "JobStore"]


@dataclass(frozen=True)
class Job:
    sha256: str
    state: str
    priority: int
    duration: float
    probe: dict[str, Any]
    progress: float
    attempts: int
    error: str | None
    stderr_tail: str | None
    results: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None


def _job(row: sqlite3.Row) -> Job:
    return Job(
        sha256=row["sha256"], state=row["state"], priority=row["priority"],
        duration=row["duration"], probe=json.loads(row["probe"] or "{}"),
        progress=row["progress"], attempts=row["attempts"], error=row["error"],
        stderr_tail=row["stderr_tail"], results=json.loads(row["results"] or "{}"),
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _add_txn(conn: sqlite3.Connection, sha256: str, duration: float, probe: dict[str, Any],
             priority: int, now: float) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO transcode_jobs (sha256, duration, probe, priority, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (sha256, duration, json.dumps(probe), priority, now),
    )
    return cur.rowcount == 1


def _get_txn(conn: sqlite3.Connection, sha256: str) -> Job | None:
    row = conn.execute("SELECT * FROM transcode_jobs WHERE sha256 = ?", (sha256,)).fetchone()
    return _job(row) if row else None


def _claim_next_txn(conn: sqlite3.Connection, now: float) -> Job | None:
    row = conn.execute(
        "SELECT * FROM transcode_jobs WHERE state = 'queued'"
        " ORDER BY priority DESC, duration, created_at, sha256 LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE transcode_jobs SET state = 'running', started_at = ?, attempts = attempts + 1,"
        " progress = 0, error = NULL, stderr_tail = NULL WHERE sha256 = ?",
        (now, row["sha256"]),
    )
    return _get_txn(conn, row["sha256"])


def _requeue_interrupted_txn(conn: sqlite3.Connection) -> int:
    cur = conn.execute(
        "UPDATE transcode_jobs SET state = 'queued', progress = 0 WHERE state = 'running'"
    )
    return cur.rowcount


def _progress_txn(conn: sqlite3.Connection, sha256: str, progress: float) -> None:
    conn.execute("UPDATE transcode_jobs SET progress = ? WHERE sha256 = ? AND state = 'running'",
                 (progress, sha256))


def _finish_txn(conn: sqlite3.Connection, sha256: str, results: dict[str, Any], now: float) -> None:
    conn.execute(
        "UPDATE transcode_jobs SET state = 'done', progress = 100, results = ?, finished_at = ?,"
        " error = NULL, stderr_tail = NULL WHERE sha256 = ?",
        (json.dumps(results), now, sha256),
    )


def _fail_txn(conn: sqlite3.Connection, sha256: str, error: str, tail: str | None,
              now: float) -> None:
    conn.execute(
        "UPDATE transcode_jobs SET state = 'failed', error = ?, stderr_tail = ?, finished_at = ?"
        " WHERE sha256 = ?",
        (error, tail, now, sha256),
    )


def _retry_txn(conn: sqlite3.Connection, sha256: str, priority: int | None) -> Job | None:
    conn.execute(
        "UPDATE transcode_jobs SET state = 'queued', progress = 0, error = NULL,"
        " stderr_tail = NULL, finished_at = NULL, priority = coalesce(?, priority)"
        " WHERE sha256 = ? AND state IN ('failed', 'cancelled', 'done', 'queued')",
        (priority, sha256),
    )
    return _get_txn(conn, sha256)


def _delete_txn(conn: sqlite3.Connection, sha256: str) -> Job | None:
    job = _get_txn(conn, sha256)
    conn.execute("DELETE FROM transcode_jobs WHERE sha256 = ?", (sha256,))
    return job


def _page_txn(conn: sqlite3.Connection, state: str | None, limit: int,
              offset: int) -> tuple[list[Job], int]:
    """Jobs for the admin: running first, then queued in the order they will run, then the
    ended ones, newest first."""
    where, args = ("WHERE state = ?", [state]) if state is not None else ("", [])
    (total,) = conn.execute(f"SELECT count(*) FROM transcode_jobs {where}", args).fetchone()
    rows = conn.execute(
        f"SELECT * FROM transcode_jobs {where} ORDER BY"
        " CASE state WHEN 'running' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END,"
        " CASE WHEN state = 'queued' THEN -priority ELSE 0 END,"
        " CASE WHEN state = 'queued' THEN duration ELSE 0 END,"
        " coalesce(finished_at, created_at) DESC, sha256 LIMIT ? OFFSET ?",
        (*args, limit, offset)).fetchall()
    return [_job(r) for r in rows], int(total)


def _counts_txn(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in
            conn.execute("SELECT state, count(*) FROM transcode_jobs GROUP BY state")}


def _queue_txn(conn: sqlite3.Connection) -> tuple[int, float | None]:
    row = conn.execute(
        "SELECT COUNT(*), MIN(created_at) FROM transcode_jobs WHERE state = 'queued'").fetchone()
    return int(row[0]), (float(row[1]) if row[1] is not None else None)


class JobStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def add(self, sha256: str, duration: float, probe: dict[str, Any], priority: int,
                  now: float) -> bool:
        """Queue a job; False when the file already has one."""
        return bool(await self.db.run(_add_txn, sha256, duration, probe, priority, now))

    async def get(self, sha256: str) -> Job | None:
        return await self.db.run(_get_txn, sha256)

    async def claim_next(self, now: float) -> Job | None:
        return await self.db.run(_claim_next_txn, now)

    async def requeue_interrupted(self) -> int:
        return int(await self.db.run(_requeue_interrupted_txn))

    async def progress(self, sha256: str, progress: float) -> None:
        await self.db.run(_progress_txn, sha256, progress)

    async def finish(self, sha256: str, results: dict[str, Any], now: float) -> None:
        await self.db.run(_finish_txn, sha256, results, now)

    async def fail(self, sha256: str, error: str, tail: str | None, now: float) -> None:
        await self.db.run(_fail_txn, sha256, error, tail, now)

    async def retry(self, sha256: str, priority: int | None = None) -> Job | None:
        return await self.db.run(_retry_txn, sha256, priority)

    async def delete(self, sha256: str) -> Job | None:
        return await self.db.run(_delete_txn, sha256)

    async def counts(self) -> dict[str, int]:
        return await self.db.run(_counts_txn)

    async def queue(self) -> tuple[int, float | None]:
        """Jobs waiting, and when the oldest of them was queued."""
        return await self.db.run(_queue_txn)

    async def page(self, state: str | None, limit: int, offset: int) -> tuple[list[Job], int]:
        return await self.db.run(_page_txn, state, limit, offset)

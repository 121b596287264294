"""SQL of the content store's tables: ``files``, ``file_chunks`` and ``file_owners``.

``files`` holds one row per stored file (its metainfo and where its bytes are: one blob, or the
``file_chunks`` in order); ``file_owners`` one row per owner's reference (name, title, quota
accounting). Uploaded videos not examined yet (no probe result or error in ``meta``) are marked
in ``files.unexamined_video`` and listed by :func:`_unexamined_videos_txn` (``schema/002``). Every function is a ``_txn`` function ``fn(conn, ...)`` run on the database thread
by ``Database.run``; :class:`~tgateway.storage.store.LocalContentStore` and Blossom's listing
(:class:`~tgateway.storage.blossom_reports.BlossomStore`) call them. Schema:
``schema/001_files.sql``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tgateway.errors import PayloadTooLarge

from .model import DERIVED_SOURCES, Chunk, Ownership, StoredFile, UploadContext
from .naming import clean_name
from .retention import FileUse, _uses_txn

__all__ = ["ListedBlob", "QuotaExceeded"]


class QuotaExceeded(PayloadTooLarge):
    """The owner's files would take more than their quota (checked in the transaction that
    adds the owner's reference)."""

    code = "quota_exceeded"



@dataclass(frozen=True)
class ListedBlob:
    """One entry of an owner's listing (Blossom ``/list``)."""

    file: StoredFile
    uploaded: float  # when this owner stored it


def _row_to_file(conn: sqlite3.Connection, row: sqlite3.Row) -> StoredFile:
    chunks: tuple[Chunk, ...] = ()
    if row["storage"] == "chunked":
        chunks = tuple(
            Chunk(index=r[0], sha256=r[1], offset=r[2], size=r[3])
            for r in conn.execute(
                "SELECT idx, chunk_sha256, offset, size FROM file_chunks"
                " WHERE file_sha256 = ? ORDER BY idx",
                (row["sha256"],),
            )
        )
    return StoredFile(
        sha256=row["sha256"],
        size=row["size"],
        name=clean_name(row["name"], row["sha256"]),  # rows stored before the rule, too
        mime=row["mime"],
        storage=row["storage"],
        piece_length=row["piece_length"],
        info_hash=row["info_hash"],
        info=bytes(row["info"]),
        created_at=row["created_at"],
        chunks=chunks,
        meta=json.loads(row["meta"] or "{}"),
    )


def _get_txn(conn: sqlite3.Connection, column: str, value: str) -> StoredFile | None:
    assert column in ("sha256", "info_hash")
    row = conn.execute(f"SELECT * FROM files WHERE {column} = ?", (value,)).fetchone()
    return _row_to_file(conn, row) if row else None


def _check_quota_txn(conn: sqlite3.Connection, owner: str, sha256: str, size: int,
                     quota: int) -> None:
    """Raise QuotaExceeded when ``owner`` does not own ``sha256`` yet and ``size`` more bytes
    would take their files beyond ``quota``: stored bytes count whether they are new or shared
    with other owners (deduplication saves the disk, not the owner's quota)."""
    if conn.execute(
        "SELECT 1 FROM file_owners WHERE sha256 = ? AND owner = ?", (sha256, owner)
    ).fetchone() is not None:
        return  # an upload of a file the owner already has adds nothing
    _, used = _usage_txn(conn, owner)
    if used + size > quota:
        raise QuotaExceeded(
            f"upload would exceed your storage quota ({used} of {quota} bytes used,"
            f" this file is {size} bytes)"
        )


def _insert_txn(
    conn: sqlite3.Connection, f: StoredFile, ctx: UploadContext, now: float,
    quota: int | None = None, video: bool = False,
) -> tuple[StoredFile, bool]:
    """Insert the file (unless present) and the owner row. Returns (file, new). ``video``: the
    file looks like a video (its type or first bytes): an uploader's reference marks it
    unexamined until its probe or probe error is recorded.

    With ``quota`` (bytes), the owner's usage is checked in the same transaction, so that
    concurrent uploads by one owner cannot all pass the check (the store's commits run one at
    a time on the one database thread); QuotaExceeded rolls everything back.
    """
    if quota is not None and ctx.owner:
        _check_quota_txn(conn, ctx.owner, f.sha256, f.size, quota)
    existing = _get_txn(conn, "sha256", f.sha256)
    new = existing is None
    if new:
        conn.execute(
            "INSERT INTO files (sha256, size, name, mime, storage, piece_length, info_hash, info,"
            " created_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.sha256, f.size, f.name, f.mime, f.storage, f.piece_length, f.info_hash, f.info,
             f.created_at, json.dumps(f.meta)),
        )
        conn.executemany(
            "INSERT INTO file_chunks (file_sha256, idx, chunk_sha256, offset, size)"
            " VALUES (?, ?, ?, ?, ?)",
            [(f.sha256, c.index, c.sha256, c.offset, c.size) for c in f.chunks],
        )
        existing = f
    conn.execute(
        "INSERT INTO file_owners (sha256, owner, name, title, description, announce_dht, source,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sha256, owner) DO UPDATE SET"
        " title = coalesce(excluded.title, title), description = coalesce(excluded.description, description)",
        (f.sha256, ctx.owner or "", ctx.name or f.name, ctx.title, ctx.description,
         1 if ctx.announce_dht else 0, ctx.source, now),
    )
    assert existing is not None
    if video and not ctx.derived:
        _mark_unexamined_txn(conn, f.sha256)
    return existing, new


# What the transcoder reports on (probe result or error) in ``files.meta``: a file that looks
# like a video, uploaded by someone, with neither key is marked ``unexamined_video`` (schema/002).
EXAMINED_KEYS = ("video", "video_error")


def _mark_unexamined_txn(conn: sqlite3.Connection, sha256: str) -> None:
    """Mark the video ``sha256`` as never examined unless it was (an uploader's reference was
    just added: derived files are never examined)."""
    conn.execute(
        "UPDATE files SET unexamined_video = 1 WHERE sha256 = ? AND unexamined_video IS NULL"
        " AND json_extract(meta, '$.video') IS NULL AND json_extract(meta, '$.video_error') IS NULL",
        (sha256,),
    )


def _unexamined_videos_txn(
    conn: sqlite3.Connection, after: tuple[float, str] | None, limit: int
) -> list[StoredFile]:
    """The marked files (see :func:`_mark_unexamined_txn`) in the order (created_at, sha256),
    from after ``after``; at most ``limit``. Reads only the partial index's rows."""
    where = "unexamined_video = 1"
    args: tuple[Any, ...] = ()
    if after is not None:
        where += " AND (created_at > ? OR (created_at = ? AND sha256 > ?))"
        args = (after[0], after[0], after[1])
    rows = conn.execute(
        f"SELECT * FROM files INDEXED BY files_unexamined_videos WHERE {where}"
        " ORDER BY created_at, sha256 LIMIT ?", (*args, limit)).fetchall()
    return [_row_to_file(conn, r) for r in rows]


def _remove_owner_txn(
    conn: sqlite3.Connection, sha256: str, owner: str | None
) -> tuple[StoredFile | None, list[str]]:
    """Drop one owner (None: all owners). If none is left, drop the file row.

    Returns (the deleted file or None, chunk hashes no longer used by any file).
    """
    if owner is None:
        cur = conn.execute("DELETE FROM file_owners WHERE sha256 = ?", (sha256,))
    else:
        cur = conn.execute(
            "DELETE FROM file_owners WHERE sha256 = ? AND owner = ?", (sha256, owner)
        )
    if cur.rowcount == 0 and owner is not None:
        raise KeyError(sha256)
    left = conn.execute("SELECT count(*) FROM file_owners WHERE sha256 = ?", (sha256,)).fetchone()[0]
    if left:
        if conn.execute(
                f"SELECT 1 FROM file_owners WHERE sha256 = ? AND source NOT IN"
                f" ({_derived_placeholders()}) LIMIT 1", (sha256, *DERIVED_SOURCES)).fetchone() is None:
            # only derived now: not a video anyone uploaded, never examined
            conn.execute("UPDATE files SET unexamined_video = NULL WHERE sha256 = ?", (sha256,))
        return None, []
    f = _get_txn(conn, "sha256", sha256)
    if f is None:
        return None, []
    conn.execute("DELETE FROM files WHERE sha256 = ?", (sha256,))
    unused = []
    for c in {c.sha256 for c in f.chunks}:
        if conn.execute(
            "SELECT 1 FROM file_chunks WHERE chunk_sha256 = ? LIMIT 1", (c,)
        ).fetchone() is None:
            unused.append(c)
    return f, unused


def _remove_files_txn(
    conn: sqlite3.Connection, sha256s: list[str],
    still: Callable[[FileUse], bool] | None = None,
) -> list[tuple[StoredFile, list[str]]]:
    """Drop these files with every owner's reference (retention; those no longer stored are
    skipped, and with ``still`` those whose use, read again in this transaction, it refuses).
    Returns each file removed with the chunk hashes no file uses any more (a chunk another file
    shares stays)."""
    if still is not None:
        uses = _uses_txn(conn, sha256s)
        sha256s = [s for s in sha256s if s in uses and still(uses[s])]
    removed: list[tuple[StoredFile, list[str]]] = []
    for sha256 in sha256s:
        f = _get_txn(conn, "sha256", sha256)
        if f is None:
            continue
        conn.execute("DELETE FROM file_owners WHERE sha256 = ?", (sha256,))
        conn.execute("DELETE FROM files WHERE sha256 = ?", (sha256,))
        removed.append((f, []))
    claimed: set[str] = set()
    for f, unused in removed:  # once every file of the batch is gone
        for c in sorted({c.sha256 for c in f.chunks} - claimed):
            claimed.add(c)
            if conn.execute(
                "SELECT 1 FROM file_chunks WHERE chunk_sha256 = ? LIMIT 1", (c,)
            ).fetchone() is None:
                unused.append(c)
    return removed


def _ownership(row: sqlite3.Row) -> Ownership:
    return Ownership(
        sha256=row["sha256"],
        owner=row["owner"],
        name=clean_name(row["name"], row["sha256"]),  # rows stored before the rule, too
        title=row["title"],
        description=row["description"],
        announce_dht=bool(row["announce_dht"]),
        source=row["source"],
        created_at=row["created_at"],
    )


def _owners_txn(conn: sqlite3.Connection, sha256: str) -> list[Ownership]:
    return [
        _ownership(r)
        for r in conn.execute(
            "SELECT * FROM file_owners WHERE sha256 = ? ORDER BY created_at", (sha256,)
        )
    ]


def _owner_files_txn(
    conn: sqlite3.Connection, owner: str, limit: int, offset: int
) -> tuple[list[tuple[StoredFile, Ownership]], int]:
    total = conn.execute(
        "SELECT count(*) FROM file_owners WHERE owner = ?", (owner,)
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT o.*, f.sha256 AS fsha FROM file_owners o JOIN files f ON f.sha256 = o.sha256"
        " WHERE o.owner = ? ORDER BY o.created_at DESC, o.sha256 LIMIT ? OFFSET ?",
        (owner, limit, offset),
    ).fetchall()
    out = []
    for r in rows:
        f = _get_txn(conn, "sha256", r["fsha"])
        if f is not None:
            out.append((f, _ownership(r)))
    return out, total


def _usage_txn(conn: sqlite3.Connection, owner: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*), coalesce(sum(f.size), 0) FROM file_owners o"
        " JOIN files f ON f.sha256 = o.sha256 WHERE o.owner = ?",
        (owner,),
    ).fetchone()
    return int(row[0]), int(row[1])


def _all_info_hashes_txn(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT info_hash FROM files")]


def _derived_placeholders() -> str:
    return ", ".join("?" * len(DERIVED_SOURCES))


def _announced_info_hashes_txn(conn: sqlite3.Connection) -> list[str]:
    """Info-hashes of the files at least one owner did not derive (see DERIVED_SOURCES)."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT f.info_hash FROM files f JOIN file_owners o ON o.sha256 = f.sha256"
        f" WHERE o.source NOT IN ({_derived_placeholders()})", tuple(DERIVED_SOURCES))]


def _only_derived_txn(conn: sqlite3.Connection, sha256: str) -> str | None:
    """The info-hash of ``sha256`` when it is stored and every owner left derived it."""
    row = conn.execute("SELECT info_hash FROM files WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None or conn.execute(
            f"SELECT 1 FROM file_owners WHERE sha256 = ? AND source NOT IN"
            f" ({_derived_placeholders()}) LIMIT 1", (sha256, *DERIVED_SOURCES)).fetchone():
        return None
    return str(row[0])


def _set_meta_txn(conn: sqlite3.Connection, sha256: str, updates: dict[str, Any]) -> None:
    row = conn.execute("SELECT meta FROM files WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None:
        raise KeyError(sha256)
    meta = json.loads(row[0] or "{}")
    meta.update(updates)
    conn.execute("UPDATE files SET meta = ? WHERE sha256 = ?", (json.dumps(meta), sha256))
    if any(k in meta for k in EXAMINED_KEYS):
        conn.execute("UPDATE files SET unexamined_video = NULL WHERE sha256 = ?"
                     " AND unexamined_video IS NOT NULL", (sha256,))


def _stats_txn(conn: sqlite3.Connection) -> dict[str, int]:
    files, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM files").fetchone()
    chunks = conn.execute("SELECT count(DISTINCT chunk_sha256) FROM file_chunks").fetchone()[0]
    return {"files": int(files), "bytes": int(size), "chunks": int(chunks)}


def _search_txn(conn: sqlite3.Connection, q: str, limit: int,
                offset: int) -> tuple[list[tuple[StoredFile, list[Ownership]]], int]:
    """Files for the admin, newest first: ``q`` (empty: every file) matches the start of a
    SHA-256, an info-hash or an owner's pubkey when it is hex, and anywhere in a file's name or
    an owner's name or title. Each file comes with its owners."""
    text = q.strip()
    where = ""
    args: list[Any] = []
    if text:
        hexq = text.lower() if all(c in "0123456789abcdefABCDEF" for c in text) else None
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where = (
            "WHERE (? IS NOT NULL AND (substr(f.sha256, 1, length(?)) = ?"
            " OR substr(f.info_hash, 1, length(?)) = ?"
            " OR EXISTS (SELECT 1 FROM file_owners o WHERE o.sha256 = f.sha256"
            " AND substr(o.owner, 1, length(?)) = ?)))"
            " OR f.name LIKE ? ESCAPE '\\'"
            " OR EXISTS (SELECT 1 FROM file_owners o WHERE o.sha256 = f.sha256"
            " AND (o.name LIKE ? ESCAPE '\\' OR o.title LIKE ? ESCAPE '\\'))"
        )
        args = [hexq, hexq, hexq, hexq, hexq, hexq, hexq, like, like, like]
    (total,) = conn.execute(f"SELECT count(*) FROM files f {where}", args).fetchone()
    rows = conn.execute(
        f"SELECT f.sha256 FROM files f {where} ORDER BY f.created_at DESC, f.sha256"
        " LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
    out = []
    for (sha,) in rows:
        f = _get_txn(conn, "sha256", sha)
        if f is not None:
            out.append((f, _owners_txn(conn, sha)))
    return out, int(total)


# --------------------------------------------------------------------------- listings


def _list_txn(
    conn: sqlite3.Connection,
    owner: str,
    since: int | None,
    until: int | None,
    cursor: str | None,
    limit: int,
) -> list[ListedBlob]:
    """Newest first; ``cursor`` is the sha256 of the last blob of the previous page."""
    where = ["o.owner = ?"]
    args: list[Any] = [owner]
    if since is not None:
        where.append("o.created_at >= ?")
        args.append(since)
    if until is not None:
        where.append("o.created_at < ?")
        args.append(until + 1)
    if cursor is not None:
        row = conn.execute(
            "SELECT created_at FROM file_owners WHERE owner = ? AND sha256 = ?", (owner, cursor)
        ).fetchone()
        if row is not None:
            where.append("(o.created_at < ? OR (o.created_at = ? AND o.sha256 > ?))")
            args += [row[0], row[0], cursor]
    rows = conn.execute(
        "SELECT o.sha256, o.created_at FROM file_owners o JOIN files f ON f.sha256 = o.sha256"
        f" WHERE {' AND '.join(where)} ORDER BY o.created_at DESC, o.sha256 LIMIT ?",
        (*args, limit),
    ).fetchall()
    out = []
    for sha, created in rows:
        f = _get_txn(conn, "sha256", sha)
        if f is not None:
            out.append(ListedBlob(file=f, uploaded=created))
    return out


def _uploaded_txn(conn: sqlite3.Connection, sha256: str, owner: str) -> float | None:
    row = conn.execute(
        "SELECT created_at FROM file_owners WHERE sha256 = ? AND owner = ?", (sha256, owner)
    ).fetchone()
    return float(row[0]) if row else None

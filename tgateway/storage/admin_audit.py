"""SQL of the admin audit log (table ``admin_audit``, ``schema/042_admin_audit.sql``): one row
per admin action, with the admin's pubkey, what was acted on and a JSON detail. Each ``_txn``
function runs on the database thread through ``Db.run``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .api import Db

__all__ = ["AuditEntry", "AuditLog"]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    admin: str
    action: str
    target: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "admin": self.admin, "action": self.action,
                "target": self.target, "detail": self.detail}


def _add_txn(conn: sqlite3.Connection, at: float, admin: str, action: str, target: str,
             detail: str) -> int:
    cur = conn.execute(
        "INSERT INTO admin_audit (at, admin, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (at, admin, action, target, detail))
    return int(cur.lastrowid or 0)


def _page_txn(conn: sqlite3.Connection, target: str | None, limit: int,
              offset: int) -> tuple[list[AuditEntry], int]:
    where, args = ("WHERE target = ?", [target]) if target is not None else ("", [])
    (total,) = conn.execute(f"SELECT count(*) FROM admin_audit {where}", args).fetchone()
    rows = conn.execute(
        f"SELECT * FROM admin_audit {where} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*args, limit, offset)).fetchall()
    return [AuditEntry(id=r["id"], at=r["at"], admin=r["admin"], action=r["action"],
                       target=r["target"], detail=json.loads(r["detail"] or "{}"))
            for r in rows], int(total)


class AuditLog:
    """The ``admin_audit`` table."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def add(self, *, at: float, admin: str, action: str, target: str,
                  detail: dict[str, Any]) -> int:
        entry_id: int = await self.db.run(
            _add_txn, at, admin, action, target,
            json.dumps(detail, ensure_ascii=False, separators=(",", ":"), sort_keys=True))
        return entry_id

    async def page(self, *, target: str | None, limit: int,
                   offset: int) -> tuple[list[AuditEntry], int]:
        page: tuple[list[AuditEntry], int] = await self.db.run(_page_txn, target, limit, offset)
        return page

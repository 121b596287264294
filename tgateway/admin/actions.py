"""The admin's actions: delete (and tombstone) a file, change a user, act on a report.

Each action is done through the components' seams only (the content store's ``remove_owner``, the
block list, the user policy, the reports table) and ends with one row in the audit log and one log
event naming the admin. A deletion goes out as the content store's "deleted" event, to which the
tracker, DHT, peer, transcoder and Nostr (NIP-09) react, as they do to any deletion; the tombstone
goes out as the block list's "blocked" event before it.

What each action does:

- :meth:`Moderation.delete_file`: tombstone the SHA-256 and the info-hash (durably, first), drop
  every owner's reference (the bytes go), mark the open reports about it ``actioned``;
- :meth:`Moderation.update_user`: a storage limit of their own (None: the default), a ban or its
  lifting; with ``delete_files`` a ban also drops every reference the user holds (a file goes
  when no other owner is left; nothing is tombstoned: the content was not judged);
- :meth:`Moderation.act_on_report`: ``dismiss`` (nothing else changes), ``delete`` (each reported
  blob as :meth:`delete_file`), ``ban`` (``delete``, then ban every uploader of those blobs, with
  ``delete_files`` as above). Admins are never banned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.errors import BadRequest, NotFound
from tgateway.storage.admin_audit import AuditLog
from tgateway.storage.api import ContentStore
from tgateway.storage.blossom_reports import Report
from tgateway.storage.policy import StoredBlockList, UserPolicy
from tgateway.storage.users import KEEP, UserRecord

__all__ = ["ACTIONS", "Moderation", "ReportStore", "is_user_key"]

#: what ``POST /api/admin/reports/<id>`` takes
ACTIONS = ("dismiss", "delete", "ban")

DELETE_PAGE = 500


class ReportStore(Protocol):
    """The BUD-09 reports, as the admin needs them (:class:`~tgateway.storage.blossom_reports.BlossomStore`)."""

    async def reports(self, *, status: str | None = "open", sha256: str | None = None,
                      limit: int = 100, offset: int = 0) -> list[Report]: ...

    async def report(self, report_id: str) -> Report | None: ...

    async def count_reports(self, *, status: str | None = "open",
                            sha256: str | None = None) -> int: ...

    async def report_counts(self) -> dict[str, int]: ...

    async def set_report_status(self, report_id: str, status: str) -> bool: ...

    async def close_reports_about(self, sha256: str, status: str = "actioned") -> int: ...


def is_user_key(owner: str) -> bool:
    """An owner that is a person's pubkey: not anonymous ('') and not a component's owner such
    as ``transcode:<sha256>``."""
    return bool(owner) and ":" not in owner


@dataclass(frozen=True)
class Deleted:
    sha256: str
    info_hash: str | None
    owners: tuple[str, ...]
    file_deleted: bool
    newly_blocked: bool
    reports_closed: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "info_hash": self.info_hash, "blocked": True,
                "newly_blocked": self.newly_blocked, "file_deleted": self.file_deleted,
                "owners": list(self.owners), "reports_closed": self.reports_closed}


class Moderation:
    """The admin's actions (see the module docstring). ``admins``: the keys of
    ``admin.pubkeys``, never banned."""

    log = Logger()

    def __init__(self, *, store: ContentStore, blocks: StoredBlockList, users: UserPolicy,
                 audit: AuditLog, reports: ReportStore | None, clock: IReactorTime,
                 admins: frozenset[str]) -> None:
        self.store = store
        self.blocks = blocks
        self.users = users
        self.audit = audit
        self.reports = reports
        self.clock = clock
        self.admins = admins

    async def record(self, admin: str, action: str, target: str, detail: dict[str, Any]) -> None:
        """The audit row and the log event of one action."""
        await self.audit.add(at=self.clock.seconds(), admin=admin, action=action, target=target,
                             detail=detail)
        self.log.info("admin {admin}: {action} {target}", admin=admin, action=action,
                      target=target, detail=detail)

    # files ----------------------------------------------------------------------------

    async def _delete(self, admin: str, sha256: str, reason: str) -> Deleted:
        f = await self.store.get(sha256)
        if f is None and not self.blocks.is_blocked_sha256(sha256):
            raise NotFound(f"no file with sha256 {sha256}", code="file_not_found")
        owners = tuple(o.owner for o in await self.store.owners(sha256)) if f else ()
        newly = await self.blocks.block(sha256, f.info_hash if f else None, reason=reason,
                                        by=admin)
        gone = await self.store.remove_owner(sha256, None) if f is not None else None
        closed = await self.reports.close_reports_about(sha256) if self.reports else 0
        return Deleted(sha256=sha256, info_hash=f.info_hash if f else None, owners=owners,
                       file_deleted=gone is not None, newly_blocked=newly,
                       reports_closed=closed)

    async def delete_file(self, admin: str, sha256: str, reason: str = "") -> Deleted:
        """Tombstone and delete a stored file (a tombstoned one again: nothing more happens).
        NotFound when it is neither stored nor tombstoned."""
        done = await self._delete(admin, sha256, reason)
        await self.record(admin, "file.delete", sha256, {**done.to_json(), "reason": reason})
        return done

    # users ----------------------------------------------------------------------------

    async def update_user(self, admin: str, pubkey: str, *, storage_limit: Any = KEEP,
                          banned: Any = KEEP, delete_files: bool = False) -> dict[str, Any]:
        """Change a user's storage limit and/or ban; returns what was done. BadRequest for a
        ban of an admin, or ``delete_files`` without a ban."""
        if banned is True and pubkey in self.admins:
            raise BadRequest("an admin (admin.pubkeys) cannot be banned", code="cannot_ban_admin")
        if delete_files and banned is not True:
            raise BadRequest("delete_files goes with banned: true", code="invalid_field")
        record = await self.users.update(pubkey, storage_limit=storage_limit, banned=banned,
                                         by=admin, now=self.clock.seconds())
        removed, gone = (await self._drop_files(pubkey)) if delete_files else (0, 0)
        detail: dict[str, Any] = {"banned": record.banned,
                                  "storage_limit": record.storage_limit,
                                  "delete_files": delete_files, "references_removed": removed,
                                  "files_deleted": gone}
        await self.record(admin, "user.update", pubkey, detail)
        return {**await self.describe_user(pubkey, record), "references_removed": removed,
                "files_deleted": gone}

    async def _drop_files(self, pubkey: str) -> tuple[int, int]:
        """Drop every reference ``pubkey`` holds: (references removed, files gone)."""
        removed = gone = 0
        while True:
            rows, _ = await self.store.owner_files(pubkey, DELETE_PAGE, 0)
            if not rows:
                return removed, gone
            progress = False
            for f, _ownership in rows:
                try:
                    deleted = await self.store.remove_owner(f.sha256, pubkey)
                except KeyError:
                    continue  # gone meanwhile
                progress = True
                removed += 1
                gone += deleted is not None
            if not progress:
                return removed, gone

    async def describe_user(self, pubkey: str, record: UserRecord | None = None) -> dict[str, Any]:
        """One user as the admin routes show it."""
        if record is None:
            record = await self.users.table.get(pubkey)
        files, used = await self.store.usage(pubkey)
        return {
            "pubkey": pubkey,
            "files": files,
            "bytes_used": used,
            "storage_limit": record.storage_limit if record else None,
            "quota": self.users.quota(pubkey),
            "banned": self.users.is_banned(pubkey),
            "banned_at": record.banned_at if record else None,
            "admin": pubkey in self.admins,
        }

    # reports --------------------------------------------------------------------------

    async def act_on_report(self, admin: str, report_id: str, action: str, *,
                            delete_files: bool = False) -> dict[str, Any]:
        """``dismiss``, ``delete`` or ``ban`` (see the module docstring). NotFound for an
        unknown report; BadRequest for another action."""
        if action not in ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(ACTIONS)}", code="invalid_action")
        if delete_files and action != "ban":
            raise BadRequest("delete_files goes with the ban action", code="invalid_field")
        if self.reports is None:
            raise NotFound("reports are kept by the Blossom server, which is not running here",
                           code="report_not_found")
        report = await self.reports.report(report_id)
        if report is None:
            raise NotFound(f"no report {report_id}", code="report_not_found")
        out: dict[str, Any] = {"id": report_id, "action": action}
        if action == "dismiss":
            await self.reports.set_report_status(report_id, "dismissed")
            out["status"] = "dismissed"
            await self.record(admin, "report.dismiss", report_id, {})
            return out
        uploaders: dict[str, None] = {}
        if action == "ban":
            for sha, _type in report.blobs:
                for o in await self.store.owners(sha):
                    if is_user_key(o.owner) and o.owner not in self.admins:
                        uploaders[o.owner] = None
        deleted = []
        for sha, _type in report.blobs:
            try:
                deleted.append((await self._delete(admin, sha, f"report {report_id}")).to_json())
            except NotFound:
                deleted.append({"sha256": sha, "blocked": False, "file_deleted": False,
                                "error": "file_not_found"})
        banned = []
        for pubkey in uploaders:
            banned.append(await self.update_user(admin, pubkey, banned=True,
                                                 delete_files=delete_files))
        await self.reports.set_report_status(report_id, "actioned")
        out.update(status="actioned", files=deleted, banned=[u["pubkey"] for u in banned])
        await self.record(admin, f"report.{action}", report_id,
                          {"files": [d["sha256"] for d in deleted], "banned": out["banned"],
                           "delete_files": delete_files})
        return out

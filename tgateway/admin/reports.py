"""``/api/admin/reports``: the BUD-09 reports the Blossom server keeps, each with its blobs
(stored or blocked, and their uploaders), and an admin's decision on one (dismiss, delete, ban:
:meth:`Moderation.act_on_report <tgateway.admin.actions.Moderation.act_on_report>`). Without the
Blossom server they are a 404 ``reports_unavailable``."""

from __future__ import annotations

from typing import Any

from tgateway.errors import BadRequest, NotFound
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.converters import parse_hex
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import HEX64, Body, Op, Param, Reply, Schema
from tgateway.http.query import query_text
from tgateway.storage.api import ContentStore

from .actions import Moderation
from .routing import (
    APP,
    BAD_PAGE,
    PAGE_PARAMS,
    TAGS,
    bool_field,
    choice,
    json_object,
    only,
    page,
    paged,
    paged_schema,
)

__all__ = ["ReportRoutes"]

REPORT_STATES = ("open", "dismissed", "actioned", "all")

_REPORT: Schema = {
    "type": "object",
    "required": ["id", "status", "reporter", "created_at", "received_at", "content", "blobs",
                 "event"],
    "properties": {
        "id": {"type": "string"}, "status": {"enum": ["open", "dismissed", "actioned"]},
        "reporter": {"type": "string"}, "created_at": {"type": "integer"},
        "received_at": {"type": "number"}, "content": {"type": "string"},
        "blobs": {"type": "array", "items": {
            "type": "object", "required": ["sha256", "type", "stored", "blocked", "uploaders"],
            "properties": {"sha256": {"type": "string"}, "type": {"type": "string"},
                           "stored": {"type": "boolean"}, "blocked": {"type": "boolean"},
                           "uploaders": {"type": "array", "items": {"type": "string"}}}}},
        "event": {"type": "object", "description": "the kind 1984 event as received"},
    },
}


class ReportRoutes:
    """The report routes of :class:`~tgateway.admin.routes.AdminApi`."""

    auth: Authenticator
    moderation: Moderation
    store: ContentStore

    def _reports(self) -> Any:
        reports = self.moderation.reports
        if reports is None:
            raise NotFound("reports are kept by the Blossom server, which is not running here",
                           code="reports_unavailable")
        return reports

    @authorized(APP, "/api/admin/reports", methods=["GET"], need=Need.ADMIN, op=Op(
        "BUD-09 reports, newest first", tags=TAGS, name="admin_reports",
        description="Each with its blobs: whether each is stored or blocked, and its uploaders.",
        params=[Param("status", schema={"type": "string", "enum": list(REPORT_STATES),
                                        "default": "open"}),
                Param("sha256", schema={"type": "string", "pattern": HEX64},
                      description="only the reports naming this blob"),
                *PAGE_PARAMS],
        replies={200: Reply("a page of reports", json=paged_schema("reports", _REPORT))},
        errors={400: BAD_PAGE,
                404: "the Blossom server, which keeps reports, is not running here"}))
    async def reports(self, request: Any, principal: Principal) -> bytes:
        limit, offset = page(request)
        status = choice(request, "status", REPORT_STATES, "open")
        raw_sha = query_text(request, "sha256")
        sha = parse_hex(raw_sha, 64, "sha256") if raw_sha else None
        store = self._reports()
        wanted = None if status == "all" else status
        rows = await store.reports(status=wanted, sha256=sha, limit=limit, offset=offset)
        total = await store.count_reports(status=wanted, sha256=sha)
        items = []
        for r in rows:
            blobs = []
            for blob, kind in r.blobs:
                owners = await self.store.owners(blob)
                blobs.append({"sha256": blob, "type": kind, "stored": bool(owners),
                              "blocked": self.moderation.blocks.is_blocked_sha256(blob),
                              "uploaders": [o.owner for o in owners if o.owner
                                            and ":" not in o.owner]})
            items.append({"id": r.id, "status": r.status, "reporter": r.pubkey,
                          "created_at": r.created_at, "received_at": r.received_at,
                          "content": r.content, "blobs": blobs, "event": r.event})
        return json_body(request, paged(items, total, limit, offset, "reports"))

    @authorized(APP, "/api/admin/reports/<report_id>", methods=["POST"], need=Need.ADMIN, op=Op(
        "Act on a report", tags=TAGS, name="admin_act_on_report",
        description="dismiss: nothing else changes; delete: every reported blob, as DELETE "
                    "/api/admin/files/{sha}; ban: delete, then ban every uploader of those "
                    "blobs (delete_files as for a user).",
        params=[Param("report_id", "path", {"type": "string", "pattern": HEX64},
                      description="the report's event id")],
        body=Body({"application/json": {
            "type": "object", "required": ["action"], "additionalProperties": False,
            "properties": {"action": {"enum": ["dismiss", "delete", "ban"]},
                           "delete_files": {"type": "boolean"}}}}),
        replies={200: Reply("what was done", json={
            "type": "object", "required": ["id", "action", "status"],
            "properties": {"id": {"type": "string"}, "action": {"type": "string"},
                           "status": {"enum": ["dismissed", "actioned"]},
                           "files": {"type": "array", "items": {"type": "object"}},
                           "banned": {"type": "array", "items": {"type": "string"}}}})},
        errors={400: "a report id that is not 64 hex digits, not a JSON object, an unknown "
                     "action or field, delete_files without ban",
                404: "no such report"}))
    async def act_on_report(self, request: Any, principal: Principal, report_id: str) -> bytes:
        rid = parse_hex(report_id, 64, "report id")
        body = json_object(request, required=True)
        only(body, ("action", "delete_files"))
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("action must be dismiss, delete or ban", code="invalid_action")
        delete_files = bool(bool_field(body, "delete_files"))
        out = await self.moderation.act_on_report(principal.pubkey, rid, action,
                                                  delete_files=delete_files)
        return json_body(request, out)

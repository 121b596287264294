"""``/api/admin/files``: the stored files with their owners (a search by hash, info-hash, owner
or name), or the block list (tombstones); and an admin's deletion of a file, which tombstones it
(:meth:`Moderation.delete_file <tgateway.admin.actions.Moderation.delete_file>`)."""

from __future__ import annotations

from typing import Any

from tgateway.errors import BadRequest
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Body, Op, Param, Reply, Schema
from tgateway.http.query import query_text
from tgateway.links import Links
from tgateway.storage.api import ContentStore
from tgateway.web.api import FILE

from .actions import Moderation
from .routing import (
    APP,
    BAD_PAGE,
    FLAG,
    INT,
    PAGE_PARAMS,
    STR_OR_NULL,
    TAGS,
    flag,
    json_object,
    only,
    page,
    paged,
    paged_schema,
)

__all__ = ["FileRoutes"]

_OWNER: Schema = {
    "type": "object", "required": ["pubkey", "name", "title", "source", "uploaded_at"],
    "properties": {"pubkey": {**STR_OR_NULL, "description": "null: anonymous"},
                   "name": STR_OR_NULL, "title": STR_OR_NULL, "source": STR_OR_NULL,
                   "uploaded_at": {"type": "number"}},
}
_ADMIN_FILE: Schema = {
    **FILE, "required": [*FILE["required"], "owners"],
    "properties": {**FILE["properties"], "owners": {"type": "array", "items": _OWNER}},
}
_BLOCKED: Schema = {
    "type": "object", "required": ["sha256", "info_hash", "reason", "blocked_by", "blocked_at"],
    "properties": {"sha256": {"type": "string"}, "info_hash": STR_OR_NULL,
                   "reason": {"type": "string"}, "blocked_by": STR_OR_NULL,
                   "blocked_at": {"type": "number"}},
}
_DELETED: Schema = {
    "type": "object",
    "required": ["sha256", "info_hash", "blocked", "newly_blocked", "file_deleted", "owners",
                 "reports_closed"],
    "properties": {"sha256": {"type": "string"}, "info_hash": STR_OR_NULL,
                   "blocked": {"const": True}, "newly_blocked": {"type": "boolean"},
                   "file_deleted": {"type": "boolean"},
                   "owners": {"type": "array", "items": {"type": "string"}},
                   "reports_closed": INT},
}


class FileRoutes:
    """The file routes of :class:`~tgateway.admin.routes.AdminApi`."""

    auth: Authenticator
    moderation: Moderation
    store: ContentStore
    links: Links

    @authorized(APP, "/api/admin/files", methods=["GET"], need=Need.ADMIN, op=Op(
        "Files with their owners, newest first; or the block list", tags=TAGS,
        name="admin_files",
        params=[Param("q", schema={"type": "string", "maxLength": 256},
                      description="the start of a SHA-256, an info-hash or an owner's key, or "
                                  "part of a name or title"),
                Param("blocked", schema=FLAG,
                      description="the block list (tombstones) instead of the files"),
                *PAGE_PARAMS],
        replies={200: Reply("a page of files (or, with blocked, of tombstones)", json={
            "anyOf": [paged_schema("files", _ADMIN_FILE), paged_schema("blocked", _BLOCKED)]})},
        errors={400: BAD_PAGE}))
    async def files(self, request: Any, principal: Principal) -> bytes:
        limit, offset = page(request)
        if flag(request, "blocked"):
            blocked, total = await self.moderation.blocks.table.page(limit, offset)
            return json_body(request, paged([b.to_json() for b in blocked], total, limit,
                                             offset, "blocked"))
        q = query_text(request, "q") or ""
        if len(q) > 256:
            raise BadRequest("q is at most 256 characters", code="invalid_field")
        rows, total = await self.store.search(q, limit, offset)
        items = []
        for f, owners in rows:
            item = self.links.describe(f, [o.owner for o in owners if o.owner])
            item["owners"] = [{"pubkey": o.owner or None, "name": o.name, "title": o.title,
                               "source": o.source, "uploaded_at": o.created_at} for o in owners]
            items.append(item)
        return json_body(request, paged(items, total, limit, offset, "files"))

    @authorized(APP, "/api/admin/files/<sha256:sha>", methods=["DELETE"], need=Need.ADMIN,
                op=Op(
        "Tombstone a file and delete it", tags=TAGS, name="admin_delete_file",
        description="Every owner's reference goes; its SHA-256 and info-hash are refused from "
                    "then on, on every face; its open reports become actioned. A tombstoned "
                    "file again: nothing more happens.",
        body=Body({"application/json": {
            "type": "object", "additionalProperties": False,
            "properties": {"reason": {"type": "string", "maxLength": 1000}}}}, required=False),
        replies={200: Reply("what was done", json=_DELETED)},
        errors={400: "not a JSON object, an unknown field or a bad reason",
                404: "neither stored nor tombstoned"}))
    async def delete_file(self, request: Any, principal: Principal, sha: str) -> bytes:
        body = json_object(request, required=False)
        only(body, ("reason",))
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 1000:
            raise BadRequest("reason must be text of at most 1000 characters",
                             code="invalid_field")
        done = await self.moderation.delete_file(principal.pubkey, sha, reason)
        return json_body(request, done.to_json())

"""``/api/admin/users``: the users (keys that own files, or that an admin changed), one user,
and an admin's change of a user's storage limit or ban (:meth:`Moderation.update_user
<tgateway.admin.actions.Moderation.update_user>`)."""

from __future__ import annotations

from typing import Any

from tgateway.config import parse_size
from tgateway.errors import BadRequest
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Body, Op, Param, Reply, Schema
from tgateway.http.query import query_text
from tgateway.storage.users import KEEP

from .actions import Moderation
from .routing import (
    APP,
    BAD_PAGE,
    FLAG,
    INT,
    NUM_OR_NULL,
    PAGE_PARAMS,
    TAGS,
    bool_field,
    flag,
    json_object,
    only,
    page,
    paged,
    paged_schema,
)

__all__ = ["UserRoutes"]

#: the largest storage limit SQLite's INTEGER holds
MAX_STORAGE_LIMIT = 2**63 - 1

_USER: Schema = {
    "type": "object",
    "required": ["pubkey", "files", "bytes_used", "storage_limit", "quota", "banned",
                 "banned_at", "admin"],
    "properties": {
        "pubkey": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "files": INT, "bytes_used": INT,
        "storage_limit": {"type": ["integer", "null"],
                          "description": "the user's own limit; null: the default"},
        "quota": {"type": "integer", "description": "the bytes the user's files may take"},
        "banned": {"type": "boolean"}, "banned_at": NUM_OR_NULL,
        "admin": {"type": "boolean", "description": "a key of admin.pubkeys"},
    },
}
_USER_UPDATED: Schema = {
    **_USER, "required": [*_USER["required"], "references_removed", "files_deleted"],
    "properties": {**_USER["properties"], "references_removed": INT, "files_deleted": INT},
}


def _storage_limit(value: Any) -> int | None:
    """null (the default limit), a number of bytes, or a size such as "5GB"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest('storage_limit must be a number of bytes, a size such as "5GB", or '
                         "null", code="invalid_field")
    try:
        size = parse_size(value)
    except ValueError:
        raise BadRequest('storage_limit must be a number of bytes, a size such as "5GB", or '
                         "null", code="invalid_field") from None
    if size > MAX_STORAGE_LIMIT:
        raise BadRequest(f"storage_limit is at most {MAX_STORAGE_LIMIT} bytes",
                         code="invalid_field")
    return size


class UserRoutes:
    """The user routes of :class:`~tgateway.admin.routes.AdminApi`."""

    auth: Authenticator
    moderation: Moderation

    @authorized(APP, "/api/admin/users", methods=["GET"], need=Need.ADMIN, op=Op(
        "Users, most bytes first", tags=TAGS, name="admin_users",
        description="Keys that own files, or that an admin changed.",
        params=[Param("q", schema={"type": "string", "pattern": "^[0-9a-fA-F]{0,64}$"},
                      description="the start of a hex public key"),
                Param("banned", schema=FLAG, description="only banned users"),
                *PAGE_PARAMS],
        replies={200: Reply("a page of users", json=paged_schema("users", _USER))},
        errors={400: BAD_PAGE}))
    async def users(self, request: Any, principal: Principal) -> bytes:
        limit, offset = page(request)
        q = (query_text(request, "q") or "").strip().lower()
        if q and (len(q) > 64 or not all(c in "0123456789abcdef" for c in q)):
            raise BadRequest("q must be the start of a hex pubkey", code="invalid_field")
        m = self.moderation
        rows, total = await m.users.table.listing(prefix=q or None,
                                                  banned_only=flag(request, "banned"),
                                                  limit=limit, offset=offset)
        items = [{"pubkey": r.pubkey, "files": r.files, "bytes_used": r.bytes_used,
                  "storage_limit": r.storage_limit, "quota": m.users.quota(r.pubkey),
                  "banned": r.banned, "banned_at": r.banned_at, "admin": r.pubkey in m.admins}
                 for r in rows]
        return json_body(request, paged(items, total, limit, offset, "users"))

    @authorized(APP, "/api/admin/users/<pubkey:pubkey>", methods=["GET"], need=Need.ADMIN,
                op=Op("One user", tags=TAGS, name="admin_user",
                      description="Any key: one that never uploaded has no files and the "
                                  "default quota.",
                      replies={200: Reply("the user", json=_USER)}))
    async def user(self, request: Any, principal: Principal, pubkey: str) -> bytes:
        return json_body(request, await self.moderation.describe_user(pubkey))

    @authorized(APP, "/api/admin/users/<pubkey:pubkey>", methods=["PUT"], need=Need.ADMIN,
                op=Op(
        "Change a user's storage limit or ban", tags=TAGS, name="admin_update_user",
        description="storage_limit: a number of bytes, a size such as \"5GB\", or null (the "
                    "default again); banned: a ban or its lifting; delete_files (with banned: "
                    "true) drops every reference the user holds (a file goes when no other "
                    "owner is left; nothing is tombstoned). Admins cannot be banned.",
        body=Body({"application/json": {
            "type": "object", "additionalProperties": False,
            "anyOf": [{"required": ["storage_limit"]}, {"required": ["banned"]}],
            "properties": {
                "storage_limit": {"anyOf": [{"type": "integer", "minimum": 0,
                                             "maximum": MAX_STORAGE_LIMIT},
                                            {"type": "string", "pattern":
                                             "^[0-9]{1,12} ?([kKmMgGtT]([iI]?[bB])?|[bB])?$"},
                                            {"type": "null"}]},
                "banned": {"type": "boolean"}, "delete_files": {"type": "boolean"}}}}),
        replies={200: Reply("the user as changed, and what was removed", json=_USER_UPDATED)},
        errors={400: "not a JSON object, an unknown field, a bad value, nothing to change, "
                     "delete_files without a ban, or a ban of an admin (cannot_ban_admin)"}))
    async def update_user(self, request: Any, principal: Principal, pubkey: str) -> bytes:
        body = json_object(request, required=True)
        only(body, ("storage_limit", "banned", "delete_files"))
        if "storage_limit" not in body and "banned" not in body:
            raise BadRequest("nothing to change: give storage_limit and/or banned",
                             code="invalid_field")
        limit = _storage_limit(body["storage_limit"]) if "storage_limit" in body else KEEP
        banned: Any = KEEP
        if "banned" in body:
            banned = bool_field(body, "banned")
            if banned is None:
                raise BadRequest("banned must be true or false", code="invalid_field")
        delete_files = bool(bool_field(body, "delete_files"))
        out = await self.moderation.update_user(principal.pubkey, pubkey, storage_limit=limit,
                                                banned=banned, delete_files=delete_files)
        return json_body(request, out)

"""The admin API on ``gateway.port``, under ``/api/admin/`` (mounted only when ``admin.enabled``;
otherwise every ``/api/admin/`` path is the gateway's 404).

Every route needs the credentials of a key in ``admin.pubkeys`` (a session bearer token or a
NIP-98 header: 401 without, 403 ``not_admin`` for anyone else); every action is done by
:class:`~tgateway.admin.actions.Moderation`, which keeps it in the audit log with the admin's key.
Lists take ``limit`` (1-500, default 50) and ``offset`` and answer ``total`` and
``next_offset`` (null on the last page). Bad input is a 400 naming the field, and changes nothing.

- ``GET /api/admin/stats``: storage, users, block list, reports, transcoding, components;
- ``GET /api/admin/users?q=<hex prefix>&banned=true``: users, most bytes first;
- ``PUT /api/admin/users/<pubkey>`` ``{"storage_limit": 5000000000 | "5GB" | null,
  "banned": true|false, "delete_files": true}``;
- ``GET /api/admin/files?q=`` (hash, info-hash or owner prefix, or part of a name);
  ``?blocked=true`` lists the block list instead;
- ``DELETE /api/admin/files/<sha256>`` (``{"reason": "..."}`` optional): tombstone and delete;
- ``GET /api/admin/reports?status=open|dismissed|actioned|all&sha256=``;
- ``POST /api/admin/reports/<id>`` ``{"action": "dismiss"|"delete"|"ban", "delete_files": bool}``;
- ``GET /api/admin/transcode?state=queued|running|done|failed|cancelled``;
  ``POST /api/admin/transcode/<sha256>/retry`` (``{"priority": n}`` optional);
- ``GET /api/admin/config``: the effective configuration, ``nostr.private_key`` redacted;
- ``GET /api/admin/audit?target=``: the audit log, newest first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.component import Component
from tgateway.config import Config, parse_size
from tgateway.errors import ApiError, BadRequest, NotFound
from tgateway.http.app import new_app
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.converters import parse_hex
from tgateway.http.headers import answer_preflight
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import HEX64, Body, Op, Param, Reply, Schema, hidden, route
from tgateway.links import Links
from tgateway.storage.api import ContentStore
from tgateway.storage.transcode_jobs import Job, JobStore
from tgateway.storage.users import KEEP
from tgateway.transcode.api import Transcoding
from tgateway.web.api import FILE

from .actions import Moderation

__all__ = ["AdminApi", "redacted_config"]

MAX_PAGE = 500
DEFAULT_PAGE = 50
REPORT_STATES = ("open", "dismissed", "actioned", "all")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
REDACTED = "[redacted]"
#: the largest storage limit SQLite's INTEGER holds
MAX_STORAGE_LIMIT = 2**63 - 1
#: a transcode job's priority (higher first; SQLite's INTEGER holds far more)
MAX_PRIORITY = 2**31 - 1
#: configuration keys whose values never leave the gateway
SECRETS = (("nostr", "private_key"),)


# the OpenAPI descriptions of the routes (tgateway.http.openapi) ------------------------------

_INT: Schema = {"type": "integer", "minimum": 0}
_NUM_OR_NULL: Schema = {"type": ["number", "null"]}
_STR_OR_NULL: Schema = {"type": ["string", "null"]}
_FLAG: Schema = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}
_PAGE_PARAMS = (
    Param("limit", schema={"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                           "default": DEFAULT_PAGE}, description="items per page"),
    Param("offset", schema={"type": "integer", "minimum": 0, "maximum": 2**31, "default": 0},
          description="items to skip"),
)
_BAD_PAGE = "a parameter out of range or not what it should be (the message names it)"


def _paged_schema(key: str, item: Schema, **extra: Schema) -> Schema:
    """A page of a list: ``key`` holds the items, then the paging fields."""
    return {"type": "object", "required": [key, "total", "limit", "offset", "next_offset",
                                           *extra],
            "properties": {key: {"type": "array", "items": item}, "total": _INT,
                           "limit": {"type": "integer", "minimum": 1},
                           "offset": _INT,
                           "next_offset": {"type": ["integer", "null"],
                                           "description": "null on the last page"},
                           **extra}}


_USER: Schema = {
    "type": "object",
    "required": ["pubkey", "files", "bytes_used", "storage_limit", "quota", "banned",
                 "banned_at", "admin"],
    "properties": {
        "pubkey": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "files": _INT, "bytes_used": _INT,
        "storage_limit": {"type": ["integer", "null"],
                          "description": "the user's own limit; null: the default"},
        "quota": {"type": "integer", "description": "the bytes the user's files may take"},
        "banned": {"type": "boolean"}, "banned_at": _NUM_OR_NULL,
        "admin": {"type": "boolean", "description": "a key of admin.pubkeys"},
    },
}
_USER_UPDATED: Schema = {
    **_USER, "required": [*_USER["required"], "references_removed", "files_deleted"],
    "properties": {**_USER["properties"], "references_removed": _INT, "files_deleted": _INT},
}
_OWNER: Schema = {
    "type": "object", "required": ["pubkey", "name", "title", "source", "uploaded_at"],
    "properties": {"pubkey": {**_STR_OR_NULL, "description": "null: anonymous"},
                   "name": _STR_OR_NULL, "title": _STR_OR_NULL, "source": _STR_OR_NULL,
                   "uploaded_at": {"type": "number"}},
}
_ADMIN_FILE: Schema = {
    **FILE, "required": [*FILE["required"], "owners"],
    "properties": {**FILE["properties"], "owners": {"type": "array", "items": _OWNER}},
}
_BLOCKED: Schema = {
    "type": "object", "required": ["sha256", "info_hash", "reason", "blocked_by", "blocked_at"],
    "properties": {"sha256": {"type": "string"}, "info_hash": _STR_OR_NULL,
                   "reason": {"type": "string"}, "blocked_by": _STR_OR_NULL,
                   "blocked_at": {"type": "number"}},
}
_DELETED: Schema = {
    "type": "object",
    "required": ["sha256", "info_hash", "blocked", "newly_blocked", "file_deleted", "owners",
                 "reports_closed"],
    "properties": {"sha256": {"type": "string"}, "info_hash": _STR_OR_NULL,
                   "blocked": {"const": True}, "newly_blocked": {"type": "boolean"},
                   "file_deleted": {"type": "boolean"},
                   "owners": {"type": "array", "items": {"type": "string"}},
                   "reports_closed": _INT},
}
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
_JOB: Schema = {
    "type": "object",
    "required": ["sha256", "state", "priority", "duration", "progress", "attempts", "error",
                 "stderr_tail", "created_at", "started_at", "finished_at"],
    "properties": {"sha256": {"type": "string"}, "state": {"enum": list(JOB_STATES)},
                   "priority": {"type": "integer"}, "duration": _NUM_OR_NULL,
                   "progress": {"type": "number"}, "attempts": _INT, "error": _STR_OR_NULL,
                   "stderr_tail": _STR_OR_NULL, "created_at": {"type": "number"},
                   "started_at": _NUM_OR_NULL, "finished_at": _NUM_OR_NULL},
}
_COUNTS: Schema = {"type": "object", "additionalProperties": {"type": "integer"}}
_AUDIT_ENTRY: Schema = {
    "type": "object", "required": ["id", "at", "admin", "action", "target", "detail"],
    "properties": {"id": {"type": "integer"}, "at": {"type": "number"},
                   "admin": {"type": "string"},
                   "action": {"type": "string", "description": "file.delete, user.update, "
                              "report.dismiss, report.delete, report.ban, transcode.retry"},
                   "target": {"type": "string"}, "detail": {"type": "object"}},
}
_TAGS = ("admin",)
_UNKNOWN = hidden("404 for paths under /api/admin that are no route")


def redacted_config(config: Config) -> dict[str, Any]:
    """The effective configuration as JSON, secrets replaced by ``[redacted]`` (empty ones stay
    empty, so an admin sees whether one is set)."""
    out = dataclasses.asdict(config)
    for section, key in SECRETS:
        if out[section][key]:
            out[section][key] = REDACTED
    return out


def _arg(request: Any, name: str) -> str | None:
    raw = request.args.get(name.encode(), [None])[0]
    if raw is None:
        return None
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest(f"{name} must be UTF-8 text", code="invalid_field") from None


def _int_arg(request: Any, name: str, default: int, low: int, high: int) -> int:
    raw = _arg(request, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number", code="invalid_field") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", code="invalid_field")
    return value


def _flag(request: Any, name: str) -> bool:
    raw = (_arg(request, name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise BadRequest(f"{name} must be true or false", code="invalid_field")


def _choice(request: Any, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    raw = _arg(request, name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", code="invalid_field")
    return raw


def _page(request: Any) -> tuple[int, int]:
    return (_int_arg(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE),
            _int_arg(request, "offset", 0, 0, 2**31))


def _paged(items: list[Any], total: int, limit: int, offset: int, key: str) -> dict[str, Any]:
    end = offset + len(items)
    return {key: items, "total": total, "limit": limit, "offset": offset,
            "next_offset": end if items and end < total else None}


def _body(request: Any, *, required: bool) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty and not ``required``)."""
    content = getattr(request, "content", None)
    raw = b""
    if content is not None:
        content.seek(0)
        raw = content.read()
    if not raw.strip():
        if required:
            raise BadRequest("the request body must be a JSON object", code="invalid_json")
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return body


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; expected {', '.join(allowed)}",
                         code="invalid_field")


def _bool_field(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", code="invalid_field")
    return value


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


def _job_json(job: Job) -> dict[str, Any]:
    return {"sha256": job.sha256, "state": job.state, "priority": job.priority,
            "duration": job.duration, "progress": job.progress, "attempts": job.attempts,
            "error": job.error, "stderr_tail": job.stderr_tail, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at}


class AdminApi:
    """Klein routes of ``/api/admin/`` (see the module docstring)."""

    app = new_app()
    log = Logger()

    def __init__(
        self,
        *,
        config: Config,
        moderation: Moderation,
        auth: Authenticator,
        store: ContentStore,
        links: Links,
        jobs: JobStore,
        clock: IReactorTime,
        transcoding: Transcoding | None = None,
        components: Sequence[Component[Any]] = (),
    ) -> None:
        self.config = config
        self.moderation = moderation
        self.auth = auth
        self.store = store
        self.links = links
        self.jobs = jobs
        self.clock = clock
        self.transcoding = transcoding  # None: the transcoder does not run
        self.components = components  # every one built (read when serving)

    # overview -------------------------------------------------------------------------

    @authorized(app, "/api/admin/stats", methods=["GET"], need=Need.ADMIN, op=Op(
        "The gateway at a glance", tags=_TAGS, name="admin_stats",
        description="Files, bytes and free disk; users; blocked files; reports by status (null "
                    "without the Blossom server); transcode jobs by state; each component's "
                    "status (as /api/health has it).",
        replies={200: Reply("the numbers", json={
            "type": "object",
            "required": ["storage", "users", "blocked_files", "reports", "transcode",
                         "components"],
            "properties": {
                "storage": {"type": "object", "required": ["free_bytes"],
                            "properties": {"free_bytes": {"type": "integer"}},
                            "additionalProperties": {"type": "integer"}},
                "users": _COUNTS, "blocked_files": _INT,
                "reports": {"anyOf": [_COUNTS, {"type": "null"}]},
                "transcode": _COUNTS,
                "components": {"type": "object", "additionalProperties": {"type": "object"}},
            }})}))
    async def stats(self, request: Any, principal: Principal) -> bytes:
        m = self.moderation
        components: dict[str, Any] = {}
        for c in self.components:
            try:
                status = await c.status()
            except Exception:
                self.log.failure("status of {name} failed", name=c.name)
                status = {"status": "error"}
            if status is not None:
                components[c.name] = status
        return json_body(request, {
            "storage": {**await self.store.stats(), "free_bytes": self.store.free_space()},
            "users": await m.users.table.counts(),
            "blocked_files": m.blocks.count(),
            "reports": await m.reports.report_counts() if m.reports is not None else None,
            "transcode": await self.jobs.counts(),
            "components": components,
        })

    @authorized(app, "/api/admin/config", methods=["GET"], need=Need.ADMIN, op=Op(
        "The effective configuration", tags=_TAGS, name="admin_config",
        description="Every section with its values after defaults and the environment; "
                    "nostr.private_key is \"[redacted]\" when set.",
        replies={200: Reply("the configuration, by section", json={
            "type": "object", "required": ["mode", "data_dir", "gateway", "admin", "nostr"],
            "properties": {"mode": {"type": "string"}, "data_dir": {"type": "string"},
                           "gateway": {"type": "object"}, "admin": {"type": "object"},
                           "nostr": {"type": "object"}}})}))
    async def effective_config(self, request: Any, principal: Principal) -> bytes:
        return json_body(request, redacted_config(self.config))

    @authorized(app, "/api/admin/audit", methods=["GET"], need=Need.ADMIN, op=Op(
        "The audit log, newest first", tags=_TAGS, name="admin_audit",
        params=[Param("target", description="only the actions on this hash, key or report"),
                *_PAGE_PARAMS],
        replies={200: Reply("a page of the log", json=_paged_schema("entries", _AUDIT_ENTRY))},
        errors={400: _BAD_PAGE}))
    async def audit(self, request: Any, principal: Principal) -> bytes:
        limit, offset = _page(request)
        target = _arg(request, "target") or None
        entries, total = await self.moderation.audit.page(target=target, limit=limit,
                                                          offset=offset)
        return json_body(request, _paged([e.to_json() for e in entries], total, limit, offset,
                                         "entries"))

    # users ----------------------------------------------------------------------------

    @authorized(app, "/api/admin/users", methods=["GET"], need=Need.ADMIN, op=Op(
        "Users, most bytes first", tags=_TAGS, name="admin_users",
        description="Keys that own files, or that an admin changed.",
        params=[Param("q", schema={"type": "string", "pattern": "^[0-9a-fA-F]{0,64}$"},
                      description="the start of a hex public key"),
                Param("banned", schema=_FLAG, description="only banned users"),
                *_PAGE_PARAMS],
        replies={200: Reply("a page of users", json=_paged_schema("users", _USER))},
        errors={400: _BAD_PAGE}))
    async def users(self, request: Any, principal: Principal) -> bytes:
        limit, offset = _page(request)
        q = (_arg(request, "q") or "").strip().lower()
        if q and (len(q) > 64 or not all(c in "0123456789abcdef" for c in q)):
            raise BadRequest("q must be the start of a hex pubkey", code="invalid_field")
        m = self.moderation
        rows, total = await m.users.table.listing(prefix=q or None,
                                                  banned_only=_flag(request, "banned"),
                                                  limit=limit, offset=offset)
        items = [{"pubkey": r.pubkey, "files": r.files, "bytes_used": r.bytes_used,
                  "storage_limit": r.storage_limit, "quota": m.users.quota(r.pubkey),
                  "banned": r.banned, "banned_at": r.banned_at, "admin": r.pubkey in m.admins}
                 for r in rows]
        return json_body(request, _paged(items, total, limit, offset, "users"))

    @authorized(app, "/api/admin/users/<pubkey:pubkey>", methods=["GET"], need=Need.ADMIN,
                op=Op("One user", tags=_TAGS, name="admin_user",
                      description="Any key: one that never uploaded has no files and the "
                                  "default quota.",
                      replies={200: Reply("the user", json=_USER)}))
    async def user(self, request: Any, principal: Principal, pubkey: str) -> bytes:
        return json_body(request, await self.moderation.describe_user(pubkey))

    @authorized(app, "/api/admin/users/<pubkey:pubkey>", methods=["PUT"], need=Need.ADMIN,
                op=Op(
        "Change a user's storage limit or ban", tags=_TAGS, name="admin_update_user",
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
        body = _body(request, required=True)
        _only(body, ("storage_limit", "banned", "delete_files"))
        if "storage_limit" not in body and "banned" not in body:
            raise BadRequest("nothing to change: give storage_limit and/or banned",
                             code="invalid_field")
        limit = _storage_limit(body["storage_limit"]) if "storage_limit" in body else KEEP
        banned: Any = KEEP
        if "banned" in body:
            banned = _bool_field(body, "banned")
            if banned is None:
                raise BadRequest("banned must be true or false", code="invalid_field")
        delete_files = bool(_bool_field(body, "delete_files"))
        out = await self.moderation.update_user(principal.pubkey, pubkey, storage_limit=limit,
                                                banned=banned, delete_files=delete_files)
        return json_body(request, out)

    # files ----------------------------------------------------------------------------

    @authorized(app, "/api/admin/files", methods=["GET"], need=Need.ADMIN, op=Op(
        "Files with their owners, newest first; or the block list", tags=_TAGS,
        name="admin_files",
        params=[Param("q", schema={"type": "string", "maxLength": 256},
                      description="the start of a SHA-256, an info-hash or an owner's key, or "
                                  "part of a name or title"),
                Param("blocked", schema=_FLAG,
                      description="the block list (tombstones) instead of the files"),
                *_PAGE_PARAMS],
        replies={200: Reply("a page of files (or, with blocked, of tombstones)", json={
            "anyOf": [_paged_schema("files", _ADMIN_FILE), _paged_schema("blocked", _BLOCKED)]})},
        errors={400: _BAD_PAGE}))
    async def files(self, request: Any, principal: Principal) -> bytes:
        limit, offset = _page(request)
        if _flag(request, "blocked"):
            blocked, total = await self.moderation.blocks.table.page(limit, offset)
            return json_body(request, _paged([b.to_json() for b in blocked], total, limit,
                                             offset, "blocked"))
        q = _arg(request, "q") or ""
        if len(q) > 256:
            raise BadRequest("q is at most 256 characters", code="invalid_field")
        rows, total = await self.store.search(q, limit, offset)
        items = []
        for f, owners in rows:
            item = self.links.describe(f, [o.owner for o in owners if o.owner])
            item["owners"] = [{"pubkey": o.owner or None, "name": o.name, "title": o.title,
                               "source": o.source, "uploaded_at": o.created_at} for o in owners]
            items.append(item)
        return json_body(request, _paged(items, total, limit, offset, "files"))

    @authorized(app, "/api/admin/files/<sha256:sha>", methods=["DELETE"], need=Need.ADMIN,
                op=Op(
        "Tombstone a file and delete it", tags=_TAGS, name="admin_delete_file",
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
        body = _body(request, required=False)
        _only(body, ("reason",))
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 1000:
            raise BadRequest("reason must be text of at most 1000 characters",
                             code="invalid_field")
        done = await self.moderation.delete_file(principal.pubkey, sha, reason)
        return json_body(request, done.to_json())

    # reports --------------------------------------------------------------------------

    def _reports(self) -> Any:
        reports = self.moderation.reports
        if reports is None:
            raise NotFound("reports are kept by the Blossom server, which is not running here",
                           code="reports_unavailable")
        return reports

    @authorized(app, "/api/admin/reports", methods=["GET"], need=Need.ADMIN, op=Op(
        "BUD-09 reports, newest first", tags=_TAGS, name="admin_reports",
        description="Each with its blobs: whether each is stored or blocked, and its uploaders.",
        params=[Param("status", schema={"type": "string", "enum": list(REPORT_STATES),
                                        "default": "open"}),
                Param("sha256", schema={"type": "string", "pattern": HEX64},
                      description="only the reports naming this blob"),
                *_PAGE_PARAMS],
        replies={200: Reply("a page of reports", json=_paged_schema("reports", _REPORT))},
        errors={400: _BAD_PAGE,
                404: "the Blossom server, which keeps reports, is not running here"}))
    async def reports(self, request: Any, principal: Principal) -> bytes:
        limit, offset = _page(request)
        status = _choice(request, "status", REPORT_STATES, "open")
        raw_sha = _arg(request, "sha256")
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
        return json_body(request, _paged(items, total, limit, offset, "reports"))

    @authorized(app, "/api/admin/reports/<report_id>", methods=["POST"], need=Need.ADMIN, op=Op(
        "Act on a report", tags=_TAGS, name="admin_act_on_report",
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
        body = _body(request, required=True)
        _only(body, ("action", "delete_files"))
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("action must be dismiss, delete or ban", code="invalid_action")
        delete_files = bool(_bool_field(body, "delete_files"))
        out = await self.moderation.act_on_report(principal.pubkey, rid, action,
                                                  delete_files=delete_files)
        return json_body(request, out)

    # transcoding ----------------------------------------------------------------------

    @authorized(app, "/api/admin/transcode", methods=["GET"], need=Need.ADMIN, op=Op(
        "Transcoding jobs", tags=_TAGS, name="admin_transcode_jobs",
        description="Running, queued in the order they will run, then ended ones; with the "
                    "counts by state and whether the transcoder runs.",
        params=[Param("state", schema={"type": "string", "enum": list(JOB_STATES)}),
                *_PAGE_PARAMS],
        replies={200: Reply("a page of jobs", json=_paged_schema(
            "jobs", _JOB, counts=_COUNTS, active={"type": "boolean"}))},
        errors={400: _BAD_PAGE}))
    async def transcode_jobs(self, request: Any, principal: Principal) -> bytes:
        limit, offset = _page(request)
        state = _choice(request, "state", JOB_STATES, None)
        jobs, total = await self.jobs.page(state, limit, offset)
        out = _paged([_job_json(j) for j in jobs], total, limit, offset, "jobs")
        out["counts"] = await self.jobs.counts()
        out["active"] = bool(self.transcoding is not None and self.transcoding.active)
        return json_body(request, out)

    @authorized(app, "/api/admin/transcode/<sha256:sha>/retry", methods=["POST"],
                need=Need.ADMIN, op=Op(
        "Transcode a video again", tags=_TAGS, name="admin_transcode_retry",
        description="A failed or done job is queued again; a probed video that was never "
                    "queued is queued for the first time.",
        body=Body({"application/json": {
            "type": "object", "properties": {"priority": {
                "type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY,
                "description": "higher runs first (default: the job's, or 0)"}}}},
            required=False),
        replies={202: Reply("queued", json={
            "type": "object", "required": ["sha256", "state", "priority"],
            "properties": {"sha256": {"type": "string"}, "state": {"type": "string"},
                           "priority": {"type": "integer"}}})},
        errors={400: "not a JSON object, or a priority that is not a whole number in range",
                404: "no job for this file, and it is not a probed video",
                503: "transcoding is disabled"}))
    async def retry(self, request: Any, principal: Principal, sha: str) -> bytes:
        body = _body(request, required=False)
        priority = body.get("priority")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                     or abs(priority) > MAX_PRIORITY):
            raise BadRequest(f"priority must be a whole number from -{MAX_PRIORITY} to "
                             f"{MAX_PRIORITY}", code="invalid_field")
        transcoder = self.transcoding
        if transcoder is None or not transcoder.active:
            raise ApiError("transcoding is disabled", status=503, code="transcoding_disabled")
        job = await transcoder.retry(sha, priority)
        if job is None:
            raise NotFound("no transcoding job for this file, and it is not a probed video",
                           code="job_not_found")
        await self.moderation.record(principal.pubkey, "transcode.retry", sha,
                                     {"priority": job.priority, "state": job.state})
        return json_body(request, {"sha256": sha, "state": job.state, "priority": job.priority},
                         202)

    # the rest ---------------------------------------------------------------------------

    @app.route("/api/admin/", branch=True, methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request)

    @route(app, "/api/admin/", branch=True,
           methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"], op=_UNKNOWN)
    def not_found(self, request: Any) -> bytes:
        raise ApiError("no such admin route", status=404, code="not_found")

"""``/api/admin/stats``, ``/api/admin/config`` and ``/api/admin/audit``: the gateway at a
glance (each component's status, as ``/api/health`` has it), the effective configuration
(``nostr.private_key`` redacted), and the audit log of the admins' actions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

from tgateway.component import Component
from tgateway.config import Config
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Op, Param, Reply, Schema
from tgateway.http.query import query_text
from tgateway.storage.api import ContentStore
from tgateway.storage.transcode_jobs import JobStore

from .actions import Moderation
from .routing import (
    APP,
    BAD_PAGE,
    COUNTS,
    INT,
    PAGE_PARAMS,
    TAGS,
    page,
    paged,
    paged_schema,
)

__all__ = ["OverviewRoutes", "redacted_config"]

REDACTED = "[redacted]"
#: configuration keys whose values never leave the gateway
SECRETS = (("nostr", "private_key"),)

_AUDIT_ENTRY: Schema = {
    "type": "object", "required": ["id", "at", "admin", "action", "target", "detail"],
    "properties": {"id": {"type": "integer"}, "at": {"type": "number"},
                   "admin": {"type": "string"},
                   "action": {"type": "string", "description": "file.delete, user.update, "
                              "report.dismiss, report.delete, report.ban, transcode.retry"},
                   "target": {"type": "string"}, "detail": {"type": "object"}},
}


def redacted_config(config: Config) -> dict[str, Any]:
    """The effective configuration as JSON, secrets replaced by ``[redacted]`` (empty ones stay
    empty, so an admin sees whether one is set)."""
    out = dataclasses.asdict(config)
    for section, key in SECRETS:
        if out[section][key]:
            out[section][key] = REDACTED
    return out


class OverviewRoutes:
    """The routes of :class:`~tgateway.admin.routes.AdminApi` that read the whole gateway."""

    log: Logger
    auth: Authenticator
    config: Config
    moderation: Moderation
    store: ContentStore
    jobs: JobStore
    components: Sequence[Component[Any]]  # every one built (read when serving)

    @authorized(APP, "/api/admin/stats", methods=["GET"], need=Need.ADMIN, op=Op(
        "The gateway at a glance", tags=TAGS, name="admin_stats",
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
                "users": COUNTS, "blocked_files": INT,
                "reports": {"anyOf": [COUNTS, {"type": "null"}]},
                "transcode": COUNTS,
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

    @authorized(APP, "/api/admin/config", methods=["GET"], need=Need.ADMIN, op=Op(
        "The effective configuration", tags=TAGS, name="admin_config",
        description="Every section with its values after defaults and the environment; "
                    "nostr.private_key is \"[redacted]\" when set.",
        replies={200: Reply("the configuration, by section", json={
            "type": "object", "required": ["mode", "data_dir", "gateway", "admin", "nostr"],
            "properties": {"mode": {"type": "string"}, "data_dir": {"type": "string"},
                           "gateway": {"type": "object"}, "admin": {"type": "object"},
                           "nostr": {"type": "object"}}})}))
    async def effective_config(self, request: Any, principal: Principal) -> bytes:
        return json_body(request, redacted_config(self.config))

    @authorized(APP, "/api/admin/audit", methods=["GET"], need=Need.ADMIN, op=Op(
        "The audit log, newest first", tags=TAGS, name="admin_audit",
        params=[Param("target", description="only the actions on this hash, key or report"),
                *PAGE_PARAMS],
        replies={200: Reply("a page of the log", json=paged_schema("entries", _AUDIT_ENTRY))},
        errors={400: BAD_PAGE}))
    async def audit(self, request: Any, principal: Principal) -> bytes:
        limit, offset = page(request)
        target = query_text(request, "target") or None
        entries, total = await self.moderation.audit.page(target=target, limit=limit,
                                                          offset=offset)
        return json_body(request, paged([e.to_json() for e in entries], total, limit, offset,
                                         "entries"))

"""``/api/admin/cleanup`` on the gateway port, for admins (``admin.pubkeys``) only:

- ``GET``: the dry run, what a run now would remove (files with the rule that removes each,
  inactive users, bytes without rows, rows without bytes), changing nothing;
- ``POST``: a run now, answered with its report once it is done (409 ``cleanup_running``
  while another run goes on).

Both answer the same JSON (:meth:`~tgateway.retention.core.RunReport.to_json`); lists give the
first 1000 entries, counts and bytes are complete.
"""

from __future__ import annotations

from typing import Any

from tgateway.errors import Conflict
from tgateway.http.app import new_app
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Op, Reply, Schema

from .runner import Retention, RunInProgress

__all__ = ["CleanupRoutes"]


#: a run's report (:meth:`~tgateway.retention.core.RunReport.to_json`)
REPORT: Schema = {
    "type": "object",
    "required": ["dry_run", "now", "rules", "complete", "files", "users", "seconds"],
    "properties": {"dry_run": {"type": "boolean"}, "now": {"type": "number"},
                   "rules": {"type": "object"}, "complete": {"type": "boolean"},
                   "files": {"type": "object"}, "users": {"type": "object"},
                   "seconds": {"type": "number"}},
}


class CleanupRoutes:
    app = new_app()

    def __init__(self, *, retention: Retention, auth: Authenticator) -> None:
        self.retention = retention
        self.auth = auth

    @authorized(app, "/api/admin/cleanup", methods=["GET"], need=Need.ADMIN, op=Op(
        "What a cleanup now would remove (changes nothing)", tags=("admin",),
        replies={200: Reply("the dry run's report", json=REPORT)}))
    async def dry_run(self, request: Any, principal: Principal) -> bytes:
        report = await self.retention.run(dry_run=True)
        return json_body(request, report.to_json())

    @authorized(app, "/api/admin/cleanup", methods=["POST"], need=Need.ADMIN, op=Op(
        "Run the cleanup now", tags=("admin",), errors={409: "a run is going on"},
        replies={200: Reply("the run's report", json=REPORT)}))
    async def run_now(self, request: Any, principal: Principal) -> bytes:
        try:
            report = await self.retention.run(dry_run=False, wait=False)
        except RunInProgress as e:
            raise Conflict(str(e), code="cleanup_running") from None
        return json_body(request, report.to_json())

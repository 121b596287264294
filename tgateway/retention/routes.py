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

from .runner import Retention, RunInProgress

__all__ = ["CleanupRoutes"]


class CleanupRoutes:
    app = new_app()

    def __init__(self, *, retention: Retention, auth: Authenticator) -> None:
        self.retention = retention
        self.auth = auth

    @authorized(app, "/api/admin/cleanup", methods=["GET"], need=Need.ADMIN)
    async def dry_run(self, request: Any, principal: Principal) -> bytes:
        report = await self.retention.run(dry_run=True)
        return json_body(request, report.to_json())

    @authorized(app, "/api/admin/cleanup", methods=["POST"], need=Need.ADMIN)
    async def run_now(self, request: Any, principal: Principal) -> bytes:
        try:
            report = await self.retention.run(dry_run=False, wait=False)
        except RunInProgress as e:
            raise Conflict(str(e), code="cleanup_running") from None
        return json_body(request, report.to_json())

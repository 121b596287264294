"""The admin API on ``gateway.port``, under ``/api/admin/`` (mounted only when ``admin.enabled``;
otherwise every ``/api/admin/`` path is the gateway's 404).

Every route needs the credentials of a key in ``admin.pubkeys`` (a session bearer token or a
NIP-98 header: 401 without, 403 ``not_admin`` for anyone else); every action is done by
:class:`~tgateway.admin.actions.Moderation`, which keeps it in the audit log with the admin's key.
Lists take ``limit`` (1-500, default 50) and ``offset`` and answer ``total`` and
``next_offset`` (null on the last page). Bad input is a 400 naming the field, and changes nothing.

The routes are declared by resource, each module a class of routes on the one Klein app
(:data:`tgateway.admin.routing.APP`); :class:`AdminApi` serves them all, with the CORS preflight
and the 404 of any other path under ``/api/admin/``, and :mod:`tgateway.admin.service` mounts it:

- :mod:`~tgateway.admin.overview`: ``GET /api/admin/stats`` (storage, users, block list, reports,
  transcoding, components); ``GET /api/admin/config`` (the effective configuration,
  ``nostr.private_key`` redacted); ``GET /api/admin/audit?target=`` (the audit log, newest first);
- :mod:`~tgateway.admin.users`: ``GET /api/admin/users?q=<hex prefix>&banned=true`` (users, most
  bytes first); ``GET`` and ``PUT /api/admin/users/<pubkey>`` ``{"storage_limit": 5000000000 |
  "5GB" | null, "banned": true|false, "delete_files": true}``;
- :mod:`~tgateway.admin.files`: ``GET /api/admin/files?q=`` (hash, info-hash or owner prefix, or
  part of a name; ``?blocked=true`` lists the block list instead); ``DELETE
  /api/admin/files/<sha256>`` (``{"reason": "..."}`` optional): tombstone and delete;
- :mod:`~tgateway.admin.reports`: ``GET /api/admin/reports?status=open|dismissed|actioned|all&sha256=``;
  ``POST /api/admin/reports/<id>`` ``{"action": "dismiss"|"delete"|"ban", "delete_files": bool}``;
- :mod:`~tgateway.admin.jobs`: ``GET /api/admin/transcode?state=queued|running|done|failed|cancelled``;
  ``POST /api/admin/transcode/<sha256>/retry`` (``{"priority": n}`` optional).

``/api/admin/cleanup`` (retention) and ``/api/admin/diagnostics`` (health) belong to their
components, which mount them themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.component import Component
from tgateway.config import Config
from tgateway.errors import ApiError
from tgateway.http.auth import Authenticator
from tgateway.http.headers import answer_preflight
from tgateway.http.openapi import hidden, route
from tgateway.links import Links
from tgateway.storage.api import ContentStore
from tgateway.storage.transcode_jobs import JobStore
from tgateway.transcode.api import Transcoding

from .actions import Moderation
from .files import FileRoutes
from .jobs import JobRoutes
from .overview import OverviewRoutes
from .reports import ReportRoutes
from .routing import APP
from .users import UserRoutes

__all__ = ["AdminApi"]

_UNKNOWN = hidden("404 for paths under /api/admin that are no route")


class AdminApi(OverviewRoutes, UserRoutes, FileRoutes, ReportRoutes, JobRoutes):
    """Klein routes of ``/api/admin/`` (see the module docstring)."""

    app = APP
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

    # fallbacks ---------------------------------------------------------------------------

    @APP.route("/api/admin/", branch=True, methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request)

    @route(APP, "/api/admin/", branch=True,
           methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"], op=_UNKNOWN)
    def not_found(self, request: Any) -> bytes:
        raise ApiError("no such admin route", status=404, code="not_found")

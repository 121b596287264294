"""Wiring of the admin part: the block list, user limits and bans, the actions, the routes.

``tap`` calls :func:`build_admin` right after the storage (the block list and the user policy
exist before any component that reads them), hands ``admin.blocks`` (the
:class:`~tgateway.blocklist.BlockList` seam) and ``admin.users.quota`` to the components, and
mounts :meth:`Admin.routes` at ``/api/admin`` when ``admin.enabled``. The block list and the user
policy are read from the database when :attr:`Admin.service` starts (after the storage service,
before anything serves); enforcement does not depend on ``admin.enabled``: only the routes do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime

from tgateway.config import Config
from tgateway.http.auth import Authenticator
from tgateway.links import Links
from tgateway.storage.admin_audit import AuditLog
from tgateway.storage.api import ContentStore, Db
from tgateway.storage.blossom_reports import BlossomStore
from tgateway.storage.transcode_jobs import JobStore

from .actions import Moderation
from .blocklist import StoredBlockList
from .routes import AdminApi, TranscodeRetry
from .users import UserPolicy

__all__ = ["Admin", "AdminService", "build_admin"]


class AdminService(Service):
    """Reads the block list and the user policy at start (blocking, before anything serves)."""

    name = "admin"

    def __init__(self, users: UserPolicy, blocks: StoredBlockList) -> None:
        self.users = users
        self.blocks = blocks

    def startService(self) -> None:
        self.users.load()
        self.blocks.load()
        super().startService()  # type: ignore[no-untyped-call]


@dataclass
class Admin:
    config: Config
    users: UserPolicy
    blocks: StoredBlockList
    moderation: Moderation
    service: AdminService
    db: Db
    store: ContentStore

    def routes(self, *, auth: Authenticator, links: Links, clock: IReactorTime,
               transcoder: Callable[[], TranscodeRetry | None] = lambda: None,
               statuses: Mapping[str, Callable[[], Any]] | None = None) -> AdminApi:
        """The ``/api/admin/`` routes (mount them only when ``admin.enabled``)."""
        return AdminApi(config=self.config, moderation=self.moderation, auth=auth,
                        store=self.store, links=links, jobs=JobStore(self.db), clock=clock,
                        transcoder=transcoder, statuses=statuses)


def build_admin(config: Config, *, db: Db, store: ContentStore, clock: IReactorTime) -> Admin:
    users = UserPolicy(db, default_limit=int(config.admin.default_user_storage_limit))
    blocks = StoredBlockList(db, clock, users)
    moderation = Moderation(
        store=store, blocks=blocks, users=users, audit=AuditLog(db), reports=BlossomStore(db),
        clock=clock, admins=frozenset(k.lower() for k in config.admin.pubkeys))
    return Admin(config=config, users=users, blocks=blocks, moderation=moderation,
                 service=AdminService(users, blocks), db=db, store=store)

"""The admin component: the ``/api/admin/`` routes on the gateway's port.

Built after the gateway (whose site it mounts on and whose authenticator, sessions and NIP-98, it
uses), only when ``admin.enabled``: otherwise it is not built and every ``/api/admin/`` path is
the gateway's 404. What it changes lives with the storage (``Deps.policy``: the block list, users'
limits and bans), so the block list is enforced whether or not the admin routes run; a deletion
goes out as the content store's "deleted" event, as any deletion does.
"""

from __future__ import annotations

from tgateway.component import Component, Deps, Mount
from tgateway.config import AdminConfig
from tgateway.storage.admin_audit import AuditLog
from tgateway.storage.blossom_reports import BlossomStore
from tgateway.storage.transcode_jobs import JobStore

from .actions import Moderation
from .routes import AdminApi

__all__ = ["build"]


def build(section: AdminConfig, deps: Deps) -> Component[AdminApi]:
    if deps.store is None or deps.db is None or deps.policy is None:
        raise RuntimeError("the admin needs the storage component")
    if deps.authenticator is None:
        raise RuntimeError("the admin needs the gateway component (its sign-in)")
    moderation = Moderation(
        store=deps.store, blocks=deps.policy.blocks, users=deps.policy.users,
        audit=AuditLog(deps.db), reports=BlossomStore(deps.db), clock=deps.reactor,
        admins=frozenset(k.lower() for k in section.pubkeys))
    api = AdminApi(config=deps.config, moderation=moderation, auth=deps.authenticator,
                   store=deps.store, links=deps.links, jobs=JobStore(deps.db), clock=deps.reactor,
                   transcoding=deps.transcoding, components=deps.components)
    return Component(name="admin", part=api,
                     mounts=[Mount("gateway", "/api/admin", api.app.resource(), whole_path=True)])

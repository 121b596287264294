"""Users' files, the gateway's Nostr identity and announcements, on ``gateway.port``.

Routes (:class:`UsersApi`; every ``/api/users/me/*`` route needs a session or a NIP-98 header):

- ``GET /api/users/me/stats``: files owned, bytes used, quota (the user's own limit set by an
  admin, else ``admin.default_user_storage_limit``);
- ``GET /api/users/me/files?limit=&offset=`` (or ``cursor=``, the ``next_cursor`` of the previous
  page): the caller's files, newest first;
- ``DELETE /api/users/me/files/<sha256>``: drop the caller's ownership; the bytes go only when no
  owner is left (and no other file uses the chunks);
- ``GET /api/nostr/identity``: the gateway's npub and hex pubkey;
- ``GET /api/files/<sha256>/announcements``: per-relay status of the file's NIP-35 events;
- ``POST /api/files/<sha256>/announce``: publish a fresh NIP-35 event (owners only).

:func:`build_user_routes` builds the session store, the authenticator, the auth routes and these;
:meth:`UserRoutes.mounts` says where they go on the gateway's port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.blocklist import Bans
from tgateway.component import Mount
from tgateway.config import Config
from tgateway.errors import ApiError, Forbidden, NotFound, ServiceUnavailable
from tgateway.http.app import new_app
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.headers import answer_preflight
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Op, Param, Reply, Schema, hidden, route
from tgateway.http.query import query_int
from tgateway.links import Links
from tgateway.netguard import OutgoingGuard
from tgateway.nostr.keys import npub_encode
from tgateway.nostr.login import LoginBinding
from tgateway.nostr.nip46_login import Nip46Logins
from tgateway.proxies import ProxyPolicy
from tgateway.storage.api import ContentStore, Db
from tgateway.storage.auth_sessions import SessionStore
from tgateway.storage.model import UploadContext

from .api import FILE
from .auth import AuthApi, RequestAuthenticator

if TYPE_CHECKING:
    from tgateway.nostr.service import NostrService

__all__ = ["UserRoutes", "UsersApi", "build_user_routes"]

MAX_PAGE = 500
DEFAULT_PAGE = 50


_HEX64: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_PAGE = [Param("limit", schema={"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
         Param("offset", schema={"type": "integer", "minimum": 0, "maximum": 2**31}),
         Param("cursor", schema={"type": "string", "pattern": "^[0-9]{1,10}$"},
               description="next_cursor of the previous page (instead of offset)")]
_OWN_FILE: Schema = {**FILE, "required": [*FILE["required"], "uploaded_at"],
                     "properties": {**FILE["properties"], "uploaded_at": {"type": "number"},
                                    "title": {"type": "string"},
                                    "description": {"type": "string"}}}
_DELIVERY: Schema = {"type": "object", "required": ["event_id"],
                     "properties": {"event_id": {"type": "string"}}}
_UNKNOWN = hidden("404 for paths under /api/users and /api/nostr that are no route")
_NOSTR_OFF = {503: "the Nostr component is not running"}


class UsersApi:
    app = new_app()
    log = Logger()

    def __init__(
        self,
        *,
        store: ContentStore,
        links: Links,
        auth: Authenticator,
        quota: Callable[[str], int],
        nostr: NostrService | None = None,
    ) -> None:
        self.store = store
        self.links = links
        self.auth = auth
        self.quota = quota
        self.nostr = nostr

    # users ------------------------------------------------------------------------------

    @authorized(app, "/api/users/me/stats", methods=["GET"], need=Need.USER, op=Op(
        "The caller's storage use", tags=("users",), replies={200: Reply("counts and bytes", json={
            "type": "object",
            "required": ["pubkey", "npub", "files", "bytes_used", "quota", "bytes_remaining"],
            "properties": {"pubkey": _HEX64, "npub": {"type": "string"},
                           **{k: {"type": "integer", "minimum": 0}
                              for k in ("files", "bytes_used", "quota", "bytes_remaining")}}})}))
    async def stats(self, request: Any, principal: Principal) -> bytes:
        pubkey = principal.pubkey
        files, used = await self.store.usage(pubkey)
        quota = self.quota(pubkey)
        return json_body(
            request,
            {
                "pubkey": pubkey,
                "npub": npub_encode(pubkey),
                "files": files,
                "bytes_used": used,
                "quota": quota,
                "bytes_remaining": max(0, quota - used),
            },
        )

    @authorized(app, "/api/users/me/files", methods=["GET"], need=Need.USER, op=Op(
        "The caller's files, newest first", tags=("users",), params=_PAGE,
        errors={400: "a paging argument is not a whole number in range"},
        replies={200: Reply("a page", json={
            "type": "object", "required": ["files", "total", "limit", "offset", "next_cursor"],
            "properties": {"files": {"type": "array", "items": _OWN_FILE},
                           "total": {"type": "integer"}, "limit": {"type": "integer"},
                           "offset": {"type": "integer"},
                           "next_cursor": {"type": ["string", "null"]}}})}))
    async def files(self, request: Any, principal: Principal) -> bytes:
        pubkey = principal.pubkey
        limit = query_int(request, "limit", 1, MAX_PAGE, DEFAULT_PAGE)
        offset = query_int(request, "offset", 0, 2**31, 0)
        if b"cursor" in request.args:
            offset = query_int(request, "cursor", 0, 2**31, 0)
        rows, total = await self.store.owner_files(pubkey, limit, offset)
        out = []
        for f, ownership in rows:
            item = self.links.describe(f)
            item["uploaded_at"] = ownership.created_at
            item["name"] = ownership.name or item.get("name")
            if ownership.title:
                item["title"] = ownership.title
            if ownership.description:
                item["description"] = ownership.description
            out.append(item)
        next_offset = offset + len(rows)
        has_more = next_offset < total and bool(rows)
        return json_body(
            request,
            {
                "files": out,
                "total": total,
                "limit": limit,
                "offset": offset,
                "next_cursor": str(next_offset) if has_more else None,
            },
        )

    @authorized(app, "/api/users/me/files/<sha256:sha>", methods=["DELETE"], need=Need.USER,
                op=Op("Give up the caller's ownership of a file", tags=("users",),
                      name="delete_my_file",
                      description="The bytes are deleted with the last owner.",
                      errors={404: "the caller owns no such file"},
                      replies={200: Reply("ownership removed", json={
                          "type": "object",
                          "required": ["status", "sha256", "ownership_removed", "file_deleted"],
                          "properties": {"status": {"const": "ok"}, "sha256": _HEX64,
                                         "ownership_removed": {"const": True},
                                         "file_deleted": {"type": "boolean"}}})}))
    async def delete(self, request: Any, principal: Principal, sha: str) -> bytes:
        try:
            gone = await self.store.remove_owner(sha, principal.pubkey)
        except KeyError:
            raise NotFound("you do not own a file with this sha256", code="file_not_found") from None
        return json_body(
            request, {"status": "ok", "sha256": sha, "ownership_removed": True,
                      "file_deleted": gone is not None}
        )

    # nostr ------------------------------------------------------------------------------

    def _nostr(self) -> NostrService:
        if self.nostr is None:
            raise ServiceUnavailable("the Nostr component is not running", code="nostr_unavailable")
        return self.nostr

    @route(app, "/api/nostr/identity", methods=["GET"], op=Op(
        "The gateway's Nostr identity and relays", tags=("nostr",), errors=_NOSTR_OFF,
        replies={200: Reply("its key and relays", json={
            "type": "object", "required": ["pubkey", "npub", "relays"],
            "properties": {"pubkey": _HEX64, "npub": {"type": "string"},
                           "relays": {"type": "array", "items": {"type": "string"}},
                           "video_relays": {"type": "array", "items": {"type": "string"}},
                           "publish_nip35": {"type": "boolean"},
                           "publish_nip71": {"type": "boolean"}}})}))
    def identity(self, request: Any) -> bytes:
        return json_body(request, self._nostr().identity())

    @route(app, "/api/files/<sha256:sha>/announcements", methods=["GET"], op=Op(
        "A file's NIP-35 announcements, per relay", tags=("nostr",),
        errors={404: "no such file", **_NOSTR_OFF},
        replies={200: Reply("delivery status per relay", json={
            "type": "object", "required": ["sha256", "announcements"],
            "properties": {"sha256": _HEX64,
                           "announcements": {"type": "array", "items": _DELIVERY}}})}))
    async def announcements(self, request: Any, sha: str) -> bytes:
        nostr = self._nostr()
        rows = await nostr.announcer.announcements(sha)
        if not rows and await self.store.get(sha) is None:
            raise NotFound(f"no file with sha256 {sha}", code="file_not_found")
        return json_body(request, {"sha256": sha, "announcements": rows})

    @authorized(app, "/api/files/<sha256:sha>/announce", methods=["POST"], need=Need.USER, op=Op(
        "Announce a file (NIP-35) again", tags=("nostr",), name="announce_file",
        errors={403: "only an owner of the file can announce it", 404: "no such file",
                503: "the Nostr component is not running, or no relay is configured"},
        replies={202: Reply("signed and queued for the relays", json={
            "type": "object", "required": ["sha256", "event_id", "announcements"],
            "properties": {"sha256": _HEX64, "event_id": {"type": "string"},
                           "announcements": {"type": "array", "items": _DELIVERY}}})}))
    async def announce(self, request: Any, principal: Principal, sha: str) -> bytes:
        pubkey = principal.pubkey
        nostr = self._nostr()
        owners = await self.store.owners(sha)
        if not owners:
            raise NotFound(f"no file with sha256 {sha}", code="file_not_found")
        mine = [o for o in owners if o.owner == pubkey]
        if not mine:
            raise Forbidden("only an owner of this file can announce it", code="not_owner")
        own = mine[0]
        context = UploadContext(owner=pubkey, name=own.name, title=own.title,
                                description=own.description, source=own.source)
        event = await nostr.announcer.announce(sha, context)
        if event is None:
            raise ServiceUnavailable(
                "no relay is configured for NIP-35 announcements", code="no_relays"
            )
        rows = await nostr.announcer.announcements(sha)
        return json_body(
            request,
            {"sha256": sha, "event_id": event.id,
             "announcements": [r for r in rows if r["event_id"] == event.id]},
            202,
        )

    @app.route("/api/users/", branch=True, methods=["OPTIONS"])
    @app.route("/api/nostr/", branch=True, methods=["OPTIONS"])
    @app.route("/api/files/<sha>/announce", methods=["OPTIONS"])
    @app.route("/api/files/<sha>/announcements", methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request)

    @route(app, "/api/users/", branch=True, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
           op=_UNKNOWN)
    @route(app, "/api/nostr/", branch=True, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
           op=_UNKNOWN)
    def not_found(self, request: Any) -> bytes:
        raise ApiError("no such API route", status=404, code="not_found")



@dataclass
class UserRoutes:
    auth: RequestAuthenticator
    sessions: SessionStore
    auth_api: AuthApi
    users_api: UsersApi
    nip46: Nip46Logins | None

    def mounts(self) -> list[Mount]:
        """Where the routes go on the gateway's port; ``/api/files/<sha256>/announcements`` and
        ``/announce`` here, the rest of ``/api/files`` stays with the file API (the default)."""
        users = self.users_api.app.resource()
        return [
            Mount("gateway", "/api/auth", self.auth_api.app.resource(), whole_path=True),
            Mount("gateway", "/api/users", users, whole_path=True),
            Mount("gateway", "/api/nostr", users, whole_path=True),
            Mount("gateway", "/api/files", users, whole_path=True,
                  when=lambda path: len(path) == 4 and path[3] in (b"announcements", b"announce")),
        ]

    def service(self) -> Service:
        """A service whose stop cancels NIP-46 logins still running (their timers included)."""
        routes = self

        class _Stopper(Service):
            name = "auth"

            def stopService(self) -> Any:
                super().stopService()  # type: ignore[no-untyped-call]
                if routes.nip46 is not None:
                    return Deferred.fromCoroutine(routes.nip46.stop())
                return None

        return _Stopper()


def build_user_routes(
    *,
    config: Config,
    db: Db,
    store: ContentStore,
    links: Links,
    clock: IReactorTime,
    nostr: NostrService | None = None,
    quota: Callable[[str], int] | None = None,
    bans: Bans | None = None,
) -> UserRoutes:
    """Everything sign-in and users' files need, built from the configuration. ``quota``: the
    storage limit of a user (default: ``admin.default_user_storage_limit`` for everyone);
    ``bans``: the keys refused sign-in and every authenticated request."""
    sessions = SessionStore(db, ttl=config.nostr.session_ttl)
    base_url = config.gateway.base_url()  # public_url, or the listening address; never Host
    auth = RequestAuthenticator(sessions=sessions, clock=clock, base_url=base_url,
                                admins=config.admin.pubkeys, bans=bans)
    binding = LoginBinding(base_url)
    nip46 = None
    if nostr is not None:
        nip46 = Nip46Logins(
            nostr.pool,
            clock,
            guard=OutgoingGuard(clock, allow_private=config.nostr.allow_private_bunker_relays),
            binding=binding,
            timeout=config.nostr.nip46_timeout,
        )
    rl = config.rate_limiting.auth
    auth_api = AuthApi(
        auth=auth,
        sessions=sessions,
        clock=clock,
        login_attempts_per_minute=rl.login_attempts_per_minute,
        login_burst=rl.burst_size,
        binding=binding,
        nip46=nip46,
        proxies=ProxyPolicy(config.trusted_proxies),
    )
    limit = config.admin.default_user_storage_limit
    users_api = UsersApi(
        store=store,
        links=links,
        auth=auth,
        quota=quota or (lambda owner: limit),
        nostr=nostr,
    )
    return UserRoutes(auth=auth, sessions=sessions, auth_api=auth_api, users_api=users_api, nip46=nip46)

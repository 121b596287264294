"""The gateway component: the HTTP API on ``gateway.port``.

The file API (:class:`~tgateway.web.api.GatewayApi`, the site's default: upload, download,
webseed, torrent, metadata), sign-in and users' files
(:mod:`tgateway.web.users`), when the transcoder runs, the video routes
(:mod:`tgateway.web.stream`), and the web interface (:mod:`tgateway.web.ui`: ``/``, ``/f``,
``/me``, ``/admin``, ``/static``) mounted beside them. Other components mount their own resources
on this site (the tracker's ``/announce``, the DHT's status, the admin's ``/api/admin``, the health
component's ``/api/health`` and ``/metrics``). Its own status is the site's HTTP signals
(:mod:`tgateway.http.stats`). Its authenticator refuses banned keys (``Deps.blocks``) and the users'
stats show each one's own storage limit (the upload handler's quota); it offers later components the
authenticator (sessions, NIP-98).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString

from tgateway import __version__
from tgateway.component import Component, Deps, Mount, Provided, Site
from tgateway.config import GatewayConfig
from tgateway.endpoints import tcp_server
from tgateway.http.openapi import OPENAPI_OP, OpenApiResource, Route
from tgateway.http.root import build_site
from tgateway.http.stats import HttpStats
from tgateway.http.upload import MULTIPART_SLACK
from tgateway.metrics import Collect, refusals

from .api import GatewayApi
from .stream import StreamApi
from .ui import WebUi, build_ui
from .users import UserRoutes, build_user_routes

__all__ = ["OPENAPI_PATH", "GatewayWeb", "build"]

#: where the gateway port serves its OpenAPI document
OPENAPI_PATH = "/api/openapi.json"


@dataclass(frozen=True)
class GatewayWeb:
    """What the gateway component built."""

    api: GatewayApi
    users: UserRoutes
    stream: StreamApi | None  # None when the transcoder does not run
    ui: WebUi


def _stream_mounts(stream: StreamApi) -> list[Mount]:
    resource = stream.app.resource()
    return [
        Mount("gateway", "/api/stream", resource, whole_path=True),
        # /api/users/me/files/<sha256>/transcoding-status here, the rest in the users app
        Mount("gateway", "/api/users/me/files", resource, whole_path=True,
              when=lambda path: path[-1] == b"transcoding-status"),
    ]


def build(section: GatewayConfig, deps: Deps) -> Component[GatewayWeb]:
    config, reactor = deps.config, deps.reactor
    if deps.store is None or deps.db is None:
        raise RuntimeError("the gateway needs the storage component")
    users = build_user_routes(config=config, db=deps.db, store=deps.store, links=deps.links,
                              clock=reactor, nostr=deps.nostr,
                              quota=deps.uploads.quota if deps.uploads is not None else None,
                              bans=deps.blocks)
    api = GatewayApi(config=config, store=deps.store, links=deps.links, clock=reactor,
                     auth=users.auth, uploads=deps.uploads)
    mounts = users.mounts()
    stream = None
    if deps.transcoding is not None:
        sc = config.rate_limiting.stream
        stream = StreamApi(store=deps.store, transcoder=deps.transcoding, auth=users.auth,
                           clock=reactor, requests_per_second=sc.requests_per_second,
                           burst_size=sc.burst_size, max_concurrent=sc.max_concurrent)
        mounts += _stream_mounts(stream)
    ui = build_ui(deps=deps, auth=users.auth, max_upload=api.max_upload,
                  transcoding=stream.describe if stream is not None else None)
    mounts += ui.mounts()
    stats = HttpStats("gateway", served=[("/api/download", "download"),
                                         ("/api/webseed", "webseed"), ("/api/stream", "stream")])
    limiters = {"upload": api.limits.upload, "download": api.limits.download,
                "login": users.auth_api.login_limiter,
                "login_challenge": users.auth_api.challenge_limiter,
                "stream": stream.limiter if stream is not None else None}
    site, root = build_site(
        api.app.resource(),
        streaming_routes=[(b"POST", b"/api/upload"), (b"PUT", b"/api/upload")],
        max_request_body=section.max_request_body,
        max_stream_body=api.max_upload + MULTIPART_SLACK,
        clock=reactor,
        stats=stats,
    )
    openapi = OpenApiResource(lambda: root, title="tgateway", version=__version__,
                              description="The gateway port: files, torrents, web seeds, "
                                          "streams, sign-in, users, the tracker. Every error "
                                          "is {\"error\", \"message\"}.")
    mounts.append(Mount("gateway", OPENAPI_PATH, openapi,
                        routes=[Route(OPENAPI_PATH, ["GET", "HEAD"], OPENAPI_OP)]))
    listener = StreamServerEndpointService(
        serverFromString(reactor, tcp_server(section.port, section.host)), site)
    listener.setName("gateway-http")
    return Component(
        name="gateway", part=GatewayWeb(api, users, stream, ui),
        services=[users.service(), listener], sites=[Site("gateway", site, root)], mounts=mounts,
        report=lambda: {"status": "ok", "http": stats.status()},
        metrics=[Collect(lambda: [*stats.families(), refusals(limiters)])],
        provides=Provided(authenticator=users.auth),
    )

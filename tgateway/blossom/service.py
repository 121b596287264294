"""The Blossom component: its own site on ``blossom_server.port``, the same content store and
upload handler as the gateway's API, and BUD-05 ``/media`` with the transcoder's FFmpeg."""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString

from tgateway import __version__
from tgateway.component import Component, Deps, IGatewayReactor, Mount, Site
from tgateway.config import BlossomServerConfig, TranscodingConfig
from tgateway.endpoints import tcp_server
from tgateway.http.openapi import BLOSSOM_SCHEMES, OPENAPI_OP, OpenApiResource, Route
from tgateway.http.root import MountRoot
from tgateway.http.site import StreamingSite
from tgateway.http.stats import HttpStats
from tgateway.metrics import Collect, refusals
from tgateway.storage.blossom_reports import BlossomStore
from tgateway.transcode import tools as ffmpeg_tools
from tgateway.transcode.api import Transcoding
from tgateway.transcode.argv import Profile

from .media import MediaOptimizer
from .server import BlossomServer

__all__ = ["build"]


def media_optimizer(tc: TranscodingConfig, transcoding: Transcoding | None,
                    reactor: IGatewayReactor) -> MediaOptimizer | None:
    """BUD-05 ``/media``: FFmpeg with the transcoding settings, when transcoding is on and FFmpeg
    is there (the transcoder's, else looked up); None otherwise (``/media`` answers 503)."""
    if not tc.enabled:
        return None
    tools = transcoding.tools if transcoding is not None else ffmpeg_tools.find_ffmpeg()
    if tools is None:
        return None
    return MediaOptimizer(
        reactor=reactor, tools=tools, work_dir=tc.work_dir, preset=tc.preset,
        segment=float(tc.hls_segment_duration),
        profiles=[Profile(p.name, p.height, int(p.video_bitrate), int(p.audio_bitrate))
                  for p in tc.profiles])


def build(section: BlossomServerConfig, deps: Deps) -> Component[BlossomServer]:
    if deps.store is None or deps.db is None:
        raise RuntimeError("Blossom needs the storage component")
    config, reactor = deps.config, deps.reactor
    blossom = BlossomServer(config=config, store=deps.store, blossom_store=BlossomStore(deps.db),
                            links=deps.links, clock=reactor, uploads=deps.uploads,
                            media=media_optimizer(config.transcoding, deps.transcoding, reactor),
                            bans=deps.blocks)
    root = MountRoot(blossom.app.resource())
    site = StreamingSite(
        root,
        streaming_routes=[(b"PUT", b"/upload"), (b"PUT", b"/media")],
        max_request_body=64 * 1024,  # /mirror and /report bodies are small JSON
        clock=reactor,
        stats=HttpStats("blossom", served=[("/<blob", "blossom")]),
    )
    site.displayTracebacks = False
    listener = StreamServerEndpointService(
        serverFromString(reactor, tcp_server(section.port, section.host)), site)
    listener.setName("blossom-http")
    openapi = OpenApiResource(lambda: root, title="tgateway Blossom server", version=__version__,
                              schemes=BLOSSOM_SCHEMES,
                              description="The Blossom port (BUD-01 to BUD-12). Errors are "
                                          "{\"error\", \"message\"} with the message in "
                                          "X-Reason.")
    limiters = {"blossom": blossom.limiter, "blossom_read": blossom.read_limiter,
                "blossom_report": blossom.report_limiter}
    return Component(name="blossom", part=blossom, services=[listener],
                     sites=[Site("blossom", site, root)],
                     mounts=[Mount("blossom", OPENAPI_PATH, openapi,
                                   routes=[Route(OPENAPI_PATH, ["GET", "HEAD"], OPENAPI_OP)])],
                     report=lambda: {"status": "ok", "http": site.stats.status()},
                     metrics=[Collect(lambda: [*site.stats.families(), refusals(limiters)])])


#: where the Blossom port serves its OpenAPI document
OPENAPI_PATH = "/openapi.json"

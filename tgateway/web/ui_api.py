"""JSON routes the web interface needs beyond the file API, on ``gateway.port``.

- ``GET /api/config``: the public configuration of :func:`tgateway.web.ui_config.public_config`
  (URLs, limits, components), also embedded in every page;
- ``GET /api/files/<sha256>/swarm``: the tracker's numbers for the file's torrent (seeders, with
  the gateway's own peer; leechers; completed downloads), and whether the webseed serves it;
- ``GET /api/files/<sha256>/transcoding``: a transcode's state and live progress for anyone who
  can see the file (viewers watch a pending transcode; the owner's route
  ``/api/users/me/files/<sha256>/transcoding-status`` keeps the job's error and attempts);
- ``GET /api/files/<sha256>/ownership`` (signed in): whether the caller owns the file, with the
  title and description of their upload (the file page shows the owner's actions from it).

Every answer is ``no-store`` JSON readable cross-origin; errors are the usual
``{"error", "message"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.logger import Logger

from tgateway.errors import NotFound, ServiceUnavailable
from tgateway.http.app import new_app
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.headers import answer_preflight
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Op, Reply, Schema, route

__all__ = ["UiApi", "UI_FILE_ROUTES"]

#: the last path segment of the ``/api/files/<sha256>/...`` routes served here
UI_FILE_ROUTES = (b"swarm", b"transcoding", b"ownership")
#: fields of the transcoding status that only the file's owners see
PRIVATE_TRANSCODE_FIELDS = ("error", "attempts", "priority", "created_at", "started_at")

_STR_OR_NULL: Schema = {"type": ["string", "null"]}
_FLAGS = ("nostr", "nip46", "transcode", "tracker", "blossom")
#: :func:`tgateway.web.ui_config.public_config`
PUBLIC_CONFIG: Schema = {
    "type": "object",
    "required": ["version", "gateway", "blossom", "trackers", "upload", "features", "nostr",
                 "app", "vendor"],
    "properties": {
        "version": {"type": "string"},
        "gateway": {"type": "string", "description": "the gateway's public URL"},
        "blossom": {**_STR_OR_NULL, "description": "the Blossom server's public URL"},
        "trackers": {"type": "object", "required": ["ws", "all"],
                     "properties": {"ws": _STR_OR_NULL,
                                    "all": {"type": "array", "items": {"type": "string"}}}},
        "upload": {"type": "object", "required": ["max_size", "anonymous"],
                   "properties": {"max_size": {"type": "integer"},
                                  "anonymous": {"type": "boolean"}}},
        "features": {"type": "object", "required": list(_FLAGS),
                     "properties": {k: {"type": "boolean"} for k in _FLAGS}},
        "nostr": {"type": "object", "required": ["connect_relays", "njump"],
                  "properties": {"connect_relays": {"type": "array",
                                                    "items": {"type": "string"}},
                                 "njump": {"type": "string"}}},
        "app": {"type": "string", "description": "the URL prefix of the interface's files"},
        "vendor": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "role -> URL of a vendored library"},
    },
}
_TRANSCODING: Schema = {
    "type": "object", "required": ["sha256", "state", "progress", "profiles"],
    "properties": {
        "sha256": {"type": "string"},
        "state": {"type": "string", "description": "disabled (no transcoder), not_video, "
                  "unknown, not_queued, queued, running, done, failed, cancelled"},
        "progress": {"type": "number"},
        "video": {"type": ["object", "null"]},
        "profiles": {"type": "array", "items": {"type": "object"}},
        "finished_at": {"type": ["number", "null"]},
        "hls": {"type": "string"}, "master_sha256": _STR_OR_NULL,
    },
}


class UiApi:
    app = new_app()
    log = Logger()

    def __init__(
        self,
        *,
        store: Any,
        auth: Authenticator,
        public: dict[str, Any],
        swarm: Callable[[bytes], tuple[int, int, int] | None],
        transcoding: Callable[[Any], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        """``swarm(info_hash)`` answers ``(complete, downloaded, incomplete)`` like a scrape
        (None when the tracker is not running). ``transcoding``, when the transcoder runs: an
        async function of a stored file giving its status (``StreamApi.describe``)."""
        self.store = store
        self.auth = auth
        self.public = public
        self.swarm = swarm
        self.transcoding = transcoding

    async def _file(self, sha: str) -> Any:
        f = await self.store.get(sha)
        if f is None:
            raise NotFound(f"no file with sha256 {sha}", code="file_not_found")
        return f

    @route(app, "/api/config", methods=["GET"], op=Op(
        "The web interface's configuration", tags=("web",), name="public_config",
        description="Public URLs, upload limits, which components run, the relays a "
                    "nostrconnect:// code names, the URLs of the page's files. Nothing secret: "
                    "every page embeds it.",
        replies={200: Reply("the configuration", json=PUBLIC_CONFIG)}))
    def config(self, request: Any) -> bytes:
        return json_body(request, self.public)

    @route(app, "/api/files/<sha256:sha>/swarm", methods=["GET"], op=Op(
        "A file's swarm on the gateway's tracker", tags=("files",),
        replies={200: Reply("seeders (with the gateway's own peer), leechers, completed "
                            "downloads, and whether the webseed serves it", json={
            "type": "object",
            "required": ["sha256", "info_hash", "seeders", "leechers", "completed", "webseed"],
            "properties": {"sha256": {"type": "string"}, "info_hash": {"type": "string"},
                           "seeders": {"type": "integer"}, "leechers": {"type": "integer"},
                           "completed": {"type": "integer"}, "webseed": {"type": "boolean"}}})},
        errors={404: "no such file", 503: "the tracker is not running"}))
    async def file_swarm(self, request: Any, sha: str) -> bytes:
        f = await self._file(sha)
        scraped = self.swarm(bytes.fromhex(f.info_hash))
        if scraped is None:
            raise ServiceUnavailable("the tracker is not running", code="tracker_unavailable")
        complete, downloaded, incomplete = scraped
        return json_body(request, {
            "sha256": f.sha256,
            "info_hash": f.info_hash,
            "seeders": complete,
            "leechers": incomplete,
            "completed": downloaded,
            "webseed": True,  # every stored file is served by the gateway's BEP 19 webseed
        })

    @route(app, "/api/files/<sha256:sha>/transcoding", methods=["GET"], op=Op(
        "A file's transcoding, as anyone who can see it may watch it", tags=("video",),
        name="file_transcoding",
        description="State, live progress and renditions; the job's error and attempts are "
                    "for its owners (/api/users/me/files/{sha}/transcoding-status).",
        replies={200: Reply("its state", json=_TRANSCODING)},
        errors={404: "no such file"}))
    async def file_transcoding(self, request: Any, sha: str) -> bytes:
        f = await self._file(sha)
        if self.transcoding is None:
            return json_body(request, {"sha256": f.sha256, "state": "disabled", "progress": 0.0,
                                       "profiles": []})
        status = await self.transcoding(f)
        for key in PRIVATE_TRANSCODE_FIELDS:
            status.pop(key, None)
        return json_body(request, status)

    @authorized(app, "/api/files/<sha256:sha>/ownership", methods=["GET"], need=Need.USER,
                op=Op(
        "Whether the caller owns a file", tags=("files",),
        replies={200: Reply("owner, and for an owner their upload's name, title, description",
                            json={"type": "object", "required": ["sha256", "owner"],
                                  "properties": {"sha256": {"type": "string"},
                                                 "owner": {"type": "boolean"},
                                                 "uploaded_at": {"type": "integer"},
                                                 "name": _STR_OR_NULL, "title": _STR_OR_NULL,
                                                 "description": _STR_OR_NULL}})},
        errors={404: "no such file"}))
    async def ownership(self, request: Any, principal: Principal, sha: str) -> bytes:
        f = await self._file(sha)
        mine = [o for o in await self.store.owners(f.sha256) if o.owner == principal.pubkey]
        out: dict[str, Any] = {"sha256": f.sha256, "owner": bool(mine)}
        if mine:
            out.update({"uploaded_at": int(mine[0].created_at), "name": mine[0].name,
                        "title": mine[0].title, "description": mine[0].description})
        return json_body(request, out)

    @app.route("/api/config", methods=["OPTIONS"])
    @app.route("/api/files/<sha>/<what>", methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request)

"""The gateway's file API on ``gateway.port``: upload, download, torrent, metadata, webseed.

Routes are thin: they validate input (path converters check hashes), call the content store
through its narrow interface and render JSON; every error is an ApiError rendered by
``tgateway.http.errors``. Uploads go through the one upload handler (:mod:`tgateway.uploads`);
who may upload is declared on the route (:func:`tgateway.http.auth.authorized`), and the
caller's NIP-98 ``payload`` tag, if any, is one of the upload's checks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any
from urllib.parse import unquote

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.config import Config
from tgateway.errors import NotFound, TooManyRequests
from tgateway.http.app import new_app
from tgateway.http.auth import AnonymousOnly, Authenticator, Need, Principal, authorized
from tgateway.http.headers import CORS_HEADERS, answer_preflight, client_ip, set_headers
from tgateway.http.jsonio import json_response
from tgateway.http.openapi import Body, Link, Op, Param, Reply, Schema, route
from tgateway.http.send import content_disposition, send_file
from tgateway.http.upload import MULTIPART_SLACK, MultipartBody, RawBody, streamed_body, truthy
from tgateway.links import Links
from tgateway.proxies import ProxyPolicy
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile, UploadContext
from tgateway.uploads import Intake, Limits, Uploads

from .auth import nip98_payload_check, wants_payload_check

_STR_OR_NULL: Schema = {"type": ["string", "null"]}
#: a stored file as every JSON answer describes it (:meth:`tgateway.links.Links.describe`)
FILE: Schema = {
    "type": "object",
    "required": ["sha256", "size", "name", "mime_type", "storage", "piece_length", "pieces",
                 "chunks", "info_hash", "created_at", "magnet", "urls", "trackers"],
    "properties": {
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "size": {"type": "integer", "minimum": 0},
        "name": {"type": "string"},
        "mime_type": {"type": "string"},
        "storage": {"type": "string", "enum": ["blob", "chunked"]},
        "piece_length": {"type": "integer"},
        "pieces": {"type": "integer"},
        "chunks": {"type": "integer"},
        "info_hash": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
        "created_at": {"type": "integer"},
        "magnet": {"type": "string"},
        "urls": {"type": "object", "required": ["download", "torrent", "webseed", "metadata"],
                 "additionalProperties": {"type": "string"}},
        "onion_urls": {"type": "object", "additionalProperties": {"type": "string"}},
        "trackers": {"type": "array", "items": {"type": "string"}},
        "blossom_uri": _STR_OR_NULL,
        "meta": {"type": "object"},
    },
}
UPLOADED: Schema = {
    **FILE,
    "required": [*FILE["required"], "new"],
    "properties": {**FILE["properties"], "new": {"type": "boolean"},
                   "title": {"type": "string"}, "description": {"type": "string"}},
}
#: the responses that lead on from a file's description (OpenAPI links, for stateful tests)
FILE_LINKS = {
    "download": Link("download", {"sha": "$response.body#/sha256"}),
    "metadata": Link("metadata", {"sha": "$response.body#/sha256"}),
    "torrent": Link("torrent", {"sha": "$response.body#/sha256"}),
    "webseed": Link("webseed_bare", {"ih": "$response.body#/info_hash"}),
    "delete": Link("delete_my_file", {"sha": "$response.body#/sha256"}),
}
BYTES: Schema = {"type": "string", "format": "binary"}
_RANGE = Param("Range", "header", {"type": "string"},
               description="one byte range (bytes=a-b); several are answered whole")
_FILE_REPLIES = {
    200: Reply("the bytes", content={"*/*": BYTES},
               headers={"ETag": {"type": "string"}, "Accept-Ranges": {"type": "string"}}),
    206: Reply("the byte range asked for", content={"*/*": BYTES},
               headers={"Content-Range": {"type": "string", "required": True}}),
    304: Reply("If-None-Match names the file's ETag"),
}
_FILE_ERRORS = {416: "the Range is outside the file"}
_DESCRIPTIVE = [
    Param(name, description=f"the upload's {name} (raw bodies; also the X-{name.title()} header)")
    for name in ("name", "title", "description")
] + [Param("announce_dht", schema={"type": "string", "enum": ["true", "false", "1", "0"]},
           description="announce the torrent on the DHT (raw bodies; default true)")]
UPLOAD_OP = Op(
    "Upload a file", tags=("files",),
    description="A multipart form (one `file` part; `name`, `title`, `description`, "
                "`announce_dht` fields) or the raw bytes as the body. The file is stored once "
                "and becomes a torrent, a web seed, a Blossom blob and a NIP-35 announcement. "
                "Who may upload: gateway.allow_anonymous_uploads.",
    params=_DESCRIPTIVE,
    body=Body({
        "multipart/form-data": {
            "type": "object", "required": ["file"],
            "properties": {"file": BYTES, "name": {"type": "string"}, "title": {"type": "string"},
                           "description": {"type": "string"},
                           "announce_dht": {"type": "string", "enum": ["true", "false"]}},
        },
        "application/octet-stream": BYTES,
    }),
    replies={201: Reply("stored: a new file", json=UPLOADED, links=FILE_LINKS),
             200: Reply("the file was stored already (this caller now owns it too)",
                        json=UPLOADED, links=FILE_LINKS)},
    errors={400: "an empty file, a malformed form, a bad field", 409: "a check refused it",
            413: "larger than the upload limit or the caller's quota",
            507: "not enough disk space"},
    limited=True,
)


@functools.lru_cache(maxsize=2)
def _docs_file(name: str) -> bytes:
    return (resources.files("tgateway.web") / "static" / "docs" / name).read_bytes()


#: the API page: its own script only ('self'), which fetches the document from this origin
DOCS_CSP = (b"default-src 'none'; script-src 'self'; connect-src 'self'; "
            b"style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
            b"frame-ancestors 'none'")


def _arg(request: Any, name: str) -> str | None:
    """An upload's descriptive field: ``X-<Name>`` header (percent-encoded) or query argument."""
    header = request.getHeader(b"x-" + name.replace("_", "-").encode())
    if header is not None:
        return unquote(header.decode("utf-8", "replace"))
    value = request.args.get(name.encode(), [None])[0]
    return value.decode("utf-8", "replace") if value is not None else None


def _raw_name(request: Any) -> str | None:
    """A raw upload's file name: ``X-Filename`` (percent-encoded), else ``?name=``."""
    name = request.getHeader(b"x-filename")
    raw = name if name is not None else request.args.get(b"name", [None])[0]
    return unquote(raw.decode("utf-8", "replace")) if raw else None


_WEBSEED = Op("A torrent's web seed (BEP 19)", tags=("torrents",), name="webseed_bare",
              description="The url-list entry itself: WebTorrent asks for it as it is.",
              params=[_RANGE], replies=_FILE_REPLIES, limited=True,
              errors={404: "no torrent with this info-hash", **_FILE_ERRORS})


@dataclass
class ApiLimits:
    upload: KeyedLimiter[str]
    download: KeyedLimiter[str]


class GatewayApi:
    """Klein routes of the file API. One instance per process, built by ``tgateway.tap``."""

    app = new_app()
    log = Logger()

    def __init__(
        self,
        *,
        config: Config,
        store: ContentStore,
        links: Links,
        clock: IReactorTime,
        auth: Authenticator | None = None,
        uploads: Uploads | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.links = links
        self.clock = clock
        self.auth: Authenticator = auth or AnonymousOnly()
        self.proxies = ProxyPolicy(config.trusted_proxies)
        rl = config.rate_limiting
        self.limits = ApiLimits(
            upload=KeyedLimiter(rl.upload.requests_per_second, rl.upload.burst_size),
            download=KeyedLimiter(rl.download.requests_per_second, rl.download.burst_size),
        )
        self.max_upload = min(config.gateway.max_upload_size, rl.upload.max_file_size)
        limit = config.admin.default_user_storage_limit
        self.uploads = uploads or Uploads(store=store, quota=lambda owner: limit)

    # helpers ---------------------------------------------------------------------

    def _limit(self, limiter: KeyedLimiter[str], request: Any, what: str) -> None:
        wait = limiter.take(client_ip(request, self.proxies), self.clock.seconds())
        if wait:
            raise TooManyRequests(f"too many {what} requests; retry later", retry_after=wait)

    def _limit_uploads(self, request: Any) -> None:
        self._limit(self.limits.upload, request, "upload")

    def _upload_need(self) -> Need:
        return Need.OPTIONAL if self.config.gateway.allow_anonymous_uploads else Need.USER

    async def _file(self, sha: str) -> StoredFile:
        f = await self.store.get(sha)
        if f is None:
            raise NotFound(f"no file with sha256 {sha}", code="file_not_found")
        return f

    # upload ------------------------------------------------------------------------

    @authorized(app, "/api/upload", methods=["POST", "PUT"], need=_upload_need, scope="upload",
                before=_limit_uploads, op=UPLOAD_OP)
    async def upload(self, request: Any, principal: Principal | None) -> bytes:
        """A multipart form (``file`` part, ``name``/``title``/``description``/``announce_dht``
        fields) or a raw body (the same fields as ``X-Filename``, ``X-Title``... headers or
        query arguments), through the upload handler."""
        body = streamed_body(request)
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        owner = principal.pubkey if principal is not None else None
        source: MultipartBody | RawBody
        if ctype.lower().startswith("multipart/form-data"):
            source = MultipartBody(body, ctype, max_size=self.max_upload, envelope=MULTIPART_SLACK,
                                   hash_body=wants_payload_check(principal))
            context = UploadContext(owner=owner)
            limits = Limits(self.max_upload, envelope=MULTIPART_SLACK)
            declared = None  # the file part's own Content-Type
        else:
            source = RawBody(body)
            context = UploadContext(
                owner=owner,
                name=_raw_name(request),
                title=_arg(request, "title"),
                description=_arg(request, "description"),
                announce_dht=truthy(_arg(request, "announce_dht"), True),
            )
            limits = Limits(self.max_upload)
            declared = ctype or None
        payload = nip98_payload_check(principal, source.body_sha256)
        event = await self.uploads.receive(Intake(
            context=context, limits=limits, declared_type=declared,
            checks=(payload,) if payload is not None else ()), source)
        out = self.links.describe(event.file, authors=[owner] if owner else ())
        out["new"] = event.new
        if event.context.title:
            out["title"] = event.context.title
        if event.context.description:
            out["description"] = event.context.description
        return json_response(request, out, 201 if event.new else 200)

    # download -------------------------------------------------------------------------

    @route(app, "/api/download/<sha256:sha>", methods=["GET", "HEAD"], op=Op(
        "Download a file", tags=("files",), params=[_RANGE], replies=_FILE_REPLIES,
        errors={404: "no such file", **_FILE_ERRORS}, limited=True,
        description="As an attachment; single byte ranges, ETag (the sha256), If-None-Match."))
    async def download(self, request: Any, sha: str) -> None:
        self._limit(self.limits.download, request, "download")
        f = await self._file(sha)
        await send_file(request, self.store.reader, f, disposition="attachment")

    # The torrents' url-list names ".../<info_hash>/": BEP 19 clients append the file name, but
    # WebTorrent requests a single-file torrent's web seed URL as it is, slash and all.
    @route(app, "/api/webseed/<info_hash:ih>", methods=["GET", "HEAD"], op=_WEBSEED)
    @route(app, "/api/webseed/<info_hash:ih>/", methods=["GET", "HEAD"],
           op=replace(_WEBSEED, name="webseed_slash"))
    async def webseed_bare(self, request: Any, ih: str) -> None:
        await self.webseed(request, ih, "")

    @route(app, "/api/webseed/<info_hash:ih>/<path:name>", methods=["GET", "HEAD"], op=Op(
        "A torrent's web seed (BEP 19), with the file's name", tags=("torrents",),
        params=[_RANGE], replies=_FILE_REPLIES, limited=True,
        errors={404: "no torrent with this info-hash", **_FILE_ERRORS}))
    async def webseed(self, request: Any, ih: str, name: str) -> None:
        self._limit(self.limits.download, request, "download")
        f = await self.store.get_by_info_hash(ih)
        if f is None:
            raise NotFound(f"no torrent with info-hash {ih}", code="torrent_not_found")
        await send_file(request, self.store.reader, f, content_type="application/octet-stream")

    # CORS preflights (OPTIONS is not part of the OpenAPI document)
    @app.route("/api/download/<sha256>", methods=["OPTIONS"])
    @app.route("/api/webseed/<path:rest>", methods=["OPTIONS"])
    @app.route("/api/torrent/<sha256>", methods=["OPTIONS"])
    @app.route("/api/files/<sha256>", methods=["OPTIONS"])
    @app.route("/api/upload", methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request)

    # torrent and metadata -----------------------------------------------------------

    @route(app, "/api/torrent/<sha256:sha>", methods=["GET", "HEAD"], op=Op(
        "A file's .torrent", tags=("torrents",),
        params=[Param("webseed", schema={"type": "string", "enum": ["1", "0", "true", "false"]},
                      description="0: no url-list (only the gateway's peer completes it)")],
        replies={200: Reply("the metainfo, bencoded",
                            content={"application/x-bittorrent": BYTES})},
        errors={404: "no such file"}))
    async def torrent(self, request: Any, sha: str) -> bytes:
        f = await self._file(sha)
        # ?webseed=0: no url-list (a torrent only the gateway's BitTorrent peer can complete).
        webseed = request.args.get(b"webseed", [b"1"])[0] not in (b"0", b"false", b"no")
        data = self.links.torrent_bytes(f, webseed=webseed)
        set_headers(request, CORS_HEADERS)
        request.setHeader(b"content-type", b"application/x-bittorrent")
        request.setHeader(b"content-disposition", content_disposition("attachment", f.name + ".torrent"))
        return data

    @route(app, "/api/files/<sha256:sha>", methods=["GET"], op=Op(
        "A file's description", tags=("files",),
        replies={200: Reply("its sizes, hashes, links and owners' BUD-10 URI", json=FILE)},
        errors={404: "no such file"}))
    async def metadata(self, request: Any, sha: str) -> bytes:
        f = await self._file(sha)
        set_headers(request, CORS_HEADERS)
        # the owners' keys are the BUD-10 URI's author hints (as=)
        owners = [o.owner for o in await self.store.owners(sha)]
        return json_response(request, self.links.describe(f, authors=owners))

    # the API's documentation page -------------------------------------------------------------------------

    @route(app, "/docs/api", methods=["GET", "HEAD"], op=Op(
        "The API documentation page (renders /api/openapi.json)", tags=("web",),
        replies={200: Reply("HTML", content={"text/html": {"type": "string"}})}))
    def api_docs(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", DOCS_CSP)
        return _docs_file("api.html")

    @route(app, "/docs/api.js", methods=["GET", "HEAD"], op=Op(
        "The API documentation page's script", tags=("web",),
        replies={200: Reply("JavaScript", content={"text/javascript": {"type": "string"}})}))
    def api_docs_script(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
        return _docs_file("api.js")

"""The gateway's file API on ``gateway.port``: upload, download, torrent, metadata, webseed.

Routes are thin: they validate input (path converters check hashes), call the content store
through its narrow interface and render JSON; every error is an ApiError rendered by
``tgateway.http.errors``. Uploads go through the one upload handler (:mod:`tgateway.uploads`);
who may upload is declared on the route (:func:`tgateway.http.auth.authorized`), and the
caller's NIP-98 ``payload`` tag, if any, is one of the upload's checks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
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
from tgateway.http.send import content_disposition, send_file
from tgateway.http.upload import MULTIPART_SLACK, MultipartBody, RawBody, streamed_body, truthy
from tgateway.links import Links
from tgateway.proxies import ProxyPolicy
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.api import ContentStore
from tgateway.storage.model import StoredFile, UploadContext
from tgateway.uploads import Intake, Limits, Uploads

from .auth import nip98_payload_check, wants_payload_check


@functools.lru_cache(maxsize=1)
def _index_html() -> bytes:
    return (resources.files("tgateway.web") / "static" / "index.html").read_bytes()


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
                before=_limit_uploads)
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

    @app.route("/api/download/<sha256:sha>", methods=["GET", "HEAD"])
    async def download(self, request: Any, sha: str) -> None:
        self._limit(self.limits.download, request, "download")
        f = await self._file(sha)
        await send_file(request, self.store.reader, f, disposition="attachment")

    # The torrents' url-list names ".../<info_hash>/": BEP 19 clients append the file name, but
    # WebTorrent requests a single-file torrent's web seed URL as it is, slash and all.
    @app.route("/api/webseed/<info_hash:ih>", methods=["GET", "HEAD"])
    @app.route("/api/webseed/<info_hash:ih>/", methods=["GET", "HEAD"])
    async def webseed_bare(self, request: Any, ih: str) -> None:
        await self.webseed(request, ih, "")

    @app.route("/api/webseed/<info_hash:ih>/<path:name>", methods=["GET", "HEAD"])
    async def webseed(self, request: Any, ih: str, name: str) -> None:
        self._limit(self.limits.download, request, "download")
        f = await self.store.get_by_info_hash(ih)
        if f is None:
            raise NotFound(f"no torrent with info-hash {ih}", code="torrent_not_found")
        await send_file(request, self.store.reader, f, content_type="application/octet-stream")

    @app.route("/api/download/<sha256>", methods=["OPTIONS"])
    @app.route("/api/webseed/<path:rest>", methods=["OPTIONS"])
    @app.route("/api/torrent/<sha256>", methods=["OPTIONS"])
    @app.route("/api/files/<sha256>", methods=["OPTIONS"])
    @app.route("/api/upload", methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request)

    # torrent and metadata -----------------------------------------------------------

    @app.route("/api/torrent/<sha256:sha>", methods=["GET", "HEAD"])
    async def torrent(self, request: Any, sha: str) -> bytes:
        f = await self._file(sha)
        # ?webseed=0: no url-list (a torrent only the gateway's BitTorrent peer can complete).
        webseed = request.args.get(b"webseed", [b"1"])[0] not in (b"0", b"false", b"no")
        data = self.links.torrent_bytes(f, webseed=webseed)
        set_headers(request, CORS_HEADERS)
        request.setHeader(b"content-type", b"application/x-bittorrent")
        request.setHeader(b"content-disposition", content_disposition("attachment", f.name + ".torrent"))
        return data

    @app.route("/api/files/<sha256:sha>", methods=["GET"])
    async def metadata(self, request: Any, sha: str) -> bytes:
        f = await self._file(sha)
        set_headers(request, CORS_HEADERS)
        # the owners' keys are the BUD-10 URI's author hints (as=)
        owners = [o.owner for o in await self.store.owners(sha)]
        return json_response(request, self.links.describe(f, authors=owners))

    # web page -------------------------------------------------------------------------

    @app.route("/", methods=["GET", "HEAD"])
    def index(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", b"default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
        return _index_html()

"""The Blossom HTTP adapter (Klein) on ``blossom_server.port``.

Endpoints (all at the root, BUD-01):

- ``GET``/``HEAD /<sha256>[.ext]`` (BUD-01): any stored file, blob or chunked, through the
  shared :func:`~tgateway.http.send.send_file` (single ranges, ETag, CORS, backpressure), with a
  ``Sunset`` date when retention will remove it (:func:`sunset`);
- ``PUT /upload`` (BUD-02): the body is streamed into the content store as it arrives and is
  never modified, through the one upload handler (:mod:`tgateway.uploads`): ``X-SHA-256`` and
  the token's ``x`` tags are checked against the bytes before the file becomes visible;
  201 for a new blob, 200 when it was already stored; ``HEAD /upload`` (BUD-06) answers the
  same checks from ``X-SHA-256`` (required: 400 without), ``X-Content-Length`` (411 without)
  and ``X-Content-Type`` without a body;
- ``PUT /media``, ``HEAD /media`` (BUD-05): the upload is optimised with FFmpeg
  (:mod:`tgateway.blossom.media`) and the optimised file is stored as a new blob through the
  upload handler; the token (``t`` = ``media``) and ``X-SHA-256`` name the original;
- ``GET /list/<pubkey>`` (BUD-12: ``cursor``, ``limit``; ``since``, ``until``),
  ``DELETE /<sha256>`` (drops the caller's ownership; the bytes go with the last owner);
- ``PUT /mirror`` (BUD-04: an upload whose bytes come from a URL, same handler; a URL of this
  server is read from the store), ``PUT /report`` (BUD-09, stored for the admin, bounded: see
  :meth:`BlossomServer.report`);
- ``OPTIONS`` anywhere: the CORS preflight.

Every descriptor carries the BUD-08 ``nip94`` tags (``magnet`` and ``i``: the blob's torrent)
and a BUD-10 ``blossom_uri``. Every response carries ``Access-Control-Allow-Origin: *``; every
error is the JSON ``{"error", "message"}`` with the message repeated in ``X-Reason``. Each route
declares its auth (:func:`tgateway.http.auth.authorized`); tokens (BUD-11) are checked by
:class:`~tgateway.blossom.auth.BlossomAuthenticator`; which verbs need one is
``blossom_server.require_auth`` (``delete`` always does: it acts on the caller's ownership;
``mirror`` and ``media`` follow ``upload``). A token's ``server`` tags must name this server:
the host of ``blossom_server.public_url``, or of the listening address when it is empty; the
request's ``Host`` header is never trusted for it.

Rate limits, per client address: reads (``GET``/``HEAD`` of blobs, the ``HEAD`` preflights)
count in the download class (``rate_limiting.download``, requests a second), what costs the
server (uploads, media, mirrors, deletes, reports, lists) in ``blossom_server.rate_limit``
(requests a minute); reports have their own bucket on top.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.blocklist import Bans
from tgateway.config import Config
from tgateway.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    LengthRequired,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMediaType,
)
from tgateway.http.app import new_app
from tgateway.http.auth import Need, Principal, authorized
from tgateway.http.body import body_error
from tgateway.http.converters import parse_hex
from tgateway.http.headers import (
    CORS_HEADERS,
    CORS_PREFLIGHT,
    answer_preflight,
    client_ip,
    set_headers,
)
from tgateway.http.jsonio import json_response
from tgateway.http.openapi import (
    BLOSSOM_SCHEMES,
    JSON,
    Body,
    Op,
    Param,
    Reply,
    hidden,
    route,
)
from tgateway.http.send import send_file
from tgateway.http.upload import RawBody, streamed_body
from tgateway.links import Links
from tgateway.proxies import ProxyPolicy
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.api import ContentStore, Received
from tgateway.storage.blossom_reports import BlossomStore, ReportLimits, ReportRefused
from tgateway.storage.model import StoredEvent, StoredFile, UploadContext
from tgateway.uploads import Check, Intake, Limits, Uploads

from .auth import AuthError, BlossomAuthenticator, require_hash_match, server_domain
from .descriptor import descriptor
from .media import BodyFile, LocalFile, MediaOptimizer, accepts_type, plan_for
from .mirror import MirrorSource, StoredBlobSource, guarded_agent, own_blob, parse_mirror_url
from .report import MAX_REPORT_BYTES, parse_report
from .routing import (
    BLOB,
    BYTES,
    CHECK,
    CHECK_ERRORS,
    HEX64,
    STORED,
    UPLOAD_ERRORS,
    X_FILENAME,
    X_SHA256,
    error_headers,
    int_arg,
)

LIST_MAX = 1000

BLOSSOM_PREFLIGHT = {
    **CORS_PREFLIGHT,
    b"access-control-allow-headers": b"Authorization, *, " + CORS_PREFLIGHT[
        b"access-control-allow-headers"],
    b"access-control-allow-methods": b"GET, HEAD, PUT, DELETE, OPTIONS",
}
#: the BUDs this server implements (``GET /``)
BUDS = [1, 2, 4, 5, 6, 8, 9, 10, 11, 12]


def sunset(f: StoredFile, config: Config) -> float | None:
    """When retention will remove ``f`` (RFC 8594 ``Sunset``): ``admin.max_file_age`` after it
    was stored, when ``admin.auto_cleanup`` is on; None otherwise. The date comes from the
    configuration alone: every file is removed at that age at the latest, whatever else the
    cleanup does earlier."""
    admin = config.admin
    if not admin.auto_cleanup:
        return None
    return float(f.created_at) + float(admin.max_file_age)


def _owner(principal: Principal | None) -> str | None:
    return principal.pubkey if principal is not None else None


def _policy(scope: str) -> Callable[[BlossomServer], Need]:
    """The route's need, from ``blossom_server.require_auth`` (see :meth:`BlossomServer.need`)."""
    return lambda server: server.need(scope)


def _token_scope(principal: Principal | None, mismatch: type[ApiError]) -> tuple[Check, ...]:
    """The upload check that the stored bytes are among the blobs the token names."""
    if principal is None:
        return ()

    def check(result: Received) -> None:
        if not principal.allows(result.sha256):
            raise mismatch(f"authorization event has no x tag for {result.sha256}",
                           code="wrong_hash")

    return (check,)


class BlossomServer:
    """Klein routes of the Blossom server. One instance per process, built by ``tgateway.tap``."""

    app = new_app(decorate=error_headers, not_found="no such Blossom endpoint",
                  schemes=BLOSSOM_SCHEMES)
    log = Logger()

    def __init__(
        self,
        *,
        config: Config,
        store: ContentStore,
        blossom_store: BlossomStore,
        links: Links,
        clock: IReactorTime,
        uploads: Uploads | None = None,
        http_agent: Any = None,
        report_limits: ReportLimits | None = None,
        reports_per_minute: float = 1.0,
        report_burst: int = 10,
        media: MediaOptimizer | None = None,
        bans: Bans | None = None,
    ) -> None:
        bc = config.blossom_server
        self.config = config
        self.store = store
        self.bstore = blossom_store
        self.links = links
        self.clock = clock
        self.base_url = bc.base_url()
        self.max_blob = int(bc.max_blob_size)
        self.limits = Limits(self.max_blob, noun="blob")
        limit = int(config.admin.default_user_storage_limit)
        self.uploads = uploads or Uploads(store=store, quota=lambda owner: limit)
        self.require = frozenset(bc.require_auth)
        rate = bc.rate_limit
        # what costs the server: uploads, media, mirrors, deletes, reports, lists
        self.limiter: KeyedLimiter[str] | None = (
            KeyedLimiter(rate.requests_per_minute / 60.0, rate.burst_size)
            if rate.requests_per_minute > 0 else None
        )
        # reads: the download class, as the gateway's downloads and webseed
        reads = config.rate_limiting.download
        self.read_limiter: KeyedLimiter[str] | None = (
            KeyedLimiter(reads.requests_per_second, reads.burst_size)
            if reads.requests_per_second > 0 else None
        )
        self.media = media
        # ``server`` tags are checked against this name only: the host of
        # ``blossom_server.public_url``, else of the listening address (``base_url``). Never the
        # request's Host header, which the client chooses.
        self.auth = BlossomAuthenticator(clock=clock, domain=server_domain(self.base_url),
                                         admins=config.admin.pubkeys, bans=bans)
        self.report_limits = report_limits or ReportLimits(max_open=bc.max_open_reports)
        self.report_limiter: KeyedLimiter[str] = KeyedLimiter(reports_per_minute / 60.0,
                                                              report_burst)
        self.http = http_agent or guarded_agent(clock, allow_private=bc.mirror_allow_private)
        self.proxies = ProxyPolicy(config.trusted_proxies)

    # helpers ---------------------------------------------------------------------

    def _gate(self, request: Any) -> None:
        """CORS on every response, then the per-address limit of costly requests."""
        self._limit(request, self.limiter)

    def _gate_read(self, request: Any) -> None:
        """CORS on every response, then the per-address limit of reads (the download class)."""
        self._limit(request, self.read_limiter)

    def _limit(self, request: Any, limiter: KeyedLimiter[str] | None) -> None:
        set_headers(request, CORS_HEADERS)
        if limiter is not None:
            wait = limiter.take(client_ip(request, self.proxies), self.clock.seconds())
            if wait:
                raise TooManyRequests("too many requests; retry later", retry_after=wait)

    def need(self, scope: str) -> Need:
        """What a route needs by ``blossom_server.require_auth``: ``get`` and ``list`` do not look
        at credentials unless required; an upload (and a mirror, when ``upload`` or ``mirror``
        is listed) takes an optional token otherwise."""
        required = scope in self.require or (scope in ("mirror", "media")
                                             and "upload" in self.require)
        if required:
            return Need.USER
        return Need.NONE if scope in ("get", "list") else Need.OPTIONAL

    def _x_sha256(self, request: Any) -> str | None:
        raw = request.getHeader(b"x-sha-256")
        if raw is None:
            return None
        return parse_hex(raw.decode("latin-1").strip(), 64, "X-SHA-256")

    async def _after_store(
        self, request: Any, event: StoredEvent, owner: str | None, original: str | None = None
    ) -> bytes:
        uploaded = await self.bstore.uploaded_at(event.file.sha256, owner or "")
        body = descriptor(
            event.file, base_url=self.base_url, links=self.links,
            uploaded=uploaded if uploaded is not None else self.clock.seconds(),
            authors=[owner] if owner else (), original=original,
        )
        return json_response(request, body, 201 if event.new else 200)

    # preflight and root ------------------------------------------------------------

    @app.route("/", methods=["OPTIONS"])
    @app.route("/<path:rest>", methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request, BLOSSOM_PREFLIGHT)

    @route(app, "/", methods=["GET", "HEAD"], op=Op(
        "What this Blossom server implements", tags=("blossom",), limited=True,
        replies={200: Reply("the BUDs and whether /media runs", json={
            "type": "object", "required": ["server", "protocol", "buds", "media"],
            "properties": {"server": {"type": "string"}, "protocol": {"const": "blossom"},
                           "buds": {"type": "array", "items": {"type": "integer"}},
                           "media": {"type": "boolean"}}})}))
    def root(self, request: Any) -> bytes:
        self._gate_read(request)
        return json_response(request, {"server": "tgateway", "protocol": "blossom",
                                       "buds": BUDS, "media": self.media is not None})

    # BUD-01 ------------------------------------------------------------------------

    @authorized(app, "/<blob:sha>", methods=["GET", "HEAD"], need=_policy("get"), scope="get",
                before=_gate_read, op=Op(
                    "A blob (BUD-01)", tags=("blossom",), limited=True,
                    params=[Param("Range", "header", description="one byte range")],
                    replies={200: Reply("the bytes", content={"*/*": BYTES}),
                             206: Reply("the byte range asked for", content={"*/*": BYTES},
                                        headers={"Content-Range": {"type": "string",
                                                                   "required": True}}),
                             304: Reply("If-None-Match names the blob's ETag")},
                    errors={404: "no such blob", 416: "the Range is outside the blob"}))
    async def get_blob(self, request: Any, principal: Principal | None, sha: str) -> None:
        if principal is not None:
            require_hash_match(principal, sha)
        f = await self.store.get(sha)
        if f is None:
            raise NotFound(f"blob {sha} not found", code="blob_not_found")
        end = sunset(f, self.config)
        extra = {b"sunset": formatdate(end, usegmt=True).encode()} if end is not None else None
        await send_file(request, self.store.reader, f, extra_headers=extra)

    # BUD-02 ------------------------------------------------------------------------

    @authorized(app, "/upload", methods=["PUT"], need=_policy("upload"), scope="upload",
                before=_gate, op=Op(
                    "Upload a blob (BUD-02)", tags=("blossom",), limited=True,
                    params=[X_SHA256, X_FILENAME],
                    body=Body({"application/octet-stream": BYTES}),
                    replies=STORED, errors=UPLOAD_ERRORS))
    async def upload(self, request: Any, principal: Principal | None) -> bytes:
        body = streamed_body(request)
        expected = self._x_sha256(request)
        if principal is not None and expected is not None:
            require_hash_match(principal, expected)
        owner = _owner(principal)
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1") or None
        intake = Intake(
            context=UploadContext(owner=owner, name=self._filename(request), source="blossom"),
            limits=self.limits, declared_type=ctype, expected_sha256=expected,
            checks=_token_scope(principal, AuthError),
        )
        event = await self.uploads.receive(intake, RawBody(body))
        return await self._after_store(request, event, owner)

    @staticmethod
    def _filename(request: Any) -> str | None:
        raw = request.getHeader(b"x-filename")
        return unquote(raw.decode("utf-8", "replace")) if raw else None

    @authorized(app, "/upload", methods=["HEAD"], need=_policy("upload"), scope="upload",
                before=_gate_read, op=Op(
                    "Would this upload be accepted? (BUD-06)", tags=("blossom",), limited=True,
                    name="upload_check", params=CHECK, replies={200: Reply("it would")},
                    errors=CHECK_ERRORS))
    async def upload_check(self, request: Any, principal: Principal | None) -> bytes:
        """BUD-06: would this upload be accepted? Answers from headers alone."""
        await self._preflight(request, principal)
        request.setResponseCode(200)
        return b""

    async def _preflight(self, request: Any, principal: Principal | None) -> str | None:
        """The checks of ``HEAD /upload`` and ``HEAD /media``: ``X-Content-Length`` (411
        without, 413 over the limit or the quota), ``X-SHA-256`` (400 without or malformed, 401
        when the token does not name it). Returns ``X-Content-Type``."""
        raw_len = request.getHeader(b"x-content-length")
        if raw_len is None:
            raise LengthRequired("X-Content-Length header is missing")
        try:
            size = int(raw_len)
            if size < 0:
                raise ValueError
        except ValueError:
            raise BadRequest("X-Content-Length must be a byte count", code="invalid_field") from None
        expected = self._x_sha256(request)
        if expected is None:
            raise BadRequest("X-SHA-256 header is missing: the blob's sha256 in hex",
                             code="missing_sha256")
        if principal is not None:
            require_hash_match(principal, expected)
        await self.uploads.admit(
            Intake(context=UploadContext(owner=_owner(principal)), limits=self.limits,
                   expected_sha256=expected), size)
        raw_type = request.getHeader(b"x-content-type")
        return raw_type.decode("latin-1").strip() if raw_type else None

    # BUD-05 ------------------------------------------------------------------------

    def _media(self) -> MediaOptimizer:
        if self.media is None:
            raise ServiceUnavailable("media optimisation is off here (transcoding.enabled, or no "
                                     "FFmpeg): use PUT /upload", code="media_unavailable")
        return self.media

    @authorized(app, "/media", methods=["HEAD"], need=_policy("media"), scope="media",
                before=_gate_read, op=Op(
                    "Would this media upload be accepted? (BUD-05)", tags=("blossom",),
                    limited=True, name="media_check", params=CHECK,
                    replies={200: Reply("it would")},
                    errors={**CHECK_ERRORS, 415: "neither an image nor a video",
                            503: "media optimisation is off here"}))
    async def media_check(self, request: Any, principal: Principal | None) -> bytes:
        """BUD-05 preflight, as ``HEAD /upload`` (BUD-06), and 415 for a type that is neither an
        image this server re-encodes nor a video."""
        self._media()
        ctype = await self._preflight(request, principal)
        if ctype and not accepts_type(ctype):
            raise UnsupportedMediaType(f"/media takes images and videos, not {ctype}",
                                       code="unsupported_media")
        request.setResponseCode(200)
        return b""

    @authorized(app, "/media", methods=["PUT"], need=_policy("media"), scope="media",
                before=_gate, op=Op(
                    "Upload an image or video to be optimised (BUD-05)", tags=("blossom",),
                    limited=True, params=[X_SHA256, X_FILENAME],
                    body=Body({"application/octet-stream": BYTES}),
                    replies=STORED,
                    errors={**UPLOAD_ERRORS, 415: "neither an image nor a video",
                            503: "media optimisation is off here"}))
    async def media_upload(self, request: Any, principal: Principal | None) -> bytes:
        """BUD-05: optimise the body (:mod:`tgateway.blossom.media`) and store the result as a
        new blob; answers its descriptor (``nip94`` ``ox``: the original's sha256). The token's
        ``x`` tags and ``X-SHA-256`` name the body as sent (409 when ``X-SHA-256`` differs)."""
        media = self._media()
        body = streamed_body(request)
        expected = self._x_sha256(request)
        if principal is not None and expected is not None:
            require_hash_match(principal, expected)
        owner = _owner(principal)
        await self.uploads.admit(Intake(context=UploadContext(owner=owner), limits=self.limits,
                                        expected_sha256=expected), body.length)
        media.reserve()
        try:
            return await self._optimise(request, principal, media, body, expected)
        finally:
            media.release()

    async def _optimise(self, request: Any, principal: Principal | None, media: MediaOptimizer,
                        body: Any, expected: str | None) -> bytes:
        owner = _owner(principal)
        folder = await media.folder()
        try:
            received = BodyFile(os.path.join(folder, "input"), self.max_blob)
            try:
                await body.consume(received.feed, threaded=True)
            except BaseException as e:
                raise body_error(e) from None
            finally:
                received.close()
            if received.size == 0:
                raise BadRequest("the media is empty", code="empty_upload")
            if expected is not None and received.sha256 != expected:
                raise Conflict(f"the body's sha256 is {received.sha256}, X-SHA-256 said "
                               f"{expected}", code="hash_mismatch")
            if principal is not None:
                require_hash_match(principal, received.sha256)
            # the original is refused as an upload of it would be (the block list), though
            # what gets stored is its optimised copy
            self.uploads.check_content(received.sha256, received.size)
            ctype = (request.getHeader(b"content-type") or b"").decode("latin-1") or None
            plan = plan_for(received.head, ctype)
            if plan is None:
                raise UnsupportedMediaType("/media takes images (JPEG, PNG, GIF, WebP, BMP, "
                                           "TIFF) and videos", code="unsupported_media")
            out = await media.optimise(received.path, plan, folder)
            size = os.path.getsize(out)
            stem = os.path.splitext(self._filename(request) or received.sha256)[0]
            intake = Intake(
                context=UploadContext(owner=owner, name=stem + plan.extension, source="media"),
                limits=self.limits, declared_type=plan.mime,
            )
            event = await self.uploads.receive(intake, LocalFile(out, size, self.clock,
                                                                 plan.mime))
        finally:
            await media.discard(folder)
        return await self._after_store(request, event, owner, original=received.sha256)

    @authorized(app, "/list/<pubkey:owner>", methods=["GET", "HEAD"], need=_policy("list"),
                scope="list", before=_gate, op=Op(
                    "A key's blobs, newest first (BUD-12)", tags=("blossom",), limited=True,
                    params=[Param("since", schema={"type": "integer", "minimum": 0,
                                                   "maximum": 2**53}),
                            Param("until", schema={"type": "integer", "minimum": 0,
                                                   "maximum": 2**53}),
                            Param("limit", schema={"type": "integer", "minimum": 1,
                                                   "maximum": LIST_MAX}),
                            Param("cursor", schema=HEX64,
                                  description="the last blob of the previous page")],
                    replies={200: Reply("the blobs", json={"type": "array", "items": BLOB})},
                    errors={400: "a bad argument, or a cursor that is not the key's blob",
                            403: "a token of another key"}))
    async def list_blobs(self, request: Any, principal: Principal | None, owner: str) -> bytes:
        if principal is not None and principal.pubkey != owner:
            raise Forbidden("you can only list your own blobs", code="forbidden")
        since = int_arg(request, "since", 0, 2**53)
        until = int_arg(request, "until", 0, 2**53)
        limit = int_arg(request, "limit", 1, LIST_MAX) or LIST_MAX
        raw_cursor = request.args.get(b"cursor", [None])[0]
        cursor = parse_hex(raw_cursor.decode("latin-1"), 64, "cursor") if raw_cursor else None
        if cursor is not None and await self.bstore.uploaded_at(cursor, owner) is None:
            # BUD-12: the cursor is the last blob of the previous page; a page after a blob
            # this key does not have would silently start over
            raise BadRequest(f"cursor {cursor} is not a blob of {owner}", code="invalid_cursor")
        rows = await self.bstore.list_blobs(
            owner, since=since, until=until, cursor=cursor, limit=limit
        )
        out = [
            descriptor(r.file, base_url=self.base_url, links=self.links, uploaded=r.uploaded,
                       authors=[owner])
            for r in rows
        ]
        return json_response(request, out)

    @authorized(app, "/<blob:sha>", methods=["DELETE"], need=Need.USER, scope="delete",
                before=_gate, op=Op(
                    "Give up the caller's ownership of a blob", tags=("blossom",), limited=True,
                    description="The bytes are deleted with the last owner.",
                    replies={200: Reply("ownership removed", json={
                        "type": "object", "required": ["sha256", "deleted", "bytes_removed"],
                        "properties": {"sha256": HEX64, "deleted": {"const": True},
                                       "bytes_removed": {"type": "boolean"}}})},
                    errors={404: "the caller has no such blob"}))
    async def delete_blob(self, request: Any, principal: Principal, sha: str) -> bytes:
        require_hash_match(principal, sha)
        try:
            gone = await self.store.remove_owner(sha, principal.pubkey)
        except KeyError:
            raise NotFound(f"you have no blob {sha}", code="blob_not_found") from None
        return json_response(request, {"sha256": sha, "deleted": True,
                                       "bytes_removed": gone is not None})

    # BUD-04 ------------------------------------------------------------------------

    @authorized(app, "/mirror", methods=["PUT"], need=_policy("mirror"), scope="mirror",
                before=_gate, op=Op(
                    "Store a blob from a URL (BUD-04)", tags=("blossom",), limited=True,
                    params=[X_SHA256, Param("X-Content-Length", "header",
                                             {"type": "string", "pattern": "^[0-9]{1,15}$"})],
                    body=Body({JSON: {"type": "object", "required": ["url"],
                                      "properties": {"url": {"type": "string",
                                                             "format": "uri"}}}}),
                    replies=STORED,
                    errors={**UPLOAD_ERRORS, 400: "not JSON, or not an http(s) URL",
                            403: "the URL names a host the server may not reach",
                            404: "a URL of this server names no blob here",
                            502: "the URL could not be fetched"}))
    async def mirror(self, request: Any, principal: Principal | None) -> bytes:
        try:
            data = json.loads(request.content.read() or b"null")
        except ValueError:
            raise BadRequest("mirror body must be JSON", code="invalid_json") from None
        url = parse_mirror_url(data.get("url") if isinstance(data, dict) else None)
        expected = self._x_sha256(request)
        if principal is not None and expected is not None:
            require_hash_match(principal, expected)
        owner = _owner(principal)
        raw_len = request.getHeader(b"x-content-length")
        declared = int(raw_len) if raw_len is not None and raw_len.strip().isdigit() else None
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or None
        intake = Intake(
            context=UploadContext(owner=owner, name=name, source="mirror"),
            limits=self.limits, expected_sha256=expected, checks=_token_scope(principal, Conflict),
        )
        source: MirrorSource | StoredBlobSource
        ours = own_blob(url, self.base_url)
        if ours is not None:
            f = await self.store.get(ours)
            if f is None:
                raise NotFound(f"this server has no blob {ours}", code="blob_not_found")
            source = StoredBlobSource(self.store, f)
        else:
            source = MirrorSource(self.http, url, max_size=self.max_blob, clock=self.clock,
                                  length=declared)
        event = await self.uploads.receive(intake, source)
        return await self._after_store(request, event, owner)

    # BUD-09 ------------------------------------------------------------------------

    @route(app, "/report", methods=["PUT"], op=Op(
        "Report blobs to the operator (BUD-09)", tags=("blossom",), limited=True,
        description="A signed kind 1984 event with x tags naming blobs stored here.",
        body=Body({JSON: {"type": "object", "required": ["id", "pubkey", "created_at", "kind",
                                                          "tags", "content", "sig"]}}),
        replies={200: Reply("received", json={
            "type": "object", "required": ["id", "received"],
            "properties": {"id": {"type": "string"}, "received": {"const": True}}})},
        errors={400: "not a valid report event", 404: "a blob it names is not stored here",
                413: "the event is too large", 507: "the reports are full"}))
    async def report(self, request: Any) -> bytes:
        """BUD-09. Anyone may report, so what a report may store is bounded: the event is at
        most ``MAX_REPORT_BYTES`` of JSON with ``MAX_REPORT_CONTENT`` bytes of content (413),
        names 1 to ``MAX_REPORT_BLOBS`` blobs (400), each of which must be stored here (404);
        each address sends ``report_burst`` reports, then one every ``60/reports_per_minute``
        seconds (429); and :attr:`report_limits` caps the open reports per reporter and per
        blob (429) and in all (507). A refused report stores nothing."""
        self._gate(request)
        raw = request.content.read()
        if len(raw) > MAX_REPORT_BYTES:
            raise PayloadTooLarge(f"a report event is at most {MAX_REPORT_BYTES} bytes",
                                  code="report_too_large")
        event, blobs = parse_report(raw)
        wait = self.report_limiter.take(client_ip(request, self.proxies), self.clock.seconds())
        if wait:
            raise TooManyRequests("too many reports from this address; retry later",
                                  retry_after=wait)
        try:
            new = await self.bstore.add_report(
                event.to_json(), list(blobs.items()), client_ip=None, now=self.clock.seconds(),
                limits=self.report_limits,
            )
        except ReportRefused as e:
            raise _report_error(e) from None
        self.log.info("blob report {id} about {n} blob(s), new={new}",
                      id=event.id, n=len(blobs), new=new)
        return json_response(request, {"id": event.id, "received": True}, 200)

    # fallbacks ---------------------------------------------------------------------

    @route(app, "/<path:rest>", methods=["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"],
           op=hidden("404 for paths that are no Blossom endpoint"))
    def not_found(self, request: Any, rest: str) -> bytes:
        self._gate_read(request)
        raise NotFound("no such Blossom endpoint", code="not_found")


def _report_error(refused: ReportRefused) -> ApiError:
    if refused.reason == "unknown_blob":
        return NotFound(refused.message, code="blob_not_found")
    if refused.reason == "full":
        return InsufficientStorage(refused.message, code="reports_full")
    # the open reports of this key or blob: more are taken once the operator handled some
    return ApiError(refused.message, status=429, code="too_many_reports")


__all__ = ["BLOSSOM_PREFLIGHT", "BlossomServer"]

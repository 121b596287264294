"""Every way a blob comes into the Blossom server, each through the one upload handler
(:mod:`tgateway.uploads`): ``PUT /upload`` (BUD-02: the body streamed into the content store as
it arrives, never modified; ``X-SHA-256`` and the token's ``x`` tags checked against the bytes
before the file becomes visible; 201 for a new blob, 200 when it was already stored), ``HEAD
/upload`` (BUD-06: the same checks from ``X-SHA-256``, ``X-Content-Length`` and
``X-Content-Type`` without a body), ``PUT``/``HEAD /media`` (BUD-05: optimised with FFmpeg,
:mod:`tgateway.blossom.media`, and stored as a new blob) and ``PUT /mirror`` (BUD-04: the bytes
come from a URL, :mod:`tgateway.blossom.mirror`; a URL of this server is read from the store).
Routes of :class:`~tgateway.blossom.server.BlossomServer`, on the port's one Klein app
(:data:`~tgateway.blossom.routing.APP`)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.interfaces import IReactorTime

from tgateway.errors import (
    ApiError,
    BadRequest,
    Conflict,
    LengthRequired,
    NotFound,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from tgateway.http.auth import Principal, authorized
from tgateway.http.body import body_error
from tgateway.http.converters import parse_hex
from tgateway.http.jsonio import json_response
from tgateway.http.openapi import JSON, Body, Op, Param, Reply
from tgateway.http.upload import RawBody, streamed_body
from tgateway.links import Links
from tgateway.storage.api import ContentStore, Received
from tgateway.storage.blossom_reports import BlossomStore
from tgateway.storage.model import StoredEvent, UploadContext
from tgateway.uploads import Check, Intake, Limits, Uploads

from .auth import AuthError, BlossomAuthenticator, require_hash_match
from .descriptor import descriptor
from .media import BodyFile, LocalFile, MediaOptimizer, accepts_type, plan_for
from .mirror import MirrorSource, StoredBlobSource, own_blob, parse_mirror_url
from .routing import (
    APP,
    BYTES,
    CHECK,
    CHECK_ERRORS,
    STORED,
    UPLOAD_ERRORS,
    X_FILENAME,
    X_SHA256,
    gate,
    gate_read,
    policy,
)

__all__ = ["IntakeRoutes"]


def _owner(principal: Principal | None) -> str | None:
    return principal.pubkey if principal is not None else None


def _token_scope(principal: Principal | None, mismatch: type[ApiError]) -> tuple[Check, ...]:
    """The upload check that the stored bytes are among the blobs the token names."""
    if principal is None:
        return ()

    def check(result: Received) -> None:
        if not principal.allows(result.sha256):
            raise mismatch(f"authorization event has no x tag for {result.sha256}",
                           code="wrong_hash")

    return (check,)


class IntakeRoutes:
    """The upload, media and mirror routes of :class:`~tgateway.blossom.server.BlossomServer`."""

    auth: BlossomAuthenticator
    store: ContentStore
    bstore: BlossomStore
    links: Links
    clock: IReactorTime
    base_url: str
    max_blob: int
    limits: Limits
    uploads: Uploads
    media: MediaOptimizer | None
    http: Any  # the guarded HTTP agent mirrors fetch with

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

    # BUD-02 ------------------------------------------------------------------------

    @authorized(APP, "/upload", methods=["PUT"], need=policy("upload"), scope="upload",
                before=gate, op=Op(
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

    @authorized(APP, "/upload", methods=["HEAD"], need=policy("upload"), scope="upload",
                before=gate_read, op=Op(
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

    @authorized(APP, "/media", methods=["HEAD"], need=policy("media"), scope="media",
                before=gate_read, op=Op(
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

    @authorized(APP, "/media", methods=["PUT"], need=policy("media"), scope="media",
                before=gate, op=Op(
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

    # BUD-04 ------------------------------------------------------------------------

    @authorized(APP, "/mirror", methods=["PUT"], need=policy("mirror"), scope="mirror",
                before=gate, op=Op(
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

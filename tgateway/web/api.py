"""The gateway's file API on ``gateway.port``: upload, download, torrent, metadata, webseed.

Routes are thin: they validate input, call the content store through its narrow interface and
render JSON; every error is an ApiError rendered by ``tgateway.web.errors``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

from klein import Klein
from twisted.logger import Logger

from tgateway.config import Config
from tgateway.errors import (
    ApiError,
    BadRequest,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)
from tgateway.links import Links
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.ingest import Ingest
from tgateway.storage.model import StoredEvent, UploadContext
from tgateway.storage.store import ContentStore

from .body import BodyStream, body_error
from .errors import install_error_handlers
from .multipart import MultipartReader
from .send import CORS_HEADERS, CORS_PREFLIGHT, client_ip, parse_hex, send_file, set_headers

MULTIPART_SLACK = 64 * 1024  # form fields and part headers around the file
MAX_FIELD = 16 * 1024
HEAD_BYTES = 4096


class Authenticator(Protocol):
    async def authenticate(self, request: Any) -> str | None:
        """The caller's hex pubkey, None for an anonymous caller; raise Unauthorized if the
        request carries credentials that do not verify."""


class AnonymousOnly:
    """Used while no sign-in method is configured: credentials are refused, not ignored."""

    async def authenticate(self, request: Any) -> str | None:
        if request.getHeader(b"authorization"):
            raise Unauthorized("this gateway has no sign-in configured", code="auth_unavailable")
        return None


def json_response(request: Any, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode("utf-8")


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"expected true or false, got {value!r}", code="invalid_field")


def _boundary(ctype: str) -> bytes:
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= 200:
                return value.encode("latin-1", "replace")
    raise BadRequest("multipart Content-Type without a boundary", code="invalid_multipart")


def _body_checks(request: Any, on_data: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """Wrap a streamed upload's data callback with the checks that need the body itself:

    - a signed-in uploader's remaining quota (``request.quota_room``, set by the upload route):
      a body without Content-Length is cut off as soon as it goes beyond, before it is stored;
    - a NIP-98 ``payload`` tag (the authenticator left the event as ``request.nip98_event``):
      the body is hashed as it arrives and checked by :func:`_check_nip98_payload`.
    """
    room: int | None = getattr(request, "quota_room", None)
    hasher = None
    if getattr(request, "nip98_event", None) is not None:
        import hashlib

        hasher = hashlib.sha256()
        request.nip98_body_hash = hasher
    if room is None and hasher is None:
        return on_data
    received = 0

    def feed(data: bytes) -> None:
        nonlocal received
        received += len(data)
        if room is not None and received > room:
            raise PayloadTooLarge("upload exceeds your storage quota", code="quota_exceeded")
        if hasher is not None:
            hasher.update(data)
        on_data(data)

    return feed


def _check_nip98_payload(request: Any) -> None:
    """Refuse the upload (before it is stored) when the body is not the one the NIP-98
    ``payload`` tag names."""
    event = getattr(request, "nip98_event", None)
    if event is not None:
        from tgateway.nostr.nip98 import check_payload

        try:
            check_payload(event, request.nip98_body_hash.hexdigest())
        except Unauthorized as e:
            raise Unauthorized(e.message, code="invalid_nip98") from None


class _FieldTarget:
    """A small form field kept in memory, capped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parts: list[bytes] = []
        self.size = 0
        self.seen = False

    def start(self) -> Callable[[memoryview], None]:
        if self.seen:
            raise BadRequest(f"form field {self.name!r} appears twice", code="invalid_multipart")
        self.seen = True
        return self.write

    def write(self, chunk: memoryview) -> None:
        self.size += len(chunk)
        if self.size > MAX_FIELD:
            raise BadRequest(f"form field {self.name!r} is too long", code="invalid_field")
        self.parts.append(bytes(chunk))

    @property
    def value(self) -> str | None:
        if not self.seen:
            return None
        try:
            return b"".join(self.parts).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"form field {self.name!r} is not UTF-8", code="invalid_field") from None


class _FileTarget:
    """The 'file' part of a multipart upload, fed straight into an Ingest (on the body's
    thread, see ``BodyStream.consume``)."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.started = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self.head = bytearray()

    def start(self, filename: str | None, content_type: str | None) -> Callable[[memoryview], None]:
        if self.started:
            raise BadRequest("only one 'file' part is accepted", code="invalid_multipart")
        self.started = True
        self.filename, self.content_type = filename, content_type
        return self.write

    def write(self, chunk: memoryview) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self.ingest.feed(chunk)


@dataclass
class ApiLimits:
    upload: KeyedLimiter[str]
    download: KeyedLimiter[str]


class GatewayApi:
    """Klein routes of the file API. One instance per process, built by ``tgateway.tap``."""

    app = Klein()
    log = Logger()

    def __init__(
        self,
        *,
        config: Config,
        store: ContentStore,
        links: Links,
        clock: Any,
        auth: Authenticator | None = None,
        quota: Callable[[str], int] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.links = links
        self.clock = clock
        self.auth: Authenticator = auth or AnonymousOnly()
        rl = config.rate_limiting
        self.limits = ApiLimits(
            upload=KeyedLimiter(rl.upload.requests_per_second, rl.upload.burst_size),
            download=KeyedLimiter(rl.download.requests_per_second, rl.download.burst_size),
        )
        self.max_upload = min(config.gateway.max_upload_size, rl.upload.max_file_size)
        self._quota = quota or (lambda owner: config.admin.default_user_storage_limit)
        self.extra_status: dict[str, Callable[[], Any]] = {}

    # helpers ---------------------------------------------------------------------

    def _limit(self, limiter: KeyedLimiter[str], request: Any, what: str) -> None:
        wait = limiter.take(client_ip(request), self.clock.seconds())
        if wait:
            raise TooManyRequests(f"too many {what} requests; retry later", retry_after=wait)

    async def _file(self, sha256: str) -> Any:
        sha = parse_hex(sha256, 64, "sha256")
        f = await self.store.get(sha)
        if f is None:
            raise NotFound(f"no file with sha256 {sha}", code="file_not_found")
        return f

    # upload ------------------------------------------------------------------------

    @app.route("/api/upload", methods=["POST", "PUT"])
    async def upload(self, request: Any) -> bytes:
        body: BodyStream | None = getattr(request, "body_stream", None)
        if body is None:
            raise ApiError("upload body is not streamed", status=500, code="internal")
        self._limit(self.limits.upload, request, "upload")
        owner = await self.auth.authenticate(request)
        if owner is None and not self.config.gateway.allow_anonymous_uploads:
            raise Unauthorized("sign in to upload", code="auth_required")

        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        multipart = ctype.lower().startswith("multipart/form-data")
        length = body.length
        slack = MULTIPART_SLACK if multipart else 0
        if length is not None and length > self.max_upload + slack:
            raise PayloadTooLarge(
                f"upload of {length} bytes is larger than the limit of {self.max_upload} bytes"
            )
        if length == 0:
            raise BadRequest("the upload is empty", code="empty_upload")
        if owner is not None:
            limit = self._quota(owner)
            _, used = await self.store.usage(owner)
            if length is not None and used + max(0, length - slack) > limit:
                raise PayloadTooLarge(
                    f"upload would exceed your storage quota ({used} of {limit} bytes used)",
                    code="quota_exceeded",
                )
            request.quota_room = max(0, limit - used) + slack  # checked as the body arrives
        if length is not None and length > self.store.free_space():
            raise InsufficientStorage("not enough disk space for this upload")

        # The checks above refuse early; the quota itself is enforced by the store's commit,
        # atomically with the owner's reference (also for bytes already stored by others).
        quota = self._quota(owner) if owner is not None else None
        if multipart:
            event = await self._upload_multipart(request, body, ctype, owner, quota)
        else:
            event = await self._upload_raw(request, body, ctype, owner, quota)
        out = self.links.describe(event.file)
        out["new"] = event.new
        if event.context.title:
            out["title"] = event.context.title
        if event.context.description:
            out["description"] = event.context.description
        return json_response(request, out, 201 if event.new else 200)

    async def _upload_raw(
        self, request: Any, body: BodyStream, ctype: str, owner: str | None, quota: int | None
    ) -> StoredEvent:
        name = request.getHeader(b"x-filename")
        arg = request.args.get(b"name", [None])[0]
        raw_name = name if name is not None else arg
        filename = unquote(raw_name.decode("utf-8", "replace")) if raw_name else None
        ctx = UploadContext(
            owner=owner,
            name=filename,
            title=self._arg(request, "title"),
            description=self._arg(request, "description"),
            announce_dht=_truthy(self._arg(request, "announce_dht"), True),
        )
        ingest = self.store.begin_upload(size_hint=body.length, max_size=self.max_upload)
        head = bytearray()

        def on_data(data: Any) -> None:  # on the body's thread
            if len(head) < HEAD_BYTES:
                head.extend(data[: HEAD_BYTES - len(head)])
            ingest.feed(data)

        try:
            await body.consume(_body_checks(request, on_data), threaded=True, into=ingest.reserve)
            _check_nip98_payload(request)
        except BaseException as e:
            await ingest.abort()
            raise body_error(e) from None
        return await self.store.commit(ingest, ctx, declared_type=ctype or None, head=bytes(head),
                                       quota=quota)

    def _arg(self, request: Any, name: str) -> str | None:
        header = request.getHeader(b"x-" + name.replace("_", "-").encode())
        if header is not None:
            return unquote(header.decode("utf-8", "replace"))
        value = request.args.get(name.encode(), [None])[0]
        return value.decode("utf-8", "replace") if value is not None else None

    async def _upload_multipart(
        self, request: Any, body: BodyStream, ctype: str, owner: str | None, quota: int | None
    ) -> StoredEvent:
        file_target = _FileTarget(self.store.begin_upload(size_hint=body.length, max_size=self.max_upload))
        fields = {n: _FieldTarget(n) for n in ("announce_dht", "title", "description", "name")}

        def on_part(name: str, filename: str | None, content_type: str | None) -> Any:
            if name == "file":
                return file_target.start(filename, content_type)
            field = fields.get(name)
            return field.start() if field is not None else None  # other fields are ignored

        try:
            reader = MultipartReader(_boundary(ctype), on_part)

            def into() -> memoryview | None:  # the file's bytes are received into its chunks
                return file_target.ingest.reserve() if reader.feeding(file_target.write) else None

            await body.consume(_body_checks(request, reader.feed), threaded=True, into=into)
            _check_nip98_payload(request)
            if not file_target.started:
                raise BadRequest("the form has no 'file' part", code="missing_file")
            reader.close()
            ctx = UploadContext(
                owner=owner,
                name=fields["name"].value or file_target.filename,
                title=fields["title"].value,
                description=fields["description"].value,
                announce_dht=_truthy(fields["announce_dht"].value, True),
            )
        except BaseException as e:
            await file_target.ingest.abort()
            raise body_error(e) from None
        return await self.store.commit(
            file_target.ingest,
            ctx,
            declared_type=file_target.content_type,
            head=bytes(file_target.head),
            quota=quota,
        )

    # download -------------------------------------------------------------------------

    @app.route("/api/download/<sha256>", methods=["GET", "HEAD"])
    async def download(self, request: Any, sha256: str) -> None:
        self._limit(self.limits.download, request, "download")
        f = await self._file(sha256)
        await send_file(request, self.store.reader, f, disposition="attachment")

    @app.route("/api/webseed/<info_hash>", methods=["GET", "HEAD"])
    @app.route("/api/webseed/<info_hash>/", methods=["GET", "HEAD"])
    async def webseed_bare(self, request: Any, info_hash: str) -> None:
        # The url-list entry itself: WebTorrent fetches a single-file torrent's webseed URL as
        # it is, without appending the name (BEP 19 says to).
        await self.webseed(request, info_hash, "")

    @app.route("/api/webseed/<info_hash>/<path:name>", methods=["GET", "HEAD"])
    async def webseed(self, request: Any, info_hash: str, name: str) -> None:
        self._limit(self.limits.download, request, "download")
        ih = parse_hex(info_hash, 40, "info_hash")
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
        set_headers(request, CORS_PREFLIGHT)
        request.setResponseCode(204)
        return b""

    # torrent and metadata -----------------------------------------------------------

    @app.route("/api/torrent/<sha256>", methods=["GET", "HEAD"])
    async def torrent(self, request: Any, sha256: str) -> bytes:
        f = await self._file(sha256)
        # ?webseed=0: no url-list (a torrent only the gateway's BitTorrent peer can complete).
        webseed = request.args.get(b"webseed", [b"1"])[0] not in (b"0", b"false", b"no")
        data = self.links.torrent_bytes(f, webseed=webseed)
        set_headers(request, CORS_HEADERS)
        request.setHeader(b"content-type", b"application/x-bittorrent")
        from .send import content_disposition

        request.setHeader(b"content-disposition", content_disposition("attachment", f.name + ".torrent"))
        return data

    @app.route("/api/files/<sha256>", methods=["GET"])
    async def metadata(self, request: Any, sha256: str) -> bytes:
        f = await self._file(sha256)
        set_headers(request, CORS_HEADERS)
        return json_response(request, self.links.describe(f))

    # health ---------------------------------------------------------------------------

    @app.route("/api/health", methods=["GET"])
    async def health(self, request: Any) -> bytes:
        stats = await self.store.stats()
        out: dict[str, Any] = {
            "status": "ok",
            "time": int(time.time()),
            "storage": {**stats, "free_bytes": self.store.free_space(),
                        "cache": self.store.reader.cache.stats()},
        }
        for name, fn in self.extra_status.items():
            try:
                out[name] = fn()
            except Exception:
                self.log.failure("status of {name} failed", name=name)
                out[name] = {"status": "error"}
        return json_response(request, out)


install_error_handlers(GatewayApi.app)

"""The Blossom HTTP adapter (Klein) on ``blossom_server.port``.

Endpoints (all at the root, BUD-01):

- ``GET``/``HEAD /<sha256>[.ext]`` (BUD-01): any stored file, blob or chunked, through the
  shared :func:`~tgateway.web.send.send_file` (single ranges, ETag, CORS, backpressure);
- ``PUT /upload`` (BUD-02): the body is streamed into the content store as it arrives and is
  never modified; ``X-SHA-256`` is checked against the bytes before the file becomes visible;
  201 for a new blob, 200 when it was already stored; ``HEAD /upload`` (BUD-06) answers the
  same checks from ``X-SHA-256``/``X-Content-Length``/``X-Content-Type`` without a body;
- ``GET /list/<pubkey>`` (``since``, ``until``, ``cursor``, ``limit``), ``DELETE /<sha256>``
  (drops the caller's ownership; the bytes go with the last owner);
- ``PUT /mirror`` (BUD-04), ``PUT /report`` (BUD-09, stored for the admin, bounded: see
  :meth:`BlossomServer.report`);
- ``OPTIONS`` anywhere: the CORS preflight.

Every response carries ``Access-Control-Allow-Origin: *``; every error is the JSON
``{"error", "message"}`` with the message repeated in ``X-Reason``. Authorization tokens are
checked by :func:`tgateway.blossom.auth.check_token`; which verbs need one is
``blossom_server.require_auth`` (``delete`` always does: it acts on the caller's ownership).
A token's ``server`` tags must name this server: the host of ``blossom_server.public_url``, or
of the listening address when it is empty; the request's ``Host`` header is never trusted for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound

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
    TooManyRequests,
)
from tgateway.links import Links
from tgateway.nostr.event import EventError, parse_event
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.api import ContentStore, Received, Upload
from tgateway.storage.blossom_reports import BlossomStore, ReportLimits, ReportRefused
from tgateway.storage.model import StoredEvent, UploadContext
from tgateway.web.body import BodyStream, body_error
from tgateway.web.errors import write_error
from tgateway.web.send import CORS_HEADERS, CORS_PREFLIGHT, client_ip, send_file, set_headers

from .auth import AuthError, BlossomAuth, check_token, require_hash_match, server_domain
from .descriptor import descriptor
from .mirror import MirrorError, fetch_into, guarded_agent, parse_mirror_url

HEAD_BYTES = 4096
LIST_MAX = 1000
#: BUD-09 reports need no sign-in: the largest report event (JSON), its content, its x tags
MAX_REPORT_BYTES = 16 * 1024
MAX_REPORT_CONTENT = 4096
MAX_REPORT_BLOBS = 16
_BLOB_PATH = re.compile(r"^([0-9a-fA-F]{64})(\.[A-Za-z0-9._-]{1,32})?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

BLOSSOM_PREFLIGHT = {
    **CORS_PREFLIGHT,
    b"access-control-allow-headers": b"Authorization, *, " + CORS_PREFLIGHT[
        b"access-control-allow-headers"],
    b"access-control-allow-methods": b"GET, HEAD, PUT, DELETE, OPTIONS",
}


def _header_value(text: str) -> bytes:
    """A message made safe for an HTTP header (Latin-1, no line breaks, bounded)."""
    clean = " ".join(text.split())[:300]
    return clean.encode("latin-1", "replace")


def _json(request: Any, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode("utf-8")


def _parse_sha(value: str, what: str = "sha256") -> str:
    v = value.lower()
    if not _HEX64.match(v):
        raise BadRequest(f"{what} must be 64 hexadecimal characters", code="invalid_hash")
    return v


def _int_arg(request: Any, name: str, lo: int, hi: int) -> int | None:
    raw = request.args.get(name.encode(), [None])[0]
    if raw is None or raw == b"":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", code="invalid_field") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}", code="invalid_field")
    return value


class _HeadTap:
    """Feeds an Ingest, keeps the first bytes (for MIME sniffing) and, for a signed-in
    uploader, cuts the body off as soon as it goes beyond the quota room (a body without
    Content-Length is never stored past the quota). ``on_thread``: ``write`` is called on the
    request body's own thread (``BodyStream.consume(threaded=True)``), not the reactor's."""

    def __init__(self, ingest: Upload, room: int | None = None, on_thread: bool = False) -> None:
        self.ingest = ingest
        self.head = bytearray()
        self.room = room
        self.received = 0
        self._put = ingest.feed if on_thread else ingest.write

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.room is not None and self.received > self.room:
            raise PayloadTooLarge("upload exceeds your storage quota", code="quota_exceeded")
        if len(self.head) < HEAD_BYTES:
            self.head.extend(data[: HEAD_BYTES - len(self.head)])
        self._put(data)

    def set_flow_control(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self.ingest.set_flow_control(pause, resume)


class BlossomServer:
    """Klein routes of the Blossom server. One instance per process, built by ``tgateway.tap``."""

    app = Klein()
    log = Logger()

    def __init__(
        self,
        *,
        config: Config,
        store: ContentStore,
        blossom_store: BlossomStore,
        links: Links,
        clock: Any,
        http_agent: Any = None,
        quota: Callable[[str], int] | None = None,
        report_limits: ReportLimits | None = None,
        reports_per_minute: float = 1.0,
        report_burst: int = 10,
    ) -> None:
        bc = config.blossom_server
        self.config = config
        self.store = store
        self.bstore = blossom_store
        self.links = links
        self.clock = clock
        self.base_url = bc.base_url()
        self.max_blob = int(bc.max_blob_size)
        self.require = frozenset(bc.require_auth)
        rate = bc.rate_limit
        self.limiter: KeyedLimiter[str] | None = (
            KeyedLimiter(rate.requests_per_minute / 60.0, rate.burst_size)
            if rate.requests_per_minute > 0 else None
        )
        # ``server`` tags are checked against this name only: the host of
        # ``blossom_server.public_url``, else of the listening address (``base_url``). Never the
        # request's Host header, which the client chooses.
        self._domain = server_domain(self.base_url)
        self._quota = quota or (lambda owner: int(config.admin.default_user_storage_limit))
        self.report_limits = report_limits or ReportLimits(max_open=bc.max_open_reports)
        self.report_limiter: KeyedLimiter[str] = KeyedLimiter(reports_per_minute / 60.0,
                                                              report_burst)
        self.http = http_agent or guarded_agent(clock, allow_private=bc.mirror_allow_private)

    # helpers ---------------------------------------------------------------------

    def _gate(self, request: Any) -> None:
        """CORS on every response, then the per-IP rate limit."""
        set_headers(request, CORS_HEADERS)
        if self.limiter is not None:
            wait = self.limiter.take(client_ip(request), self.clock.seconds())
            if wait:
                raise TooManyRequests("too many requests; retry later", retry_after=wait)

    def domains(self) -> set[str]:
        """The names this server answers to, for ``server`` tags (whatever the request says)."""
        return {self._domain}

    def _auth(
        self, request: Any, verb: str, *, required: bool, require_hash: bool | None = None
    ) -> BlossomAuth | None:
        header = request.getHeader(b"authorization")
        if header is None:
            if required:
                raise AuthError(f"authorization required to {verb}", code="auth_required")
            return None
        return check_token(
            header, verb=verb, now=self.clock.seconds(), domains=self.domains(),
            require_hash=require_hash,
        )

    def _x_sha256(self, request: Any) -> str | None:
        raw = request.getHeader(b"x-sha-256")
        if raw is None:
            return None
        return _parse_sha(raw.decode("latin-1").strip(), "X-SHA-256")

    async def _check_quota(self, owner: str | None, size: int | None) -> int | None:
        """Refuse when ``size`` more bytes would exceed ``owner``'s quota; return the room left
        (None for an anonymous upload)."""
        if owner is None:
            return None
        limit = self._quota(owner)
        _, used = await self.store.usage(owner)
        if used + (size or 0) > limit:
            raise PayloadTooLarge(
                f"upload would exceed your storage quota ({used} of {limit} bytes used)",
                code="quota_exceeded",
            )
        return max(0, limit - used)

    def _check_size(self, size: int | None) -> None:
        if size is None:
            return
        if size > self.max_blob:
            raise PayloadTooLarge(
                f"blob of {size} bytes is larger than the limit of {self.max_blob} bytes"
            )
        if size == 0:
            raise BadRequest("the blob is empty", code="empty_upload")
        if size > self.store.free_space():
            raise InsufficientStorage("not enough disk space for this blob")

    def _result_check(
        self, expected: str | None, auth: BlossomAuth | None, mismatch: type[ApiError]
    ) -> Callable[[Received], None]:
        def check(result: Received) -> None:
            if expected is not None and result.sha256 != expected:
                raise Conflict(
                    f"the body's sha256 is {result.sha256}, X-SHA-256 said {expected}",
                    code="hash_mismatch",
                )
            if auth is not None and not auth.allows(result.sha256):
                raise mismatch(
                    f"authorization event has no x tag for {result.sha256}", code="wrong_hash"
                )

        return check

    def _quota_of(self, owner: str | None) -> int | None:
        """The quota the store's commit enforces (atomically with the owner's reference)."""
        return self._quota(owner) if owner is not None else None

    async def _after_store(
        self, request: Any, event: StoredEvent, owner: str | None
    ) -> bytes:
        uploaded = await self.bstore.uploaded_at(event.file.sha256, owner or "")
        body = descriptor(
            event.file, base_url=self.base_url, links=self.links,
            uploaded=uploaded if uploaded is not None else self.clock.seconds(),
        )
        return _json(request, body, 201 if event.new else 200)

    # preflight and root ------------------------------------------------------------

    @app.route("/", methods=["OPTIONS"])
    @app.route("/<path:rest>", methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        set_headers(request, BLOSSOM_PREFLIGHT)
        request.setResponseCode(204)
        return b""

    @app.route("/", methods=["GET", "HEAD"])
    def root(self, request: Any) -> bytes:
        self._gate(request)
        return _json(request, {"server": "tgateway", "protocol": "blossom",
                               "buds": [1, 2, 4, 6, 8, 9, 11]})

    # BUD-01 ------------------------------------------------------------------------

    @app.route("/<name>", methods=["GET", "HEAD"])
    async def get_blob(self, request: Any, name: str) -> None:
        self._gate(request)
        m = _BLOB_PATH.match(name)
        if not m:
            raise NotFound("not a blob address (/<sha256>[.ext])", code="not_found")
        sha = m.group(1).lower()
        if "get" in self.require:
            auth = self._auth(request, "get", required=True)
            assert auth is not None
            if auth.hashes and not auth.allows(sha):
                require_hash_match(auth, sha)
        f = await self.store.get(sha)
        if f is None:
            raise NotFound(f"blob {sha} not found", code="blob_not_found")
        await send_file(request, self.store.reader, f)

    # BUD-02 ------------------------------------------------------------------------

    @app.route("/upload", methods=["PUT"])
    async def upload(self, request: Any) -> bytes:
        self._gate(request)
        body: BodyStream | None = getattr(request, "body_stream", None)
        if body is None:
            raise ApiError("upload body is not streamed", status=500, code="internal")
        expected = self._x_sha256(request)
        auth = self._auth(request, "upload", required="upload" in self.require)
        if auth is not None and expected is not None:
            require_hash_match(auth, expected)
        owner = auth.pubkey if auth is not None else None
        self._check_size(body.length)
        room = await self._check_quota(owner, body.length)
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1") or None
        ctx = UploadContext(owner=owner, name=self._filename(request), source="blossom")
        ingest = self.store.begin_upload(size_hint=body.length, max_size=self.max_blob)
        tap = _HeadTap(ingest, room, on_thread=True)
        try:
            await body.consume(tap.write, threaded=True, into=ingest.reserve)
        except BaseException as e:
            await ingest.abort()
            raise body_error(e) from None
        event = await self.store.commit(
            ingest, ctx, declared_type=ctype, head=bytes(tap.head),
            check=self._result_check(expected, auth, AuthError), quota=self._quota_of(owner),
        )
        return await self._after_store(request, event, owner)

    @staticmethod
    def _filename(request: Any) -> str | None:
        raw = request.getHeader(b"x-filename")
        return unquote(raw.decode("utf-8", "replace")) if raw else None

    @app.route("/upload", methods=["HEAD"])
    async def upload_check(self, request: Any) -> bytes:
        """BUD-06: would this upload be accepted? Answers from headers alone."""
        self._gate(request)
        expected = self._x_sha256(request)
        raw_len = request.getHeader(b"x-content-length")
        if raw_len is None:
            raise LengthRequired("X-Content-Length header is missing")
        try:
            size = int(raw_len)
            if size < 0:
                raise ValueError
        except ValueError:
            raise BadRequest("X-Content-Length must be a byte count", code="invalid_field") from None
        auth = self._auth(request, "upload", required="upload" in self.require)
        if auth is not None and expected is not None:
            require_hash_match(auth, expected)
        self._check_size(size)
        await self._check_quota(auth.pubkey if auth is not None else None, size)
        request.setResponseCode(200)
        return b""

    @app.route("/list/<pubkey>", methods=["GET", "HEAD"])
    async def list_blobs(self, request: Any, pubkey: str) -> bytes:
        self._gate(request)
        owner = _parse_sha(pubkey, "pubkey")
        if "list" in self.require:
            auth = self._auth(request, "list", required=True)
            assert auth is not None
            if auth.pubkey != owner:
                raise Forbidden("you can only list your own blobs", code="forbidden")
        since = _int_arg(request, "since", 0, 2**53)
        until = _int_arg(request, "until", 0, 2**53)
        limit = _int_arg(request, "limit", 1, LIST_MAX) or LIST_MAX
        raw_cursor = request.args.get(b"cursor", [None])[0]
        cursor = _parse_sha(raw_cursor.decode("latin-1"), "cursor") if raw_cursor else None
        rows = await self.bstore.list_blobs(
            owner, since=since, until=until, cursor=cursor, limit=limit
        )
        out = [
            descriptor(r.file, base_url=self.base_url, links=self.links, uploaded=r.uploaded)
            for r in rows
        ]
        return _json(request, out)

    @app.route("/<name>", methods=["DELETE"])
    async def delete_blob(self, request: Any, name: str) -> bytes:
        self._gate(request)
        m = _BLOB_PATH.match(name)
        if not m:
            raise NotFound("not a blob address (/<sha256>[.ext])", code="not_found")
        sha = m.group(1).lower()
        auth = self._auth(request, "delete", required=True)
        assert auth is not None
        require_hash_match(auth, sha)
        try:
            gone = await self.store.remove_owner(sha, auth.pubkey)
        except KeyError:
            raise NotFound(f"you have no blob {sha}", code="blob_not_found") from None
        return _json(request, {"sha256": sha, "deleted": True, "bytes_removed": gone is not None})

    # BUD-04 ------------------------------------------------------------------------

    @app.route("/mirror", methods=["PUT"])
    async def mirror(self, request: Any) -> bytes:
        self._gate(request)
        try:
            data = json.loads(request.content.read() or b"null")
        except ValueError:
            raise BadRequest("mirror body must be JSON", code="invalid_json") from None
        url = parse_mirror_url(data.get("url") if isinstance(data, dict) else None)
        expected = self._x_sha256(request)
        required = "upload" in self.require or "mirror" in self.require
        auth = self._auth(request, "upload", required=required)
        if auth is not None and expected is not None:
            require_hash_match(auth, expected)
        owner = auth.pubkey if auth is not None else None
        raw_len = request.getHeader(b"x-content-length")
        if raw_len is not None and raw_len.strip().isdigit():
            self._check_size(int(raw_len))
            await self._check_quota(owner, int(raw_len))

        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or None
        taps: list[_HeadTap] = []
        ctypes: list[str | None] = []

        def begin(length: int | None, ctype: str | None) -> _HeadTap:
            self._check_size(length)
            ingest = self.store.begin_upload(size_hint=length, max_size=self.max_blob)
            taps.append(_HeadTap(ingest, room))
            ctypes.append(ctype)
            return taps[0]

        room = await self._check_quota(owner, 1)  # refuse at once when the quota is used up
        try:
            await fetch_into(self.http, url, max_size=self.max_blob, begin=begin,
                             clock=self.clock)
        except BaseException as e:
            if taps:
                await taps[0].ingest.abort()
            if isinstance(e, ApiError):
                raise
            if isinstance(e, CancelledError):
                raise MirrorError("the mirror download timed out") from None
            raise MirrorError(f"mirror failed: {type(e).__name__}") from None
        ctx = UploadContext(owner=owner, name=name, source="mirror")
        event = await self.store.commit(
            taps[0].ingest, ctx, declared_type=ctypes[0], head=bytes(taps[0].head),
            check=self._result_check(expected, auth, Conflict), quota=self._quota_of(owner),
        )
        return await self._after_store(request, event, owner)

    # BUD-09 ------------------------------------------------------------------------

    @app.route("/report", methods=["PUT"])
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
        try:
            obj = json.loads(raw or b"null")
        except ValueError:
            raise BadRequest("report body must be a JSON event", code="invalid_json") from None
        try:
            event = parse_event(obj)
        except EventError as e:
            raise BadRequest(f"report event {e.message}", code="invalid_event") from None
        if event.kind != 1984:
            raise BadRequest("a report must be a kind 1984 event", code="invalid_event")
        if len(event.content.encode("utf-8")) > MAX_REPORT_CONTENT:
            raise PayloadTooLarge(f"a report's content is at most {MAX_REPORT_CONTENT} bytes",
                                  code="report_too_large")
        blobs: dict[str, str] = {}
        for tag in event.tags:
            if len(tag) >= 2 and tag[0] == "x":
                sha = _parse_sha(tag[1], "x tag")
                blobs.setdefault(sha, tag[2][:64] if len(tag) > 2 else "")
        if not blobs:
            raise BadRequest("a report needs at least one x tag", code="invalid_event")
        if len(blobs) > MAX_REPORT_BLOBS:
            raise BadRequest(f"a report names at most {MAX_REPORT_BLOBS} blobs",
                             code="invalid_event")
        wait = self.report_limiter.take(client_ip(request), self.clock.seconds())
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
        return _json(request, {"id": event.id, "received": True}, 200)

    # fallbacks ---------------------------------------------------------------------

    @app.route("/<path:rest>", methods=["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"])
    def not_found(self, request: Any, rest: str) -> bytes:
        self._gate(request)
        raise NotFound("no such Blossom endpoint", code="not_found")

    # errors: JSON body, X-Reason, CORS ------------------------------------------------

    @app.handle_errors(ApiError)
    def _api_error(self, request: Any, failure: Failure) -> bytes:
        return _write_blossom_error(request, failure.value)  # type: ignore[arg-type]

    @app.handle_errors(RouteNotFound)
    def _route_not_found(self, request: Any, failure: Failure) -> bytes:
        return _write_blossom_error(request, NotFound("no such Blossom endpoint"))

    @app.handle_errors(MethodNotAllowed)
    def _not_allowed(self, request: Any, failure: Failure) -> bytes:
        allowed = getattr(failure.value, "valid_methods", None) or []
        err = ApiError("method not allowed", status=405, code="method_not_allowed",
                       headers={"Allow": ", ".join(allowed)} if allowed else None)
        return _write_blossom_error(request, err)

    @app.handle_errors(HTTPException)
    def _http_exception(self, request: Any, failure: Failure) -> bytes:
        exc: Any = failure.value
        return _write_blossom_error(request, ApiError(
            exc.description or exc.name, status=exc.code or 400,
            code=(exc.name or "error").lower().replace(" ", "_")))

    @app.handle_errors(Exception)
    def _unexpected(self, request: Any, failure: Failure) -> bytes | None:
        if failure.check(CancelledError):  # type: ignore[no-untyped-call]
            return None  # the client went away
        self.log.failure("unhandled error on {method} {uri}", failure,
                         method=request.method, uri=request.uri)
        return _write_blossom_error(request, ApiError("internal server error", status=500,
                                                      code="internal"))


def _report_error(refused: ReportRefused) -> ApiError:
    if refused.reason == "unknown_blob":
        return NotFound(refused.message, code="blob_not_found")
    if refused.reason == "full":
        return InsufficientStorage(refused.message, code="reports_full")
    # the open reports of this key or blob: more are taken once the operator handled some
    return ApiError(refused.message, status=429, code="too_many_reports")


def _write_blossom_error(request: Any, error: ApiError) -> bytes:
    set_headers(request, CORS_HEADERS)
    request.setHeader(b"x-reason", _header_value(error.message))
    return write_error(request, error)



__all__ = ["BLOSSOM_PREFLIGHT", "BlossomServer"]

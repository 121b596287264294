"""The Blossom HTTP adapter (Klein) on ``blossom_server.port``.

Endpoints (all at the root, BUD-01), by the module that declares them on the port's one Klein app
(:data:`tgateway.blossom.routing.APP`); :class:`BlossomServer` serves them all:

- :mod:`~tgateway.blossom.blobs`: ``GET``/``HEAD /<sha256>[.ext]`` (BUD-01): any stored file, blob
  or chunked, through the shared :func:`~tgateway.http.send.send_file` (single ranges, ETag, CORS,
  backpressure), with a ``Sunset`` date when retention will remove it
  (:func:`~tgateway.blossom.blobs.sunset`); ``GET /list/<pubkey>`` (BUD-12: ``cursor``,
  ``limit``; ``since``, ``until``); ``DELETE /<sha256>`` (drops the caller's ownership; the bytes
  go with the last owner);
- :mod:`~tgateway.blossom.intake`, every way in, through the one upload handler
  (:mod:`tgateway.uploads`): ``PUT /upload`` (BUD-02: the body is streamed into the content store
  as it arrives and is never modified; ``X-SHA-256`` and the token's ``x`` tags are checked
  against the bytes before the file becomes visible; 201 for a new blob, 200 when it was already
  stored); ``HEAD /upload`` (BUD-06: the same checks from ``X-SHA-256`` (required: 400 without),
  ``X-Content-Length`` (411 without) and ``X-Content-Type`` without a body); ``PUT /media``,
  ``HEAD /media`` (BUD-05: the upload is optimised with FFmpeg (:mod:`tgateway.blossom.media`)
  and the optimised file is stored as a new blob; the token (``t`` = ``media``) and
  ``X-SHA-256`` name the original); ``PUT /mirror`` (BUD-04: an upload whose bytes come from a
  URL; a URL of this server is read from the store);
- here: ``GET /`` (what this server implements), ``PUT /report`` (BUD-09, stored for the admin,
  bounded: see :meth:`BlossomServer.report`), ``OPTIONS`` anywhere (the CORS preflight) and the
  404 of any other path.

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

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.blocklist import Bans
from tgateway.config import Config
from tgateway.errors import (
    ApiError,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
)
from tgateway.http.auth import Need
from tgateway.http.headers import CORS_PREFLIGHT, answer_preflight, client_ip
from tgateway.http.jsonio import json_response
from tgateway.http.openapi import JSON, Body, Op, Reply, hidden, route
from tgateway.links import Links
from tgateway.proxies import ProxyPolicy
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.api import ContentStore
from tgateway.storage.blossom_reports import BlossomStore, ReportLimits, ReportRefused
from tgateway.uploads import Limits, Uploads

from .auth import BlossomAuthenticator, server_domain
from .blobs import BlobRoutes
from .intake import IntakeRoutes
from .media import MediaOptimizer
from .mirror import guarded_agent
from .report import MAX_REPORT_BYTES, parse_report
from .routing import APP, gate, gate_read

BLOSSOM_PREFLIGHT = {
    **CORS_PREFLIGHT,
    b"access-control-allow-headers": b"Authorization, *, " + CORS_PREFLIGHT[
        b"access-control-allow-headers"],
    b"access-control-allow-methods": b"GET, HEAD, PUT, DELETE, OPTIONS",
}
#: the BUDs this server implements (``GET /``)
BUDS = [1, 2, 4, 5, 6, 8, 9, 10, 11, 12]


class BlossomServer(BlobRoutes, IntakeRoutes):
    """Klein routes of the Blossom server. One instance per process, built by ``tgateway.tap``."""

    app = APP
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

    def need(self, scope: str) -> Need:
        """What a route needs by ``blossom_server.require_auth``: ``get`` and ``list`` do not look
        at credentials unless required; an upload (and a mirror, when ``upload`` or ``mirror``
        is listed) takes an optional token otherwise."""
        required = scope in self.require or (scope in ("mirror", "media")
                                             and "upload" in self.require)
        if required:
            return Need.USER
        return Need.NONE if scope in ("get", "list") else Need.OPTIONAL

    # preflight and root ------------------------------------------------------------

    @APP.route("/", methods=["OPTIONS"])
    @APP.route("/<path:rest>", methods=["OPTIONS"])
    def preflight(self, request: Any, **kw: Any) -> bytes:
        return answer_preflight(request, BLOSSOM_PREFLIGHT)

    @route(APP, "/", methods=["GET", "HEAD"], op=Op(
        "What this Blossom server implements", tags=("blossom",), limited=True,
        replies={200: Reply("the BUDs and whether /media runs", json={
            "type": "object", "required": ["server", "protocol", "buds", "media"],
            "properties": {"server": {"type": "string"}, "protocol": {"const": "blossom"},
                           "buds": {"type": "array", "items": {"type": "integer"}},
                           "media": {"type": "boolean"}}})}))
    def root(self, request: Any) -> bytes:
        gate_read(self, request)
        return json_response(request, {"server": "tgateway", "protocol": "blossom",
                                       "buds": BUDS, "media": self.media is not None})

    # BUD-09 ------------------------------------------------------------------------

    @route(APP, "/report", methods=["PUT"], op=Op(
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
        gate(self, request)
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

    @route(APP, "/<path:rest>", methods=["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"],
           op=hidden("404 for paths that are no Blossom endpoint"))
    def not_found(self, request: Any, rest: str) -> bytes:
        gate_read(self, request)
        raise NotFound("no such Blossom endpoint", code="not_found")


def _report_error(refused: ReportRefused) -> ApiError:
    if refused.reason == "unknown_blob":
        return NotFound(refused.message, code="blob_not_found")
    if refused.reason == "full":
        return InsufficientStorage(refused.message, code="reports_full")
    # the open reports of this key or blob: more are taken once the operator handled some
    return ApiError(refused.message, status=429, code="too_many_reports")


__all__ = ["BLOSSOM_PREFLIGHT", "BlossomServer"]

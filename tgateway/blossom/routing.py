"""What the Blossom routes share besides their handlers: the port's one Klein app
(:data:`APP`: :mod:`~tgateway.blossom.blobs`, :mod:`~tgateway.blossom.intake` and
:mod:`~tgateway.blossom.server` declare their routes on it; :class:`~tgateway.blossom.server.BlossomServer`
serves them all), the gates every route passes (CORS and the per-address rate limits) and what a
route needs by ``blossom_server.require_auth``, the OpenAPI schemas of a blob descriptor and of
the upload headers (BUD-02, BUD-06), and small request helpers (the ``X-Reason`` error headers
of BUD-01, integer query arguments)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from tgateway.errors import ApiError, TooManyRequests
from tgateway.http.app import new_app
from tgateway.http.auth import Need
from tgateway.http.headers import CORS_HEADERS, client_ip, set_headers
from tgateway.http.openapi import BLOSSOM_SCHEMES, Link, Param, Reply, Schema
from tgateway.proxies import ProxyPolicy
from tgateway.ratelimit import KeyedLimiter

HEX64: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
BYTES: Schema = {"type": "string", "format": "binary"}
#: a blob descriptor (BUD-02, :func:`~tgateway.blossom.descriptor.descriptor`)
BLOB: Schema = {
    "type": "object",
    "required": ["url", "sha256", "size", "type", "uploaded", "nip94"],
    "properties": {
        "url": {"type": "string"}, "sha256": HEX64, "size": {"type": "integer", "minimum": 0},
        "type": {"type": "string"}, "uploaded": {"type": "integer"},
        "infohash": {"type": "string"}, "magnet": {"type": "string"},
        "torrent": {"type": "string"}, "blossom_uri": {"type": ["string", "null"]},
        "onion_url": {"type": "string"},
        "nip94": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
    },
}
BLOB_LINKS = {
    "get": Link("get_blob", {"sha": "$response.body#/sha256"}),
    "delete": Link("delete_blob", {"sha": "$response.body#/sha256"}),
}
STORED = {201: Reply("stored: a new blob", json=BLOB, links=BLOB_LINKS),
           200: Reply("the blob was stored already", json=BLOB, links=BLOB_LINKS)}
X_SHA256 = Param("X-SHA-256", "header", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                  description="the blob's SHA-256")
X_FILENAME = Param("X-Filename", "header", description="a name for the blob (percent-encoded)")
CHECK = [Param("X-SHA-256", "header", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                required=True, description="the blob's SHA-256"),
          Param("X-Content-Length", "header", {"type": "string", "pattern": "^[0-9]{1,15}$"},
                required=True, description="its size"),
          Param("X-Content-Type", "header", description="its type")]
CHECK_ERRORS = {400: "X-SHA-256 missing or malformed, X-Content-Length not a byte count",
                 411: "X-Content-Length is missing",
                 413: "larger than the blob limit or the caller's quota",
                 507: "not enough disk space"}
UPLOAD_ERRORS = {400: "an empty body", 409: "the bytes do not hash to X-SHA-256",
                  413: "larger than the blob limit or the caller's quota",
                  507: "not enough disk space"}


def header_value(text: str) -> bytes:
    """A message made safe for an HTTP header (Latin-1, no line breaks, bounded)."""
    clean = " ".join(text.split())[:300]
    return clean.encode("latin-1", "replace")


def error_headers(request: Any, error: ApiError) -> None:
    """Every Blossom error: CORS, and the message in ``X-Reason`` (BUD-01)."""
    set_headers(request, CORS_HEADERS)
    request.setHeader(b"x-reason", header_value(error.message))


#: the Klein app of the Blossom port: every Blossom route is declared on it
APP = new_app(decorate=error_headers, not_found="no such Blossom endpoint",
              schemes=BLOSSOM_SCHEMES)


class Gated(Protocol):
    """What the gates and :func:`policy` read of the server
    (:class:`~tgateway.blossom.server.BlossomServer`)."""

    clock: IReactorTime
    proxies: ProxyPolicy
    limiter: KeyedLimiter[str] | None  # what costs the server
    read_limiter: KeyedLimiter[str] | None  # reads: the download class

    def need(self, scope: str) -> Need: ...


def gate(server: Gated, request: Any) -> None:
    """CORS on every response, then the per-address limit of costly requests."""
    _limit(server, request, server.limiter)


def gate_read(server: Gated, request: Any) -> None:
    """CORS on every response, then the per-address limit of reads (the download class)."""
    _limit(server, request, server.read_limiter)


def _limit(server: Gated, request: Any, limiter: KeyedLimiter[str] | None) -> None:
    set_headers(request, CORS_HEADERS)
    if limiter is not None:
        wait = limiter.take(client_ip(request, server.proxies), server.clock.seconds())
        if wait:
            raise TooManyRequests("too many requests; retry later", retry_after=wait)


def policy(scope: str) -> Callable[[Gated], Need]:
    """The route's need, from ``blossom_server.require_auth`` (see
    :meth:`~tgateway.blossom.server.BlossomServer.need`)."""
    return lambda server: server.need(scope)

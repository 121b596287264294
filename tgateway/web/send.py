"""Sending stored files over HTTP: ranges, validators, CORS, producers with backpressure, and
the headers that keep user content from running as the gateway's page.

Used by the gateway's download, webseed and stream routes and by Blossom's GET.

User content shares the gateway's origin (the sign-in routes, the session token the web page
keeps). Every stored-file response therefore says ``X-Content-Type-Options: nosniff`` (the
browser takes the type as given and never guesses HTML), and only passive types are shown
inline: images other than SVG, audio, video and ``text/plain``. Anything else (HTML, XHTML, SVG,
XML, JavaScript, PDF, unknown types) is an *active* type: it goes out as
``Content-Disposition: attachment`` with a ``Content-Security-Policy`` that sandboxes it (opaque
origin, no scripts, nothing loaded), so even a browser that renders it runs nothing as the
gateway. ``<img>``, ``<video>`` and ``fetch`` of such a file from other pages work as before: those
headers only govern documents.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import CancelledError

from tgateway.errors import BadRequest
from tgateway.storage.api import BlockReader
from tgateway.storage.model import StoredFile

from .ranges import parse_range

CORS_HEADERS = {
    b"access-control-allow-origin": b"*",
    b"access-control-expose-headers": (
        b"Content-Range, Content-Length, Accept-Ranges, ETag, Content-Disposition, X-Reason"
    ),
}
CORS_PREFLIGHT = {
    **CORS_HEADERS,
    b"access-control-allow-methods": b"GET, HEAD, PUT, POST, DELETE, OPTIONS",
    b"access-control-allow-headers": (
        b"Range, Authorization, Content-Type, X-Filename, X-SHA-256, X-Content-Length, "
        b"X-Content-Type, If-None-Match, If-Range"
    ),
    b"access-control-max-age": b"86400",
}

_HEX = set("0123456789abcdef")

NOSNIFF = (b"x-content-type-options", b"nosniff")
ACTIVE_CONTENT_CSP = b"sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def is_passive_type(content_type: str) -> bool:
    """True when a browser shows this type without running anything: images other than SVG,
    audio, video, plain text. Everything else counts as active (see the module docstring)."""
    essence = content_type.split(";", 1)[0].strip().lower()
    major, _, minor = essence.partition("/")
    if essence == "text/plain":
        return True
    if major in ("image", "video", "audio") and minor:
        return "xml" not in minor and "svg" not in minor
    return False


def parse_hex(value: str, length: int, what: str) -> str:
    """Lowercase hex of the given length, or a 400 ``invalid_hash``."""
    v = value.lower()
    if len(v) != length or not set(v) <= _HEX:
        raise BadRequest(f"{what} must be {length} hexadecimal characters", code="invalid_hash")
    return v


def json_body(request: Any, body: Any, status: int = 200) -> bytes:
    """A JSON answer that is not cached and is readable cross-origin."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    set_headers(request, CORS_HEADERS)
    return json.dumps(body).encode("utf-8")


def set_headers(request: Any, headers: dict[bytes, bytes]) -> None:
    for k, v in headers.items():
        request.setHeader(k, v)


def content_disposition(kind: str, name: str) -> bytes:
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace('"', "'").replace("?", "_")
    value = f'{kind}; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(name, safe="")}'
    return value.encode("latin-1")


def if_none_match_hits(header: bytes, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` value names ``etag``: ``*``, or one of its entity tags under
    the weak comparison (RFC 9110 13.1.2, 8.8.3.2: ``W/`` prefixes ignored).
    (``If-Range`` needs the strong comparison: a weak tag never matches there.)"""
    if header.strip() == b"*":
        return True
    for tag in header.split(b","):
        tag = tag.strip()
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def client_ip(request: Any, trusted_proxies: tuple[str, ...] = ()) -> str:
    """The peer address; X-Forwarded-For is honoured only from a trusted proxy."""
    addr = request.getClientAddress()
    host = getattr(addr, "host", None) or "unknown"
    if trusted_proxies and _in_networks(host, trusted_proxies):
        xff = request.getHeader(b"x-forwarded-for")
        if xff:
            candidate = xff.decode("latin-1").split(",")[-1].strip()
            try:
                ipaddress.ip_address(candidate)
                return candidate
            except ValueError:
                pass
    return str(host)


def _in_networks(host: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for n in networks:
        try:
            if ip in ipaddress.ip_network(n, strict=False):
                return True
        except ValueError:
            continue
    return False


async def send_file(
    request: Any,
    reader: BlockReader,
    f: StoredFile,
    *,
    content_type: str | None = None,
    disposition: str | None = None,
    extra_headers: dict[bytes, bytes] | None = None,
) -> None:
    """Answer GET/HEAD for a stored file (200, 206, 304 or 416) and stream its bytes."""
    etag = f'"{f.sha256}"'.encode()
    served_type = content_type or f.mime
    request.setHeader(b"accept-ranges", b"bytes")
    request.setHeader(b"etag", etag)
    request.setHeader(b"cache-control", b"public, max-age=31536000, immutable")
    request.setHeader(b"content-type", served_type.encode("latin-1"))
    request.setHeader(*NOSNIFF)
    if not is_passive_type(served_type):
        disposition = "attachment"
        request.setHeader(b"content-security-policy", ACTIVE_CONTENT_CSP)
    if disposition:
        request.setHeader(b"content-disposition", content_disposition(disposition, f.name))
    set_headers(request, CORS_HEADERS)
    if extra_headers:
        set_headers(request, extra_headers)

    inm = request.getHeader(b"if-none-match")
    if inm is not None and if_none_match_hits(inm, etag):
        request.setResponseCode(304)
        request.finish()
        return

    rng = parse_range(request.getHeader(b"range"), f.size)
    if rng is not None:
        if_range = request.getHeader(b"if-range")
        if if_range is not None and if_range.strip() != etag:
            rng = None
    if rng is None:
        start, end = 0, f.size
        request.setResponseCode(200)
    else:
        start, end = rng
        request.setResponseCode(206)
        request.setHeader(b"content-range", f"bytes {start}-{end - 1}/{f.size}".encode())
    request.setHeader(b"content-length", str(end - start).encode())
    if request.method == b"HEAD" or end == start:
        request.finish()
        return
    producer = reader.producer(f, start, end, request)
    try:
        await producer.start()
    except CancelledError:
        producer.stopProducing()
        raise
    except Exception:
        # The client went away or a read failed after the headers went out: drop the
        # connection so the client sees a truncated response, not a wrong one.
        if request.channel is not None and not request.finished:
            request.channel.transport.abortConnection()
        return
    if not request.finished and request.channel is not None:
        request.finish()

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

from typing import Any
from urllib.parse import quote

from twisted.internet.defer import CancelledError

from tgateway.storage.api import BlockReader
from tgateway.storage.model import StoredFile

from .headers import CORS_HEADERS, set_headers
from .ranges import parse_range

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

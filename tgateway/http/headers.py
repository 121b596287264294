"""Headers every HTTP face shares: CORS (the gateway's API and Blossom are read from web pages on
other origins) and the client's address (for rate limits)."""

from __future__ import annotations

from typing import Any

from tgateway.proxies import NO_PROXIES, ProxyPolicy

CORS_HEADERS = {
    b"access-control-allow-origin": b"*",
    b"access-control-expose-headers": (
        b"Content-Range, Content-Length, Accept-Ranges, ETag, Content-Disposition, X-Reason, Sunset, "
        b"Retry-After"
    ),
}
CORS_PREFLIGHT = {
    **CORS_HEADERS,
    b"access-control-allow-methods": b"GET, HEAD, PUT, POST, DELETE, OPTIONS",
    # Cache-Control: WebTorrent in a browser sends "Cache-Control: no-store" with every web seed
    # range request; without it here the browser refuses the response after the preflight.
    b"access-control-allow-headers": (
        b"Range, Authorization, Content-Type, X-Filename, X-SHA-256, X-Content-Length, "
        b"X-Content-Type, If-None-Match, If-Range, Cache-Control"
    ),
    b"access-control-max-age": b"86400",
}


def set_headers(request: Any, headers: dict[bytes, bytes]) -> None:
    for k, v in headers.items():
        request.setHeader(k, v)


def answer_preflight(request: Any, headers: dict[bytes, bytes] = CORS_PREFLIGHT) -> bytes:
    """The answer to a CORS preflight (``OPTIONS``): 204 with ``headers``."""
    set_headers(request, headers)
    request.setResponseCode(204)
    return b""


def client_ip(request: Any, proxies: ProxyPolicy = NO_PROXIES) -> str:
    """The client's address: the peer's, or the one a trusted proxy names (``trusted_proxies``)."""
    return proxies.request_client(request)


__all__ = ["CORS_HEADERS", "CORS_PREFLIGHT", "answer_preflight", "client_ip", "set_headers"]

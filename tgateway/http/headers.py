"""Headers every HTTP face shares: CORS (the gateway's API and Blossom are read from web pages on
other origins) and the client's address (for rate limits)."""

from __future__ import annotations

import ipaddress
from typing import Any

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


def set_headers(request: Any, headers: dict[bytes, bytes]) -> None:
    for k, v in headers.items():
        request.setHeader(k, v)


def answer_preflight(request: Any, headers: dict[bytes, bytes] = CORS_PREFLIGHT) -> bytes:
    """The answer to a CORS preflight (``OPTIONS``): 204 with ``headers``."""
    set_headers(request, headers)
    request.setResponseCode(204)
    return b""


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
                return str(candidate)
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


__all__ = ["CORS_HEADERS", "CORS_PREFLIGHT", "answer_preflight", "client_ip", "set_headers"]

"""What the web interface needs to know about this gateway, and what its pages may load.

:func:`public_config` is the JSON the pages start from (embedded in every page as a
``<script type="application/json">`` data block, and served at ``GET /api/config`` for other
clients): the public URLs (gateway, Blossom, the WebSocket tracker), the upload limits, which
components run, the relays the page's ``nostrconnect://`` code names, and the URLs of the
page's own modules and vendored libraries. Nothing in it is secret: it is what the gateway's
torrents, magnets and NIP-35 events already publish.

:func:`content_security_policy` derives the pages' CSP from it. Scripts only from the gateway
(``script-src 'self'``: no inline script, no ``eval``); the page may connect to the gateway,
its WebSocket tracker, its Blossom server and the NIP-46 relays it names, and nowhere else;
media from the gateway, Blossom and ``blob:`` (hls.js feeds MSE through a blob URL, a file
fetched by WebTorrent plays from one). Every source is rebuilt from a parsed URL as
``scheme://host[:port]``, so a configured URL cannot smuggle a directive in.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from tgateway import __version__
from tgateway.config import Config
from tgateway.links import Links

__all__ = ["content_security_policy", "public_config", "origin_of"]

_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")
NJUMP = "https://njump.me/"


def origin_of(url: str, schemes: tuple[str, ...] = ("http", "https", "ws", "wss")) -> str | None:
    """``scheme://host[:port]`` of an absolute URL, or None when it is not one of ``schemes``
    or its host has characters a CSP source cannot hold."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rpartition("@")[2]
    if scheme not in schemes or not netloc or not _HOST.match(netloc):
        return None
    return f"{scheme}://{netloc.lower()}"


def public_config(
    config: Config,
    links: Links,
    *,
    nostr: bool,
    transcode: bool,
    max_upload: int,
    app_prefix: str,
    vendor: dict[str, str],
) -> dict[str, Any]:
    ws_tracker = next((u for u in links.tracker_urls if u.startswith(("ws://", "wss://"))), None)
    relays = [r for r in config.nostr.relays if origin_of(r, ("ws", "wss"))] if nostr else []
    return {
        "version": __version__,
        "gateway": links.base_url,
        "blossom": links.blossom_url,
        "trackers": {"ws": ws_tracker, "all": list(links.tracker_urls)},
        "upload": {
            "max_size": max_upload,
            "anonymous": config.gateway.allow_anonymous_uploads,
        },
        "features": {
            "nostr": nostr,
            "nip46": nostr,  # bunker:// logins run on the gateway's relay pool
            "transcode": transcode,
            "tracker": bool(links.tracker_urls),
            "blossom": links.blossom_url is not None,
        },
        # nostrconnect:// codes name these relays; the page talks to them itself
        "nostr": {"connect_relays": relays[:3], "njump": NJUMP},
        "app": app_prefix,
        "vendor": vendor,
    }


def content_security_policy(public: dict[str, Any]) -> bytes:
    """The CSP of every page (see the module docstring)."""
    gateway = origin_of(public["gateway"])
    blossom = origin_of(public["blossom"]) if public.get("blossom") else None
    ws = origin_of(public["trackers"]["ws"]) if public["trackers"].get("ws") else None
    relays = [o for o in (origin_of(r, ("ws", "wss")) for r in public["nostr"]["connect_relays"]) if o]

    def sources(*extra: str | None) -> str:
        seen: list[str] = []
        for s in ("'self'", *extra):
            if s and s not in seen:
                seen.append(s)
        return " ".join(seen)

    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {sources(gateway, blossom, 'data:', 'blob:')}",
        f"media-src {sources(gateway, blossom, 'blob:')}",
        f"connect-src {sources(gateway, blossom, ws, *relays)}",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives).encode("ascii")

"""Listening endpoint strings (``serverFromString``) built from a config's port and host.

The one place that turns ``(port, host)`` into an endpoint description: every TCP listener (the
gateway's HTTP port, Blossom's, the tracker's own HTTP port, the BitTorrent peer) uses it, so an
IPv6 or wildcard host means the same everywhere.
"""

from __future__ import annotations

__all__ = ["tcp_server"]


def tcp_server(port: int, host: str) -> str:
    """``tcp:PORT`` on every IPv4 address for ``""`` and ``0.0.0.0``; ``tcp6:`` for an IPv6 host
    (``::`` is every address, IPv4-mapped ones included where the system allows); else
    ``tcp:PORT:interface=HOST``. Colons in the host are escaped for the endpoint parser."""
    if ":" in host:
        escaped = host.replace(":", "\\:")
        return f"tcp6:{port}:interface={escaped}"
    if host in ("", "0.0.0.0"):
        return f"tcp:{port}"
    return f"tcp:{port}:interface={host}"

"""What one HTTP port answered: requests by route and status, latency, bytes sent.

Recorded once per request, when it finishes (:meth:`StreamingSite.log
<tgateway.http.site.StreamingSite.log>`), for every route of the port: plain counts, turned into
Prometheus families only when scraped (:meth:`HttpStats.families`).

The route of a request is its Klein rule (``/api/webseed/<sha256:sha>/<path:name>``, set by the
app of :func:`tgateway.http.app.new_app`), else the first path segment of a mounted resource
(``/announce``); a request no route took (404 of the router, 405) is ``unmatched``, so a scanner
walking paths adds no series. ``served`` maps a route's prefix to what it serves (``download``,
``webseed``, ``blossom``...): the bytes of their 2xx answers also count in
``tgateway_served_bytes_total``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import Metric

from tgateway.metrics import LATENCY_BUCKETS, Histogram, counter, histogram

__all__ = ["HttpStats", "UNMATCHED"]

UNMATCHED = "unmatched"


class HttpStats:
    def __init__(self, site: str, served: Sequence[tuple[str, str]] = ()) -> None:
        self.site = site
        self.served = tuple(served)  # (route prefix, what it serves), first match wins
        self.requests: dict[tuple[str, str, str], int] = {}  # (route, method, status) -> n
        self.latency: dict[str, Histogram] = {}
        self.sent: dict[str, int] = {}  # route -> body bytes
        self.content: dict[str, int] = {}  # route -> body bytes of 2xx answers
        self.total = 0
        self.errors = 0  # 5xx
        self.latency_sum = 0.0

    def record(self, route: str, method: str, status: int, seconds: float, sent: int) -> None:
        key = (route, method, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.latency.get(route)
        if h is None:
            h = self.latency[route] = Histogram(LATENCY_BUCKETS)
        h.observe(seconds)
        if sent:
            self.sent[route] = self.sent.get(route, 0) + sent
            if status < 300:
                self.content[route] = self.content.get(route, 0) + sent
        self.total += 1
        self.latency_sum += seconds
        if status >= 500:
            self.errors += 1

    def served_bytes(self) -> dict[str, int]:
        """Bytes of 2xx answers by what was served (the ``served`` prefixes); other routes and
        error answers left out."""
        out: dict[str, int] = {}
        for route, n in list(self.content.items()):
            for prefix, what in self.served:
                if route.startswith(prefix):
                    out[what] = out.get(what, 0) + n
                    break
        return out

    def status(self) -> dict[str, Any]:
        """The signals of the HTTP health score: totals since start (the health core takes the
        differences between two looks)."""
        return {"requests": self.total, "errors_5xx": self.errors,
                "latency_seconds_sum": round(self.latency_sum, 6)}

    def families(self) -> Iterator[Metric]:
        site = self.site
        yield counter("tgateway_http_requests", "HTTP requests answered, by route and status",
                      ("site", "route", "method", "status"),
                      {(site, *k): v for k, v in self.requests.items()})
        yield histogram("tgateway_http_request_duration_seconds",
                        "Time from the request line to the end of the answer",
                        ("site", "route"), {(site, r): h for r, h in self.latency.items()})
        yield counter("tgateway_http_response_bytes", "Body bytes sent, by route",
                      ("site", "route"), {(site, r): n for r, n in self.sent.items()})
        yield counter("tgateway_served_bytes", "Content bytes served, by path (download, "
                      "webseed, stream, blossom, peer)", ("path",),
                      {(what,): n for what, n in self.served_bytes().items()})


def route_of(request: Any) -> str:
    """The route label of a finished request (see the module docstring)."""
    route: str | None = getattr(request, "route", None)
    if route is not None:
        return route
    if request.code in (404, 405):
        return UNMATCHED
    path: bytes = request.path or b"/"
    first = path.split(b"/", 2)[1] if path.startswith(b"/") else b""
    return "/" + first.decode("ascii", "replace")

"""The health component: ``/api/health``, ``/api/admin/diagnostics``, alerts and ``/metrics``.

The one place that reads every component's ``status()`` (:class:`Health`): every
``health.check_interval`` (and on each ``GET /api/health``) it asks them all, hands the answers
to the core (:class:`~tgateway.health.core.HealthCore`: scores, overall state, alerts) and logs
each alert once when it comes on and once when it goes off.

- ``GET /api/health``: the overall state, the scores and the alerts, for load balancers and
  monitors, with each component's status under its name: 200 while the gateway serves (``ok`` or
  ``degraded``), 503 when a required component is down.
- ``GET /api/admin/diagnostics`` (admin key): the same with the reasons behind each score, the
  alerts' thresholds and the check interval.
- ``GET /api/admin/history`` (admin key): the admin dashboard's charts. Every
  ``health.history.interval`` the counters of :data:`~tgateway.health.history.SERIES` (uploads,
  bytes received and served, announces) are read from the metrics registry, the same collectors
  ``/metrics`` serves, into a :class:`~tgateway.health.history.History` of
  ``health.history.span``: in memory, started again by a restart.
- ``GET /metrics``: Prometheus text from ``Gateway.metrics`` (every component's collectors,
  :mod:`tgateway.metrics`), plus ``tgateway_health_score`` and ``tgateway_alert``. On
  ``metrics.port`` when set (its own listener, no auth: bind it to a private interface), else on
  the gateway's port for admins only; never open on the public port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site as WebSite

from tgateway.component import Component, Deps, Mount
from tgateway.config import HealthConfig
from tgateway.endpoints import tcp_server
from tgateway.http.app import new_app
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.jsonio import json_body, json_response
from tgateway.http.openapi import Op, Reply, Schema, route
from tgateway.metrics import Collect, gauge

from .core import Assessment, HealthCore, Thresholds
from .history import History, Sample

__all__ = ["Health", "build"]

# the OpenAPI descriptions of the routes (tgateway.http.openapi)
_ALERT: Schema = {"type": "object", "required": ["name", "message", "since"],
                  "properties": {"name": {"type": "string", "description": "disk_free, "
                                          "score:<component>, outbox_backlog, failed_jobs"},
                                 "message": {"type": "string"}, "since": {"type": "number"}}}
_ASSESSED: dict[str, Schema] = {
    "status": {"enum": ["ok", "degraded", "down"]},
    "time": {"type": "integer"},
    "scores": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0,
                                                          "maximum": 100},
               "description": "component -> 0-100"},
    "alerts": {"type": "array", "items": _ALERT},
}
HEALTH: Schema = {"type": "object", "required": ["status", "time", "scores", "alerts"],
                  "properties": _ASSESSED,
                  "additionalProperties": {"type": "object",
                                           "description": "a component's status, by its name"}}
DIAGNOSTICS: Schema = {
    "type": "object",
    "required": [*_ASSESSED, "reasons", "components", "thresholds", "check_interval"],
    "properties": {
        **_ASSESSED,
        "reasons": {"type": "object", "description": "component -> what lowered its score",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "components": {"type": "object", "additionalProperties": {"type": "object"}},
        "thresholds": {"type": "object", "required": ["disk_free_min", "score_min",
                                                      "outbox_backlog_max", "failed_jobs_max"],
                       "additionalProperties": {"type": "number"}},
        "check_interval": {"type": "number"},
    },
}
_COUNT: Schema = {"type": "number", "minimum": 0}
HISTORY: Schema = {
    "type": "object",
    "required": ["interval", "points", "times", "series"],
    "properties": {
        "interval": {"type": "number", "description": "seconds between two points "
                     "(health.history.interval)"},
        "points": {"type": "integer", "description": "the most points kept "
                   "(health.history.span / interval)"},
        "times": {"type": "array", "items": {"type": "number"},
                  "description": "the end of each point's interval (Unix time), oldest first; "
                                 "a point covers the time since the one before (the first: one "
                                 "interval)"},
        "series": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "title", "unit", "description", "by", "values", "total",
                         "parts"],
            "properties": {
                "name": {"enum": ["uploads", "upload_bytes", "served_bytes", "announces"]},
                "title": {"type": "string"},
                "unit": {"enum": ["count", "bytes"]},
                "description": {"type": "string"},
                "by": {"type": ["string", "null"],
                       "description": "the label the parts are values of"},
                "values": {"type": "array", "items": _COUNT,
                           "description": "what the counter grew by over each point's "
                                          "interval, one per time"},
                "total": _COUNT,
                "parts": {"type": "object", "additionalProperties": _COUNT,
                          "description": "the total of each part over the points kept"},
            }}},
    },
}


class Health:
    """Reads the components' statuses, keeps the last assessment, logs alert changes."""

    log = Logger()
    app = new_app()

    def __init__(self, *, components: Sequence[Component[Any]], clock: IReactorTime,
                 core: HealthCore, auth: Authenticator, registry: CollectorRegistry,
                 history: History) -> None:
        self.components = components  # read when checking (tap fills it while building)
        self.clock = clock
        self.core = core
        self.auth = auth
        self.registry = registry
        self.history = history
        self.statuses: dict[str, Any] = {}
        self.last: Assessment | None = None

    async def check(self) -> Assessment:
        """Ask every component, assess, log the alerts that came on or went off."""
        statuses: dict[str, Any] = {}
        for component in self.components:
            if component.report is None or component.part is self:
                continue
            try:
                status = await component.status()
            except Exception as e:
                # the component's score is 0 (and an alert logged once) while it fails
                status = {"status": "error", "error": f"{type(e).__name__}: {e}"}
            if status is not None:
                statuses[component.name] = status
        result = self.core.assess(statuses, self.clock.seconds())
        for alert in result.entered:
            self.log.warn("alert on: {alert}: {detail}", alert=alert.name, detail=alert.message)
        for alert in result.left:
            self.log.info("alert off: {alert} (on since {since:.0f})", alert=alert.name,
                          since=alert.since)
        self.statuses, self.last = statuses, result
        return result

    def _tick(self) -> Deferred[Assessment]:
        d = Deferred.fromCoroutine(self.check())
        d.addErrback(lambda f: self.log.failure("health check failed", f))
        return d

    def sample(self) -> None:
        """A point of the history from the registry's current counts (every
        ``health.history.interval``)."""
        try:
            self.history.add(self.clock.seconds(), self._samples())
        except Exception:
            self.log.failure("sampling the counters for the history failed")

    def _samples(self) -> Iterator[Sample]:
        for family in self.registry.collect():
            for s in family.samples:
                yield s.name, s.labels, s.value

    def families(self) -> Iterator[Metric]:
        last = self.last
        if last is None:
            return
        yield gauge("tgateway_health_score", "Health score of each component, 0-100",
                    ("component",), {(n,): s for n, s in last.scores.items()})
        yield gauge("tgateway_health_up", "1 when the gateway serves (overall state ok or "
                    "degraded), 0 when a required component is down", (),
                    {(): int(last.status != "down")})
        yield gauge("tgateway_alert", "1 for each alert that is on (health.alerts)", ("alert",),
                    {(a.name,): 1 for a in last.alerts})

    # routes ------------------------------------------------------------------------------

    @route(app, "/api/health", methods=["GET"], op=Op(
        "The gateway's health", tags=("meta",),
        description="The overall state, each component's score (0-100) and the alerts that "
                    "are on, with each component's status under its name: for load balancers "
                    "and monitors.",
        replies={200: Reply("the gateway serves: ok or degraded", json=HEALTH),
                 503: Reply("a required component is down (storage, the gateway)",
                            json=HEALTH)}))
    async def health(self, request: Any) -> bytes:
        result = await self.check()
        # each component's status under its name, as before scores existed (monitors and
        # tests read them); the reasons behind the scores are the admin's (diagnostics)
        body = {**self.statuses, **result.to_json()}
        return json_body(request, body, 503 if result.status == "down" else 200)

    @authorized(app, "/api/admin/diagnostics", methods=["GET"], need=Need.ADMIN, op=Op(
        "Health with the reasons behind each score", tags=("admin",), name="admin_diagnostics",
        description="What /api/health says, with what lowered each score, every component's "
                    "status, the alerts' thresholds (health.alerts) and the check interval.",
        replies={200: Reply("the assessment and its reasons", json=DIAGNOSTICS)}))
    async def diagnostics(self, request: Any, principal: Principal | None) -> bytes:
        result = await self.check()
        t = self.core.thresholds
        return json_response(request, {
            **result.to_json(),
            "reasons": result.reasons,
            "components": self.statuses,
            "thresholds": {"disk_free_min": t.disk_free_min, "score_min": t.score_min,
                           "outbox_backlog_max": t.outbox_backlog_max,
                           "failed_jobs_max": t.failed_jobs_max},
            "check_interval": self.core.window,
        })

    @authorized(app, "/api/admin/history", methods=["GET"], need=Need.ADMIN, op=Op(
        "Counters over time, for the dashboard's charts", tags=("admin",), name="admin_history",
        description="Uploads, upload bytes received, content bytes served (download, webseed, "
                    "stream, Blossom, peer wire) and tracker announces (HTTP, UDP, WebSocket): "
                    "what each grew by over every health.history.interval, for the last "
                    "health.history.span. Kept in memory only: a restart starts the history "
                    "again (the counters count since the process started).",
        replies={200: Reply("the points, oldest first", json=HISTORY)}))
    async def history_route(self, request: Any, principal: Principal | None) -> bytes:
        return json_response(request, self.history.to_json())

    @authorized(app, "/metrics", methods=["GET"], need=Need.ADMIN, op=Op(
        "Prometheus metrics", tags=("meta",), name="metrics",
        description="On the gateway's port for admins only, when metrics.port is not set (on "
                    "metrics.port it is served without auth, outside this document).",
        replies={200: Reply("the Prometheus text exposition format",
                            content={"text/plain": {"type": "string"}})}))
    async def metrics_for_admins(self, request: Any, principal: Principal | None) -> bytes:
        return self.exposition(request)

    def exposition(self, request: Any) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)


class _Every(Service):
    """Calls ``work`` every ``interval``; the first time an interval after start (a health
    check: once the components have had the time to connect, relays, DHT bootstrap, so no
    alert for a start-up; a point of the history: one interval's counts)."""

    def __init__(self, work: Callable[[], object], interval: float, clock: IReactorTime) -> None:
        self.interval = interval
        self.loop = LoopingCall(work)
        self.loop.clock = clock

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.interval, now=False)

    def stopService(self) -> None:
        if self.loop.running:
            self.loop.stop()
        super().stopService()


class MetricsPage(Resource):
    """``/metrics`` on ``metrics.port``: no auth (the port is the operator's to guard)."""

    isLeaf = True

    def __init__(self, health: Health) -> None:
        super().__init__()
        self.health = health

    def render_GET(self, request: Any) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain")
            return b"not found: GET /metrics\n"
        return self.health.exposition(request)


def build(section: HealthConfig, deps: Deps) -> Component[Health]:
    if deps.authenticator is None:
        raise RuntimeError("health needs the gateway component (its site and sign-in)")
    a = section.alerts
    core = HealthCore(Thresholds(disk_free_min=int(a.disk_free_min), score_min=a.score_min,
                                 outbox_backlog_max=a.outbox_backlog_max,
                                 failed_jobs_max=a.failed_jobs_max),
                      window=float(section.check_interval))
    h = section.history
    health = Health(components=deps.components, clock=deps.reactor, core=core,
                    auth=deps.authenticator, registry=deps.metrics,
                    history=History(interval=float(h.interval), span=float(h.span)))
    services = MultiService()
    services.setName("health")
    checks = _Every(health._tick, float(section.check_interval), deps.reactor)
    checks.setName("health-checks")
    checks.setServiceParent(services)
    sampling = _Every(health.sample, float(h.interval), deps.reactor)
    sampling.setName("health-history")
    sampling.setServiceParent(services)
    resource = health.app.resource()
    mounts = [Mount("gateway", "/api/health", resource, whole_path=True),
              Mount("gateway", "/api/admin/diagnostics", resource, whole_path=True),
              Mount("gateway", "/api/admin/history", resource, whole_path=True)]
    mc = deps.config.metrics
    if mc.port:
        listener = StreamServerEndpointService(
            serverFromString(deps.reactor, tcp_server(mc.port, mc.host)),
            WebSite(MetricsPage(health)))
        listener.setName("metrics-http")
        listener.setServiceParent(services)
    else:
        mounts.append(Mount("gateway", "/metrics", resource, whole_path=True))
    return Component(name="health", part=health, services=[services], mounts=mounts,
                     metrics=[Collect(health.families)])

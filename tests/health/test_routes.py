"""/api/health, /api/admin/diagnostics, /api/admin/history and /metrics through the real plugin
on loopback ports."""

from __future__ import annotations

import time
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, case_data_dir, small_config, start_gateway
from harness.ports import free_tcp_port
from tgateway.storage.db import DatabaseClosed

ADMIN = "ad" * 32
USER = "b0" * 32

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def bearer(g: RunningGateway, pubkey: str) -> dict[str, str]:
    token, _ = await g.gateway.components.gateway.users.sessions.create(pubkey, "test", time.time())
    return {"Authorization": f"Bearer {token}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class HealthRouteTests(TestCase):
    """A gateway-only configuration with ``ADMIN`` as its admin, each test's own."""

    def start(self, **sections: Any) -> RunningGateway:
        sections.setdefault("admin", {"pubkeys": [ADMIN]})
        return start_gateway(self, small_config(case_data_dir(self), **sections))

    async def test_health_gives_the_overall_state_and_scores(self) -> None:
        g = self.start()
        r = await http.get(g.url("/api/health"))
        assert r.code == 200
        body = await treq.json_content(r)
        assert body["status"] == "ok" and body["alerts"] == []
        assert set(body["scores"]) >= {"storage", "gateway", "peer", "nostr"}
        assert all(v == 100 for v in body["scores"].values()), body
        assert body["storage"]["files"] == 0  # each component's status under its name
        assert "reasons" not in body  # why a score is what it is: the admin's (diagnostics)

    async def test_health_is_503_when_storage_is_down(self) -> None:
        # The background work that runs meanwhile (the start-up storage check, the Nostr outbox)
        # fails and logs DatabaseClosed, as it should; flushed after the gateway has stopped.
        self.addCleanup(self.flushLoggedErrors, DatabaseClosed)
        g = self.start()
        g.gateway.db.close()  # every database call now fails
        r = await http.get(g.url("/api/health"))
        assert r.code == 503, await r.text()
        body = await treq.json_content(r)
        assert body["status"] == "down" and body["scores"]["storage"] == 0
        assert "score:storage" in {a["name"] for a in body["alerts"]}

    async def test_disk_below_the_threshold_raises_an_alert_logged_once(self) -> None:
        g = self.start(health={"alerts": {"disk_free_min": "1GB"}})
        health = g.gateway.components.named("health").part
        # The events as Health logs them. (The alert's text is in a field named "detail": legacy
        # log observers, trial's among them, replace a field called "message" with ().)
        events: list[dict[str, Any]] = []
        self.patch(health, "log", Logger(observer=events.append))
        g.store.free_space = lambda: 5_000_000  # type: ignore[method-assign]
        for _ in range(3):
            r = await http.get(g.url("/api/health"))
            assert r.code == 200  # degraded still serves
            body = await treq.json_content(r)
        assert body["status"] == "degraded"
        assert "disk_free" in {a["name"] for a in body["alerts"]}
        on = [e for e in events if e.get("log_format", "").startswith("alert on")
              and e.get("alert") == "disk_free"]
        assert len(on) == 1 and "5000000 bytes free" in on[0]["detail"]
        assert "message" not in on[0]
        g.store.free_space = lambda: 10**13  # type: ignore[method-assign]
        await health.check()
        await health.check()
        off = [e for e in events if e.get("log_format", "").startswith("alert off")
               and e.get("alert") == "disk_free"]
        assert len(off) == 1 and health.last.status == "ok"

    async def test_diagnostics_for_admins_only(self) -> None:
        g = self.start()
        r = await http.get(g.url("/api/admin/diagnostics"))
        assert r.code == 401
        r = await http.get(g.url("/api/admin/diagnostics"), headers=await bearer(g, USER))
        assert r.code == 403 and (await treq.json_content(r))["error"] == "not_admin"
        r = await http.get(g.url("/api/admin/diagnostics"), headers=await bearer(g, ADMIN))
        assert r.code == 200
        body = await treq.json_content(r)
        assert body["components"]["storage"]["files"] == 0
        assert "free_bytes" in body["components"]["storage"]
        assert body["thresholds"]["score_min"] == 50 and body["reasons"]["storage"] == []

    async def test_history_for_admins_only_with_what_the_counters_grew_by(self) -> None:
        g = self.start(health={"history": {"interval": "1s", "span": "1h"}})
        r = await http.get(g.url("/api/admin/history"))
        assert r.code == 401
        await r.content()
        r = await http.get(g.url("/api/admin/history"), headers=await bearer(g, USER))
        assert r.code == 403 and (await treq.json_content(r))["error"] == "not_admin"
        admin = await bearer(g, ADMIN)
        r = await http.put(g.url("/api/upload"), data=b"history " * 1000)
        sha = (await treq.json_content(r))["sha256"]
        r = await http.get(g.url(f"/api/download/{sha}"))
        assert await r.content() == b"history " * 1000
        health = g.gateway.components.named("health").part
        before = len(health.history.times)
        deadline = time.time() + 20
        while len(health.history.times) <= before:  # the next point, on the reactor's clock
            assert time.time() < deadline, "no point sampled in 20 s with a 1 s interval"
            await deferLater(reactor, 0.2)
        r = await http.get(g.url("/api/admin/history"), headers=admin)
        assert r.code == 200
        body = await treq.json_content(r)
        assert body["interval"] == 1 and body["points"] == 3600
        n = len(body["times"])
        assert n >= 1 and body["times"] == sorted(body["times"])
        by = {s["name"]: s for s in body["series"]}
        assert list(by) == ["uploads", "upload_bytes", "served_bytes", "announces"]
        assert all(len(s["values"]) == n for s in by.values())
        assert by["uploads"]["total"] == 1 and by["uploads"]["parts"] == {"stored": 1}
        assert by["upload_bytes"]["total"] == 8000
        assert by["served_bytes"]["parts"]["download"] == 8000
        assert by["served_bytes"]["total"] == sum(by["served_bytes"]["values"])

    async def test_metrics_on_the_gateway_port_are_for_admins_only(self) -> None:
        g = self.start()
        r = await http.get(g.url("/metrics"))
        assert r.code == 401
        await r.content()
        user = await bearer(g, USER)
        r = await http.get(g.url("/metrics"), headers=user)
        assert r.code == 403
        await r.content()
        await g.gateway.components.storage.policy.users.update(USER, banned=True, by=ADMIN,
                                                               now=time.time())
        r = await http.get(g.url("/metrics"), headers=user)
        assert r.code == 403 and (await treq.json_content(r))["error"] == "banned"
        r = await http.put(g.url("/api/upload"), data=b"metrics " * 1000)
        sha = (await treq.json_content(r))["sha256"]
        r = await http.get(g.url(f"/api/download/{sha}"))
        assert await r.content() == b"metrics " * 1000
        r = await http.get(g.url("/api/download/" + "0" * 64))
        await r.content()
        # the health series are the last check's (every health.check_interval, or this GET)
        r = await http.get(g.url("/api/health"))
        await r.content()
        r = await http.get(g.url("/metrics"), headers=await bearer(g, ADMIN))
        assert r.code == 200
        assert r.headers.getRawHeaders("content-type")[0].startswith("text/plain")
        got = samples((await r.content()).decode())
        route = "/api/download/<sha256:sha>"
        key = ("site", "gateway"), ("status", "200"), ("method", "GET"), ("route", route)
        assert got[("tgateway_http_requests_total", tuple(sorted(key)))] == 1
        key404 = tuple(sorted((*key[:1], ("status", "404"), *key[2:])))
        assert got[("tgateway_http_requests_total", key404)] == 1
        assert got[("tgateway_served_bytes_total", (("path", "download"),))] == 8000
        assert got[("tgateway_uploads_total", (("result", "stored"),))] == 1
        assert got[("tgateway_ingested_bytes_total", ())] == 8000
        hist = ("tgateway_http_request_duration_seconds_count",
                (("route", route), ("site", "gateway")))
        assert got[hist] == 2
        assert got[("tgateway_health_score", (("component", "storage"),))] == 100
        assert ("tgateway_storage_free_bytes", ()) in got
        assert got[("tgateway_block_refusals_total", (("kind", "banned_key"),))] >= 1
        assert ("process_resident_memory_bytes", ()) in got

    async def test_metrics_port_serves_metrics_and_the_gateway_port_does_not(self) -> None:
        port = free_tcp_port()
        g = self.start(metrics={"port": port, "host": "127.0.0.1"})
        r = await http.get(g.url("/metrics"), headers=await bearer(g, ADMIN))
        assert r.code == 404
        await r.content()
        await g.gateway.components.named("health").part.check()
        r = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert r.code == 200
        got = samples((await r.content()).decode())
        assert ("tgateway_health_up", ()) in got
        r = await http.get(f"http://127.0.0.1:{port}/other")
        assert r.code == 404
        await r.content()

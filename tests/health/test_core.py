"""The health core: scores move with the signals, alerts come on and go off once each."""

from __future__ import annotations

from typing import Any

from tgateway.health.core import HealthCore, Thresholds, score

T = Thresholds(disk_free_min=1000, score_min=50, outbox_backlog_max=10, failed_jobs_max=2)


def core() -> HealthCore:
    return HealthCore(T, window=10.0)


def nostr(connected: int, configured: int = 2, backlog: int = 0, **kw: Any) -> dict[str, Any]:
    return {"status": "ok", "relays_configured": configured, "relays_connected": connected,
            "outbox_backlog": backlog, "outbox_oldest_age": 0.0, "deliveries": {}, **kw}


def storage(free: int = 10_000, db: float = 0.001) -> dict[str, Any]:
    return {"status": "ok", "free_bytes": free, "db_seconds": db}


def gateway(requests: int, errors: int, latency: float) -> dict[str, Any]:
    return {"status": "ok", "http": {"requests": requests, "errors_5xx": errors,
                                     "latency_seconds_sum": latency}}


def test_relays_down_lower_the_score_and_raise_one_alert_until_they_are_back() -> None:
    c = core()
    a = c.assess({"storage": storage(), "nostr": nostr(2)}, 0.0)
    assert a.scores["nostr"] == 100 and a.alerts == [] and a.status == "ok"
    a = c.assess({"storage": storage(), "nostr": nostr(1)}, 15.0)
    assert a.scores["nostr"] == 60 and a.alerts == []  # one of two: above score_min
    a = c.assess({"storage": storage(), "nostr": nostr(0)}, 30.0)
    assert a.scores["nostr"] == 20
    assert [x.name for x in a.entered] == ["score:nostr"] and a.status == "degraded"
    assert "2 of 2 relays not connected" in a.entered[0].message
    a = c.assess({"storage": storage(), "nostr": nostr(0)}, 45.0)
    assert a.entered == [] and [x.name for x in a.alerts] == ["score:nostr"]  # still on, not new
    a = c.assess({"storage": storage(), "nostr": nostr(2)}, 60.0)
    assert a.scores["nostr"] == 100 and [x.name for x in a.left] == ["score:nostr"]
    assert a.alerts == [] and a.status == "ok"
    a = c.assess({"storage": storage(), "nostr": nostr(2)}, 75.0)
    assert a.left == [] and a.entered == []


def test_disk_below_the_threshold_is_an_alert_and_costs_the_storage_score() -> None:
    c = core()
    assert c.assess({"storage": storage(free=5000)}, 0.0).scores["storage"] == 100
    assert c.assess({"storage": storage(free=1500)}, 1.0).scores["storage"] == 80  # < 2x
    a = c.assess({"storage": storage(free=999)}, 2.0)
    assert a.scores["storage"] == 40
    # the disk alert, and the storage's score fell below score_min
    assert {x.name for x in a.entered} == {"disk_free", "score:storage"}
    assert a.status == "degraded"
    a = c.assess({"storage": storage(free=5000)}, 3.0)
    assert {x.name for x in a.left} == {"disk_free", "score:storage"} and a.status == "ok"


def test_a_required_component_down_is_down_overall() -> None:
    c = core()
    a = c.assess({"storage": {"status": "down", "error": "DatabaseClosed: closed"},
                  "gateway": gateway(0, 0, 0)}, 0.0)
    assert a.status == "down" and a.scores["storage"] == 0
    assert a.reasons["storage"] == ["DatabaseClosed: closed"]
    # an optional one down (the DHT) only degrades
    a = core().assess({"storage": storage(), "dht": {"status": "stopped"}}, 0.0)
    assert a.status == "degraded" and a.scores["dht"] == 0


def test_http_errors_and_latency_count_over_the_window_then_age_out() -> None:
    c = core()
    c.assess({"gateway": gateway(100, 0, 1.0)}, 0.0)
    a = c.assess({"gateway": gateway(200, 10, 2.0)}, 10.0)  # 10% 5xx over the window
    assert a.scores["gateway"] == 30 and "10.0% of answers were 5xx" in a.reasons["gateway"]
    a = c.assess({"gateway": gateway(300, 10, 3.0)}, 20.0)  # a clean window
    assert a.scores["gateway"] == 100
    a = c.assess({"gateway": gateway(310, 10, 13.0)}, 30.0)  # 1 s a request
    assert a.scores["gateway"] == 70


def test_each_component_scores_from_its_own_signals() -> None:
    assert score("dht", {"status": "ok", "good_nodes": 0}, None, T)[0] == 20
    assert score("dht", {"status": "ok", "good_nodes": 40}, None, T)[0] == 100
    assert score("dht", {"status": "ok", "good_nodes": 40, "queries_out": 100,
                         "responses_in": 10}, {"queries_out": 0, "responses_in": 0}, T)[0] == 68
    assert score("tracker", {"announces": 100, "announce_errors": 50}, None, T)[0] == 40
    assert score("peer", {"refused": 10, "established": 10}, None, T)[0] == 75
    assert score("transcode", {"status": "ok", "ffmpeg": None}, None, T)[0] == 30
    assert score("transcode", {"status": "disabled", "ffmpeg": None}, None, T)[0] == 100
    assert score("transcode", {"status": "ok", "ffmpeg": "system", "finished":
                               {"failed": 1, "done": 1}}, None, T)[0] == 80
    assert score("storage", storage(db=0.5), None, T)[0] == 80
    assert score("nostr", nostr(2, backlog=11), None, T)[0] == 80


def test_outbox_backlog_and_failed_jobs_are_alerts() -> None:
    c = core()
    a = c.assess({"nostr": nostr(2, backlog=11),
                  "transcode": {"status": "ok", "ffmpeg": "system", "jobs": {"failed": 3}}}, 0.0)
    assert {x.name for x in a.entered} == {"outbox_backlog", "failed_jobs"}
    a = c.assess({"nostr": nostr(2, backlog=10),
                  "transcode": {"status": "ok", "ffmpeg": "system", "jobs": {"failed": 2}}}, 1.0)
    assert {x.name for x in a.left} == {"outbox_backlog", "failed_jobs"}

"""The counters' history: growth per interval, bounded, honest across resets; and its sampling on
the health service's clock."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.health.history import SERIES, History
from tgateway.metrics import Collect, Registry, counter

UP = "tgateway_uploads_total"
SERVED = "tgateway_served_bytes_total"
ANNOUNCES = "tgateway_tracker_announces_total"


def series(history: History, name: str) -> dict[str, Any]:
    return next(s for s in history.to_json()["series"] if s["name"] == name)


class HistoryTests(SynchronousTestCase):
    def test_each_point_is_what_the_counter_grew_by_since_the_one_before(self) -> None:
        h = History(interval=60, span=60 * 10)
        h.add(60, [(UP, {"result": "stored"}, 2), (SERVED, {"path": "download"}, 1000)])
        h.add(120, [(UP, {"result": "stored"}, 2), (SERVED, {"path": "download"}, 1500)])
        h.add(180, [(UP, {"result": "stored"}, 5), (SERVED, {"path": "download"}, 1500)])
        out = h.to_json()
        assert out["times"] == [60, 120, 180] and out["interval"] == 60 and out["points"] == 10
        uploads = series(h, "uploads")
        assert uploads["values"] == [2, 0, 3]  # the first point counts from 0: since start
        assert uploads["total"] == 5 and uploads["unit"] == "count"
        served = series(h, "served_bytes")
        assert served["values"] == [1000, 500, 0] and served["unit"] == "bytes"
        assert series(h, "announces")["values"] == [0, 0, 0]  # no tracker: nothing counted

    def test_parts_are_summed_per_point_and_totalled_apart(self) -> None:
        h = History(interval=60, span=60 * 10)
        h.add(60, [(SERVED, {"path": "download"}, 100), (SERVED, {"path": "peer"}, 10)])
        # webseed appears at the second point: it grew by nothing before
        h.add(120, [(SERVED, {"path": "download"}, 150), (SERVED, {"path": "peer"}, 30),
                    (SERVED, {"path": "webseed"}, 7)])
        served = series(h, "served_bytes")
        assert served["values"] == [110, 77] and served["by"] == "path"
        assert served["parts"] == {"download": 150, "peer": 30, "webseed": 7}
        assert served["total"] == 187

    def test_parts_left_out_do_not_count(self) -> None:
        h = History(interval=60, span=60 * 10)
        h.add(60, [(UP, {"result": "stored"}, 1), (UP, {"result": "duplicate"}, 1),
                   (UP, {"result": "refused"}, 9),
                   (ANNOUNCES, {"protocol": "udp", "result": "ok"}, 4),
                   (ANNOUNCES, {"protocol": "udp", "result": "error"}, 1),
                   (ANNOUNCES, {"protocol": "udp", "result": "dropped"}, 50),
                   (ANNOUNCES, {"protocol": "http", "result": "ok"}, 2),
                   ("tgateway_http_requests_total", {"site": "gateway"}, 99)])
        uploads = series(h, "uploads")
        assert uploads["values"] == [2] and uploads["parts"] == {"stored": 1, "duplicate": 1}
        announces = series(h, "announces")
        # ok and error of one protocol are one part; dropped packets are no announces
        assert announces["values"] == [7] and announces["parts"] == {"udp": 5, "http": 2}

    def test_a_counter_that_went_down_was_reset_and_grew_by_its_new_value(self) -> None:
        h = History(interval=60, span=60 * 10)
        h.add(60, [(SERVED, {"path": "peer"}, 1000)])
        h.add(120, [(SERVED, {"path": "peer"}, 300)])  # its component counted from 0 again
        h.add(180, [(SERVED, {"path": "peer"}, 400)])
        assert series(h, "served_bytes")["values"] == [1000, 300, 100]
        # gone for a point, back from 0: no negative growth either
        h.add(240, [])
        h.add(300, [(SERVED, {"path": "peer"}, 50)])
        assert series(h, "served_bytes")["values"] == [1000, 300, 100, 0, 50]

    def test_the_ring_keeps_the_last_points_only(self) -> None:
        h = History(interval=1, span=3)
        for t in range(1, 8):
            h.add(float(t), [(UP, {"result": "stored"}, t * t),
                             (SERVED, {"path": f"p{t}"}, 1)])  # a new part each time
        out = h.to_json()
        assert out["times"] == [5, 6, 7]
        assert series(h, "uploads")["values"] == [9, 11, 13]  # 25-16, 36-25, 49-36
        served = series(h, "served_bytes")
        assert served["values"] == [1, 1, 1]
        assert all(len(v) <= 3 for v in h.parts["served_bytes"].values())
        assert served["parts"]["p1"] == 0 and served["parts"]["p7"] == 1
        # the last value of a sample no longer read is forgotten
        assert len(h._last) == 2

    def test_growths_are_ints_when_whole(self) -> None:
        h = History(interval=60, span=60 * 2)
        h.add(60.5, [("tgateway_ingested_bytes_total", {}, 10.0)])
        received = series(h, "upload_bytes")
        assert received["values"] == [10] and isinstance(received["values"][0], int)
        assert received["by"] is None and received["parts"] == {"": 10}
        assert h.to_json()["times"] == [60.5]

    def test_span_over_interval_is_the_number_of_points(self) -> None:
        assert History(interval=60, span=86400).points == 1440
        assert History(interval=60, span=30).points == 1  # config checks refuse it; never 0

    def test_every_series_is_in_the_answer_before_any_point(self) -> None:
        out = History(interval=60, span=86400).to_json()
        assert [s["name"] for s in out["series"]] == [s.name for s in SERIES]
        assert out["times"] == [] and all(s["values"] == [] and s["total"] == 0
                                          for s in out["series"])


class SamplingTests(SynchronousTestCase):
    """The health service samples the registry (every component's collectors) on its clock."""

    def health(self, registry: CollectorRegistry, clock: Clock, points: int = 3) -> Any:
        from tgateway.health.core import HealthCore, Thresholds
        from tgateway.health.service import Health

        return Health(components=[], clock=clock, core=HealthCore(Thresholds(), window=15),
                      auth=None,  # type: ignore[arg-type]  (no route is called here)
                      registry=registry, history=History(interval=60, span=60 * points))

    def test_the_registry_is_read_every_interval_into_a_bounded_ring(self) -> None:
        from tgateway.health.service import _Every

        counts = {"stored": 0}
        registry = Registry()
        registry.register(Collect(lambda: [counter("tgateway_uploads", "uploads", ("result",),
                                                   {(k,): v for k, v in counts.items()})]))
        clock = Clock()
        health = self.health(registry, clock)
        every = _Every(health.sample, 60, clock)
        every.startService()
        try:
            assert health.history.to_json()["times"] == []  # the first one an interval after
            for n in (1, 3, 3, 10):
                counts["stored"] = n
                clock.advance(60)
            out = health.history.to_json()
            assert out["times"] == [120, 180, 240]
            assert series(health.history, "uploads")["values"] == [2, 0, 7]
        finally:
            every.stopService()
        assert not clock.getDelayedCalls()

    def test_a_failing_collector_costs_a_point_and_a_log_line_not_the_loop(self) -> None:
        def broken() -> Any:
            raise RuntimeError("no")

        registry = Registry()
        registry.register(Collect(broken))
        clock = Clock()
        health = self.health(registry, clock)
        health.sample()
        assert health.history.to_json()["times"] == []
        assert len(self.flushLoggedErrors(RuntimeError)) == 1

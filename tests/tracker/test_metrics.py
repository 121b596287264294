"""The tracker's counts by protocol and result, as /metrics and /api/health read them."""

from __future__ import annotations

import dataclasses
import random
import struct

from prometheus_client import generate_latest
from twisted.internet.task import Clock

from tgateway.config import TrackerConfig
from tgateway.metrics import Collect, Registry
from tgateway.tracker.service import build_tracker


def test_announces_and_scrapes_are_counted_by_protocol_and_result() -> None:
    clock = Clock()
    clock.advance(1000)
    config = dataclasses.replace(TrackerConfig(), host="127.0.0.1", udp_port=1, http_port=0,
                                 deny_list=("ff" * 20,))
    tracker = build_tracker(config, "http://127.0.0.1:1", clock, random.Random(1))
    udp = tracker.udp
    assert udp is not None
    reply = udp.handle(struct.pack(">QII", 0x41727101980, 0, 1), "127.0.0.1", 6881)
    assert reply is not None
    cid = reply[8:16]

    def announce(conn: bytes, info_hash: bytes) -> bytes | None:
        return udp.handle(struct.pack(">8sII20s20sQQQIIIiH", conn, 1, 7, info_hash, b"p" * 20,
                                      0, 0, 0, 0, 0, 0, 50, 6881), "127.0.0.1", 6881)

    announce(cid, b"a" * 20)
    announce(cid, b"b" * 20)
    announce(b"\0" * 8, b"a" * 20)  # a connection id we never gave
    announce(cid, b"\xff" * 20)  # denied
    udp.handle(b"garbage", "127.0.0.1", 6881)
    tracker.http.announce(b"info_hash=" + b"%61" * 20 + b"&peer_id=" + b"q" * 20 + b"&port=1&left=0",
                          "127.0.0.1")
    tracker.http.announce(b"nonsense", "127.0.0.1")
    tracker.http.scrape(b"info_hash=" + b"%61" * 20)
    assert tracker.requests() == {
        ("http", "announce", "ok"): 1, ("http", "announce", "error"): 1,
        ("http", "scrape", "ok"): 1,
        ("udp", "connect", "ok"): 1, ("udp", "announce", "ok"): 2, ("udp", "announce", "error"): 2,
        ("udp", "scrape", "ok"): 0, ("udp", "scrape", "error"): 0,
        ("udp", "other", "error"): 1, ("udp", "other", "dropped"): 0,
    }
    status = tracker.status()
    assert (status["announces"], status["announce_errors"]) == (6, 3)
    assert (status["swarms"], status["peers"]) == (2, 3)  # the HTTP peer joined swarm "a"
    registry = Registry()
    registry.register(Collect(tracker.families))
    text = generate_latest(registry).decode()
    assert 'tgateway_tracker_announces_total{protocol="udp",result="ok"} 2.0' in text
    assert 'tgateway_tracker_announces_total{protocol="http",result="error"} 1.0' in text
    assert 'tgateway_tracker_scrapes_total{protocol="http",result="ok"} 1.0' in text
    assert "tgateway_tracker_peers 3.0" in text

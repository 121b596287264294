"""The thin adapters in memory: UDP protocol, HTTP handler, dedicated-port HTTP protocol,
twisted.web resource, WebSocket message logic, and the service builder."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import socket
import struct
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_from_bytes, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.slowreader import QueueingTransport
from tgateway import bencode
from tgateway.config import Config, TrackerConfig, load_config, parse_config
from tgateway.metainfo import build_info
from tgateway.storage.model import StoredFile
from tgateway.tap import makeService
from tgateway.tracker.core import ConnectionIds, SwarmStore, WsSession
from tgateway.tracker.http import HttpTracker, TrackerHTTPFactory, TrackerResource
from tgateway.tracker.memory import MemorySwarmStore
from tgateway.tracker.service import build_tracker
from tgateway.tracker.udp import UdpTracker
from tgateway.tracker.ws import WsTracker

IH = bytes(range(20))


def pid(n: int) -> bytes:
    return b"-TG0001-%012d" % n


def q(b: bytes) -> str:
    return quote_from_bytes(b)


def make_store(**kw: Any) -> MemorySwarmStore:
    return MemorySwarmStore(random.Random(2), interval=1800, grace=300, **kw)


class FakeUdpTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


class UdpAdapterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = make_store()
        self.udp = UdpTracker(self.store, ConnectionIds(random.Random(1).randbytes, 1000), self.clock,
                              interval=1800, default_numwant=50, max_numwant=100)
        self.transport = FakeUdpTransport()
        self.udp.transport = self.transport  # type: ignore[assignment]

    def roundtrip(self, data: bytes, addr: Any = ("127.0.0.1", 4000)) -> bytes:
        self.udp.datagramReceived(data, addr)
        reply, to = self.transport.sent.pop()
        self.assertEqual(to, addr)
        return reply

    def connect(self, addr: Any = ("127.0.0.1", 4000)) -> int:
        reply = self.roundtrip(struct.pack(">QII", 0x41727101980, 0, 7), addr)
        action, tid, cid = struct.unpack(">IIQ", reply)
        self.assertEqual((action, tid), (0, 7))
        return int(cid)

    def announce(self, cid: int, n: int, left: int, addr: Any = ("127.0.0.1", 4000), port: int = 0,
                 numwant: int = -1, event: int = 2) -> bytes:
        pkt = struct.pack(">QII20s20sQQQIIIiH", cid, 1, 9, IH, pid(n), 0, left, 0, event, 0, 0, numwant,
                          port or 6000 + n)
        return self.roundtrip(pkt, addr)

    def test_connect_announce_scrape(self) -> None:
        cid = self.connect()
        reply = self.announce(cid, 1, 0)
        self.assertEqual(struct.unpack(">IIIII", reply), (1, 9, 1800, 0, 1))
        cid2 = self.connect(("127.0.0.2", 4001))
        reply = self.announce(cid2, 2, 50, ("127.0.0.2", 4001))
        self.assertEqual(struct.unpack(">IIIII", reply[:20]), (1, 9, 1800, 1, 1))
        self.assertEqual(reply[20:], bytes([127, 0, 0, 1]) + (6001).to_bytes(2, "big"))
        reply = self.roundtrip(struct.pack(">QII", cid, 2, 11) + IH + b"\x00" * 20)
        self.assertEqual(struct.unpack(">IIIIIIII", reply), (2, 11, 1, 0, 1, 0, 0, 0))

    def test_connection_id_bound_to_address_and_time(self) -> None:
        cid = self.connect()
        reply = self.announce(cid, 1, 0, ("127.0.0.9", 4000))
        self.assertEqual(struct.unpack(">II", reply[:8]), (3, 9))
        self.clock.advance(121)
        reply = self.announce(cid, 1, 0)
        self.assertEqual(struct.unpack(">II", reply[:8]), (3, 9))
        self.assertEqual(self.store.peer_count(), 0)

    def test_ipv6_client_gets_18_byte_peers(self) -> None:
        v6 = ("2001:db8::1", 5000, 0, 0)
        cid6 = self.connect(v6)
        self.announce(cid6, 1, 0, v6)
        mapped = ("::ffff:10.0.0.1", 5001, 0, 0)  # dual-stack socket: counts as IPv4
        cidm = self.connect(mapped)
        self.announce(cidm, 2, 0, mapped)
        cid = self.connect(("2001:db8::2", 5002, 0, 0))
        reply = self.announce(cid, 3, 10, ("2001:db8::2", 5002, 0, 0))
        self.assertEqual(struct.unpack(">IIIII", reply[:20]), (1, 9, 1800, 1, 2))
        self.assertEqual(len(reply) - 20, 18)
        self.assertEqual(reply[20:36], bytes.fromhex("20010db8000000000000000000000001"))
        cid4 = self.connect(("10.0.0.3", 5003))
        reply = self.announce(cid4, 4, 10, ("10.0.0.3", 5003))
        self.assertEqual(reply[20:], bytes([10, 0, 0, 1]) + (6002).to_bytes(2, "big"))

    def test_port_zero_and_numwant(self) -> None:
        cid = self.connect()
        for n in range(1, 150):
            self.announce(cid, n, 0, numwant=0)
        reply = self.announce(cid, 500, 10, numwant=1000)
        self.assertEqual(len(reply) - 20, 6 * 100)  # clamped to max_numwant
        reply = self.announce(cid, 500, 10, numwant=-1)
        self.assertEqual(len(reply) - 20, 6 * 50)  # -1: the default
        pkt = struct.pack(">QII20s20sQQQIIIiH", cid, 1, 9, IH, pid(5), 0, 0, 0, 2, 0, 0, -1, 0)
        reply = self.roundtrip(pkt)
        self.assertEqual(reply[:8], struct.pack(">II", 3, 9))
        self.assertIn(b"port", reply)

    def test_errors_and_silence(self) -> None:
        self.udp.datagramReceived(b"short", ("127.0.0.1", 1))
        self.assertEqual(self.transport.sent, [])
        reply = self.roundtrip(struct.pack(">QII", 1, 9, 33))
        self.assertEqual(reply[:8], struct.pack(">II", 3, 33))

    @given(st.binary(max_size=120))
    @settings(max_examples=300)
    def test_garbage_never_escapes(self, data: bytes) -> None:
        self.udp.datagramReceived(data, ("127.0.0.1", 4000))
        self.udp.datagramReceived(data[:8] + struct.pack(">I", 1) + data[8:], ("127.0.0.1", 4000))
        self.transport.sent.clear()
        self.flushLoggedErrors()
        self.assertEqual(self.flushLoggedErrors(), [])


def http_tracker(store: SwarmStore, clock: Any, **kw: Any) -> HttpTracker:
    kw.setdefault("interval", 1800)
    kw.setdefault("min_interval", 900)
    kw.setdefault("default_numwant", 50)
    kw.setdefault("max_numwant", 100)
    return HttpTracker(store, clock, **kw)


def announce_qs(n: int, left: int = 0, extra: str = "") -> bytes:
    return (f"info_hash={q(IH)}&peer_id={q(pid(n))}&port={6000 + n}&uploaded=0&downloaded=0"
            f"&left={left}{extra}").encode()


class HttpTrackerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = make_store()
        self.http = http_tracker(self.store, self.clock)

    def test_compact_and_dict_models(self) -> None:
        self.http.announce(announce_qs(1), "10.0.0.1")
        self.http.announce(announce_qs(2), "2001:db8::2")
        r = bencode.decode(self.http.announce(announce_qs(3, 5), "10.0.0.3"))
        self.assertEqual((r[b"complete"], r[b"incomplete"], r[b"interval"], r[b"min interval"]), (2, 1, 1800, 900))
        self.assertEqual(r[b"peers"], bytes([10, 0, 0, 1]) + (6001).to_bytes(2, "big"))
        self.assertEqual(len(r[b"peers6"]), 18)
        r = bencode.decode(self.http.announce(announce_qs(3, 5, "&compact=0"), "10.0.0.3"))
        self.assertCountEqual(r[b"peers"], [
            {b"ip": b"10.0.0.1", b"port": 6001, b"peer id": pid(1)},
            {b"ip": b"2001:db8::2", b"port": 6002, b"peer id": pid(2)},
        ])
        r = bencode.decode(self.http.announce(announce_qs(3, 5, "&compact=0&no_peer_id=1"), "10.0.0.3"))
        self.assertNotIn(b"peer id", r[b"peers"][0])

    def test_numwant_clamped(self) -> None:
        for n in range(1, 150):
            self.http.announce(announce_qs(n, 0, "&numwant=0"), "10.0.0.1")
        r = bencode.decode(self.http.announce(announce_qs(500, 5, "&numwant=1000"), "10.0.0.2"))
        self.assertEqual(len(r[b"peers"]), 600)
        r = bencode.decode(self.http.announce(announce_qs(500, 5), "10.0.0.2"))
        self.assertEqual(len(r[b"peers"]), 300)

    def test_full_swarm_warns(self) -> None:
        http = http_tracker(make_store(max_peers_per_torrent=2), self.clock)
        self.assertNotIn(b"warning", http.announce(announce_qs(1), "10.0.0.1"))
        http.announce(announce_qs(2), "10.0.0.1")
        r = bencode.decode(http.announce(announce_qs(3, 5), "10.0.0.1"))
        self.assertIn(b"full", r[b"warning message"])
        self.assertEqual(len(r[b"peers"]), 12)

    def test_failures(self) -> None:
        r = bencode.decode(self.http.announce(b"info_hash=x", "10.0.0.1"))
        self.assertIn(b"info_hash", r[b"failure reason"])
        r = bencode.decode(self.http.scrape(b""))
        self.assertIn(b"full scrape", r[b"failure reason"])

    def test_scrape(self) -> None:
        self.http.announce(announce_qs(1), "10.0.0.1")
        r = bencode.decode(self.http.scrape(f"info_hash={q(IH)}&info_hash={q(b'z' * 20)}".encode()))
        self.assertEqual(r[b"files"], {
            IH: {b"complete": 1, b"downloaded": 0, b"incomplete": 0},
            b"z" * 20: {b"complete": 0, b"downloaded": 0, b"incomplete": 0},
        })
        full = http_tracker(self.store, self.clock, full_scrape=True)
        self.assertIn(IH, bencode.decode(full.scrape(b""))[b"files"])

    def test_forwarded_for_only_from_trusted_proxies(self) -> None:
        http = http_tracker(self.store, self.clock, trusted_proxies=["10.9.0.0/16"])
        http.announce(announce_qs(1), "10.0.0.1", b"1.1.1.1")  # not a proxy: ignored
        http.announce(announce_qs(2), "10.9.0.5", b"8.8.8.8, 10.9.0.7")
        http.announce(announce_qs(3, 0, "&ip=9.9.9.9"), "10.9.0.5")
        r = bencode.decode(http.announce(announce_qs(4, 5, "&ip=7.7.7.7"), "10.0.0.4"))
        peers = {r[b"peers"][i:i + 6] for i in range(0, len(r[b"peers"]), 6)}
        self.assertEqual(peers, {
            bytes([10, 0, 0, 1]) + (6001).to_bytes(2, "big"),
            bytes([8, 8, 8, 8]) + (6002).to_bytes(2, "big"),
            bytes([9, 9, 9, 9]) + (6003).to_bytes(2, "big"),
        })

    @given(st.binary(max_size=200))
    @settings(max_examples=200)
    def test_garbage(self, qs: bytes) -> None:
        for path in (b"/announce", b"/scrape"):
            body = self.http.handle(path, qs, "10.0.0.1", None)
            assert body is not None
            bencode.decode(body)


class DedicatedPortTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = make_store()
        self.factory = TrackerHTTPFactory(http_tracker(self.store, self.clock), self.clock)
        self.proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 5555))
        self.proto.makeConnection(self.transport)

    def test_keep_alive_pipelined(self) -> None:
        req = b"GET /announce?" + announce_qs(1) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        scrape = b"GET /scrape?info_hash=" + q(IH).encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        data = req + scrape
        for i in range(0, len(data), 7):  # arrives in pieces
            self.proto.dataReceived(data[i:i + 7])
        out = self.transport.value()
        self.assertEqual(out.count(b"HTTP/1.1 200 OK\r\n"), 2)
        self.assertFalse(self.transport.disconnecting)
        first_body = out.split(b"\r\n\r\n", 1)[1]
        self.assertTrue(first_body.startswith(b"d8:complete"))
        self.assertIn(b"5:filesd20:", out)

    def test_close_errors_and_timeout(self) -> None:
        self.proto.dataReceived(b"GET /nothing HTTP/1.0\r\n\r\n")
        self.assertIn(b"404", self.transport.value())
        self.assertTrue(self.transport.disconnecting)
        t = StringTransport()
        p = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        p.makeConnection(t)
        p.dataReceived(b"POST /announce HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        self.assertIn(b"400", t.value())
        t = StringTransport()
        p = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        p.makeConnection(t)
        p.dataReceived(b"x" * 9000)
        self.assertIn(b"431", t.value())
        t = StringTransport()
        p = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        p.makeConnection(t)
        self.clock.advance(121)
        self.assertTrue(t.disconnecting)
        p.connectionLost(None)

    @given(st.binary(max_size=300))
    @settings(max_examples=200)
    def test_garbage(self, data: bytes) -> None:
        t = StringTransport()
        p = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        p.makeConnection(t)
        p.dataReceived(data)
        p.dataReceived(b"\r\n\r\n")
        p.connectionLost(None)
        self.assertEqual(self.flushLoggedErrors(), [])


class ResourceTests(SynchronousTestCase):
    def test_announce_and_scrape_on_the_gateway_site(self) -> None:
        store = make_store()
        resource = TrackerResource(http_tracker(store, Clock()))
        req = DummyRequest([b"announce"])
        req.uri = b"/announce?" + announce_qs(1)
        req.client = IPv4Address("TCP", "10.0.0.1", 1234)
        body = resource.render(req)
        self.assertEqual(bencode.decode(body)[b"complete"], 1)
        req = DummyRequest([b"scrape"])
        req.uri = b"/scrape?info_hash=" + q(IH).encode()
        req.client = IPv4Address("TCP", "10.0.0.1", 1234)
        self.assertEqual(bencode.decode(resource.render(req))[b"files"][IH][b"complete"], 1)


class FakeHandle:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_json(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload.decode("utf-8")))


IHS = IH.decode("latin-1")


class WsTrackerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store()
        self.ws = WsTracker(self.store, Clock(), interval=120)

    def session(self) -> tuple[WsSession, FakeHandle]:
        h = FakeHandle()
        return WsSession(h), h

    def send(self, session: WsSession, **msg: Any) -> None:
        self.ws.on_message(session, json.dumps(msg).encode())

    def test_offer_answer_relay(self) -> None:
        a, ha = self.session()
        b, hb = self.session()
        self.send(a, action="announce", info_hash=IHS, peer_id="A" * 20, left=10, event="started",
                  offers=[{"offer": {"type": "offer", "sdp": "sa"}, "offer_id": "\xf1" * 20}])
        self.assertEqual(ha.sent, [{"action": "announce", "interval": 120, "info_hash": IHS, "complete": 0, "incomplete": 1}])
        self.send(b, action="announce", info_hash=IHS, peer_id="B" * 20, left=0, event="started",
                  offers=[{"offer": {"type": "offer", "sdp": "sb"}, "offer_id": "\xf2" * 20}])
        self.assertEqual(hb.sent[0]["complete"], 1)
        self.assertEqual(ha.sent[1], {"action": "announce", "offer": {"type": "offer", "sdp": "sb"},
                                      "offer_id": "\xf2" * 20, "peer_id": "B" * 20, "info_hash": IHS})
        self.send(a, action="announce", info_hash=IHS, peer_id="A" * 20, to_peer_id="B" * 20,
                  offer_id="\xf2" * 20, answer={"type": "answer", "sdp": "ans"})
        self.assertEqual(len(ha.sent), 2)  # no reply to an answer
        self.assertEqual(hb.sent[1], {"action": "announce", "answer": {"type": "answer", "sdp": "ans"},
                                      "offer_id": "\xf2" * 20, "peer_id": "A" * 20, "info_hash": IHS})
        # a forged answer from a socket that never got the offer is dropped
        c, hc = self.session()
        self.send(c, action="announce", info_hash=IHS, peer_id="C" * 20, to_peer_id="B" * 20,
                  offer_id="\xf2" * 20, answer={"type": "answer", "sdp": "evil"})
        self.assertEqual(len(hb.sent), 2)

    def test_scrape_errors_and_close(self) -> None:
        a, ha = self.session()
        self.send(a, action="announce", info_hash=IHS, peer_id="A" * 20, left=0)
        self.send(a, action="scrape", info_hash=[IHS])
        self.assertEqual(ha.sent[-1]["files"], {IHS: {"complete": 1, "incomplete": 0, "downloaded": 0}})
        self.ws.on_message(a, b"{nope")
        self.assertIn("failure reason", ha.sent[-1])
        self.ws.on_close(a)
        self.assertEqual(self.store.scrape([IH]), [(0, 0, 0)])
        denied = WsTracker(make_store(deny_list=[IH]), Clock(), interval=120)
        b, hb = self.session()
        denied.on_message(b, json.dumps({"action": "announce", "info_hash": IHS, "peer_id": "B" * 20}).encode())
        self.assertEqual(hb.sent[0]["info_hash"], IHS)
        self.assertIn("not allowed", hb.sent[0]["failure reason"])


class ServiceTests(SynchronousTestCase):
    def test_build_with_every_front_end(self) -> None:
        reactor = MemoryReactorClock()
        config = TrackerConfig(udp_port=16969, http_port=16970, host="127.0.0.1")
        tracker = build_tracker(config, "http://gw.example:9877", reactor, random.Random(1), lambda ih: True)
        names = sorted(s.name for s in tracker.services)
        self.assertEqual(names, ["tracker-expiry", "tracker-http", "tracker-udp"])
        self.assertEqual(tracker.announce_urls(), [
            "http://gw.example:16970/announce", "http://gw.example:9877/announce",
            "udp://gw.example:16969/announce", "ws://gw.example:9877/announce"])
        tracker.add_local_peer(IH, "192.168.1.2", 6881)
        self.assertEqual(tracker.store.scrape([IH]), [(1, 0, 0)])
        tracker.remove_local_peer(IH, "192.168.1.2", 6881)
        self.assertEqual(tracker.store.scrape([IH]), [(0, 0, 0)])
        self.assertEqual(tracker.status(), {"status": "ok", "announces": 0, "announce_errors": 0,
                                            "peers": 0, "swarms": 0, "ws_connections": 0,
                                            "ws_offers_dropped": 0, "ws_dropped_slow": 0})

    def test_minimal_and_gateway_only(self) -> None:
        reactor = MemoryReactorClock()
        config = TrackerConfig(udp_port=0, http_port=0, mode="gateway-only", deny_list=("00" * 20,))
        tracker = build_tracker(config, "https://gw.example/", reactor, random.Random(1), lambda ih: ih == IH)
        self.assertEqual([s.name for s in tracker.services], ["tracker-expiry"])
        self.assertEqual(tracker.announce_urls(), ["https://gw.example/announce", "wss://gw.example/announce"])
        body = tracker.http.announce(announce_qs(1), "10.0.0.1")
        self.assertEqual(bencode.decode(body)[b"complete"], 1)
        other = announce_qs(1).replace(q(IH).encode(), q(b"x" * 20).encode())
        self.assertIn(b"failure reason", tracker.http.announce(other, "10.0.0.1"))

    def test_expiry_timer(self) -> None:
        reactor = MemoryReactorClock()
        config = TrackerConfig(udp_port=0, announce_interval=100, min_interval=50, peer_grace=10)
        tracker = build_tracker(config, "http://gw", reactor, random.Random(1))
        tracker.services.startService()
        tracker.http.announce(announce_qs(1), "10.0.0.1")
        self.assertEqual(tracker.store.peer_count(), 1)
        for _ in range(13):
            reactor.advance(10)
        self.assertEqual(tracker.store.peer_count(), 0)
        tracker.services.stopService()


def ws_frame(payload: bytes, opcode: int = 0x1, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


HANDSHAKE = (b"GET /announce HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class TcpLikeTransport(StringTransport):
    """Like tcp.Connection, unregistering without a producer is allowed (autobahn does it).
    ``writes`` counts the calls to ``write``."""

    writes = 0

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def read_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked frames the server wrote."""
    frames = []
    while data:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        head = 2
        if n == 126:
            n, head = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[2:10], "big"), 10
        frames.append((opcode, data[head:head + n]))
        data = data[head + n:]
    return frames


class _WsConnections(SynchronousTestCase):
    """WebSocket connections to one tracker, over the dedicated port's HTTP handoff."""

    def setUp(self) -> None:
        from tgateway.tracker.ws import WsTrackerFactory

        self.clock = clock = Clock()
        store = make_store()
        ws_factory = WsTrackerFactory(WsTracker(store, clock, interval=120))
        self.factory = TrackerHTTPFactory(http_tracker(store, clock), clock, ws_factory)

    def connect(self) -> tuple[Any, TcpLikeTransport]:
        factory = self.factory
        transport = TcpLikeTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
        http = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        http.makeConnection(transport)
        http.dataReceived(HANDSHAKE)
        self.assertIn(b"101 Switching Protocols", transport.value())
        transport.clear()
        transport.writes = 0
        proto = transport.protocol
        self.assertIsNot(proto, http)
        # autobahn's timers (handshake timeout, auto-ping) live on the global reactor: the
        # connection's end cancels them.
        self.addCleanup(proto.connectionLost, Failure(ConnectionDone()))
        return proto, transport

    def announce_frame(self, peer_id: str, offers: int = 0, info_hash: str = IHS) -> bytes:
        msg: dict[str, Any] = {"action": "announce", "info_hash": info_hash, "peer_id": peer_id,
                               "left": 10, "event": "started"}
        if offers:
            msg["offers"] = [{"offer": {"type": "offer", "sdp": f"sdp {n}"}, "offer_id": f"{n:020d}"}
                             for n in range(offers)]
        return ws_frame(json.dumps(msg, ensure_ascii=False).encode())


class WsProtocolTests(_WsConnections):
    """The autobahn protocol with the fast frame parser and the per-turn writes."""

    def test_announce_over_frames_split_anywhere(self) -> None:
        proto, transport = self.connect()
        msg = json.dumps({"action": "announce", "info_hash": IHS, "peer_id": "A" * 20, "left": 0,
                          "offers": []}).encode()
        data = ws_frame(msg) + ws_frame(msg)
        for i in range(0, len(data), 5):
            proto.dataReceived(data[i:i + 5])
        self.assertEqual(transport.value(), b"")  # replies wait for the end of the reactor turn
        self.clock.advance(0)
        out = transport.value()
        self.assertEqual(out.count(b'"action":"announce"'), 2)
        self.assertEqual(out[0], 0x81)
        # a ping (control frame) goes to autobahn, which pongs; then the fast path resumes
        transport.clear()
        proto.dataReceived(ws_frame(b"hi", opcode=0x9) + ws_frame(msg))
        self.clock.advance(0)
        out = transport.value()
        self.assertTrue(out.startswith(b"\x8a\x02hi"))
        self.assertIn(b'"complete":1', out)

    def test_what_a_turn_queues_for_a_socket_goes_out_in_one_write(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(b"".join(self.announce_frame("A" * 20) for _ in range(3)))
        self.assertEqual((transport.value(), transport.writes), (b"", 0))
        self.clock.advance(0)
        self.assertEqual(transport.writes, 1)
        frames = read_frames(transport.value())
        self.assertEqual([op for op, _ in frames], [1, 1, 1])
        self.assertEqual([json.loads(p)["incomplete"] for _, p in frames], [1, 1, 1])
        # nothing left for the next turn; a connection that is gone gets nothing written
        self.clock.advance(0)
        self.assertEqual(transport.writes, 1)
        proto.dataReceived(self.announce_frame("A" * 20))
        proto.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(0)
        self.assertEqual(transport.writes, 1)

    def test_a_big_turn_is_written_before_it_ends(self) -> None:
        from tgateway.tracker.ws import FLUSH_SIZE

        proto, transport = self.connect()
        scrape = ws_frame(json.dumps({"action": "scrape", "info_hash": [IHS] * 20}).encode())
        reply = 0
        while transport.writes == 0:
            proto.dataReceived(scrape)
            reply += 1
        self.assertGreater(len(transport.value()), FLUSH_SIZE)
        self.assertLess(len(transport.value()), FLUSH_SIZE + 2048)
        self.assertEqual(len(read_frames(transport.value())), reply)

    def test_binary_strings_and_offers_reach_the_other_peer_unchanged(self) -> None:
        """Every latin-1 code point in info_hash, peer_id and offer_id, and the offer object as
        the client wrote it, arrive at the other peer as the same characters (JSON text in a
        text frame: UTF-8, as bittorrent-tracker writes it)."""
        a, ta = self.connect()
        b, tb = self.connect()
        for start in range(0, 256, 20):
            text = "".join(chr((start + i) % 256) for i in range(20))
            b.dataReceived(self.announce_frame("B" * 20, info_hash=text))
            offer = b'{"type": "offer",  "sdp": "v=0\\r\\n\xc3\xa9"}'
            msg = (b'{"action":"announce","info_hash":%b,"peer_id":%b,"offers":[{"offer":%b,"offer_id":%b}]}'
                   % (json.dumps(text).encode(), json.dumps(text, ensure_ascii=False).encode(), offer,
                      json.dumps(text).encode()))
            a.dataReceived(ws_frame(msg))
            self.clock.advance(0)
            (opcode, payload), = read_frames(tb.value())[-1:]
            self.assertEqual(opcode, 1)
            self.assertIn(b'"offer":' + offer + b',', payload)  # verbatim
            got = json.loads(payload.decode("utf-8"))
            self.assertEqual((got["info_hash"], got["peer_id"], got["offer_id"]), (text, text, text))
            self.assertEqual(got["offer"], {"type": "offer", "sdp": "v=0\r\n\u00e9"})
            tb.clear()

    @given(st.binary(max_size=200))
    @settings(max_examples=150)
    def test_garbage_frames_never_escape(self, data: bytes) -> None:
        proto, transport = self.connect()
        proto.dataReceived(data)
        proto.dataReceived(ws_frame(data))
        proto.dataReceived(ws_frame(b'{"action":"announce"' + data))
        self.assertEqual(self.flushLoggedErrors(), [])


class AutobahnContractTests(_WsConnections):
    """What the tracker's WebSocket protocol relies on in autobahn besides its public API.
    If an autobahn release changes one of these, these tests fail (and the fast paths in
    tgateway/tracker/ws.py need a look):

    * ``state`` and ``STATE_OPEN``; ``data`` (the bytes autobahn's parser holds) and
      ``current_frame`` (None between frames), read to decide whether a read may skip
      autobahn's parser;
    * ``sendData`` is the one way autobahn writes (handshake reply, pong, close), so messages
      queued by ``send_json`` can be written before anything autobahn writes;
    * ``dropConnection(abort=True)`` and ``wasNotCleanReason``.
    """

    def test_parser_state_between_frames(self) -> None:
        from autobahn.twisted.websocket import WebSocketServerProtocol

        proto, transport = self.connect()
        self.assertEqual(proto.state, WebSocketServerProtocol.STATE_OPEN)
        self.assertEqual((proto.data, proto.current_frame), (b"", None))
        # half a ping: autobahn's parser holds it, so the next text frame waits behind it
        ping = ws_frame(b"hello", opcode=0x9)
        proto.dataReceived(ping[:8])
        self.assertTrue(proto.data or proto.current_frame is not None)
        proto.dataReceived(ping[8:] + self.announce_frame("A" * 20))
        self.clock.advance(0)
        self.assertEqual([op for op, _ in read_frames(transport.value())], [0xA, 1])
        self.assertEqual((proto.data, proto.current_frame), (b"", None))

    def test_autobahn_writes_come_after_queued_messages(self) -> None:
        proto, transport = self.connect()
        # an announce (its reply is queued), a ping, another announce, then a close
        proto.dataReceived(self.announce_frame("A" * 20) + ws_frame(b"p", opcode=0x9)
                           + self.announce_frame("A" * 20) + ws_frame(b"\x03\xe8", opcode=0x8))
        self.clock.advance(0)
        self.assertEqual([op for op, _ in read_frames(transport.value())], [1, 0xA, 1, 0x8])

    def test_drop_connection(self) -> None:
        proto, transport = self.connect()
        proto.wasNotCleanReason = "test"
        proto.dropConnection(abort=True)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(proto.wasNotCleanReason, "test")
        proto.outbox.send_json(b"{}")  # closed: nothing is queued or written
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")


class _Ready:
    """Stands in for the factory's InputWatch: says input is waiting while ``waiting``."""

    def __init__(self, waiting: bool) -> None:
        self.waiting = waiting
        self.asked = 0

    def watch(self, transport: Any) -> None:
        pass

    def unwatch(self, transport: Any) -> None:
        pass

    def ready(self) -> bool:
        self.asked += 1
        return self.waiting


def turn(clock: Clock) -> None:
    """One reactor turn: run the calls due now, not those they schedule (``Clock.advance(0)``
    also runs a ``callLater(0)`` made while it runs; the reactor leaves it for the next turn)."""
    due = [c for c in clock.calls if c.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


class WsWriteDelayTests(_WsConnections):
    """Under load (other sockets have input waiting) what a turn queued waits for the next turns,
    so that one ``send`` carries the messages of many announces; at most FLUSH_DELAY seconds and
    FLUSH_TURNS turns. An idle tracker writes at the end of the turn."""

    def test_idle_writes_at_the_end_of_the_turn(self) -> None:
        ready = self.factory.ws_factory.input = _Ready(False)
        proto, transport = self.connect()
        proto.dataReceived(self.announce_frame("A" * 20))
        turn(self.clock)
        self.assertEqual(transport.writes, 1)
        self.assertEqual(ready.asked, 1)

    def test_waits_while_input_is_ready_then_writes_everything_in_one_send(self) -> None:
        ready = self.factory.ws_factory.input = _Ready(True)
        proto, transport = self.connect()
        for _ in range(3):
            proto.dataReceived(self.announce_frame("A" * 20))
            turn(self.clock)  # one turn each: the reply waits
        self.assertEqual(transport.writes, 0)
        ready.waiting = False  # nothing more to read: written at the end of this turn
        turn(self.clock)
        self.assertEqual(transport.writes, 1)
        self.assertEqual(len(read_frames(transport.value())), 3)

    def test_waits_at_most_flush_delay(self) -> None:
        from tgateway.tracker.ws import FLUSH_DELAY

        self.factory.ws_factory.input = _Ready(True)
        proto, transport = self.connect()
        proto.dataReceived(self.announce_frame("A" * 20))
        turn(self.clock)
        self.clock.rightNow += FLUSH_DELAY * 0.9  # a busy turn
        turn(self.clock)
        self.assertEqual(transport.writes, 0)
        self.clock.rightNow += FLUSH_DELAY * 0.1
        turn(self.clock)
        self.assertEqual(transport.writes, 1)

    def test_waits_at_most_flush_turns(self) -> None:
        """Whatever the clock says (a clock that does not move must not hold replies back)."""
        from tgateway.tracker.ws import FLUSH_TURNS

        self.factory.ws_factory.input = _Ready(True)
        proto, transport = self.connect()
        proto.dataReceived(self.announce_frame("A" * 20))
        for _ in range(FLUSH_TURNS):
            turn(self.clock)
        self.assertEqual(transport.writes, 0)
        turn(self.clock)
        self.assertEqual(transport.writes, 1)

    def test_a_big_turn_is_still_written_at_once(self) -> None:
        from tgateway.tracker.ws import FLUSH_SIZE

        self.factory.ws_factory.input = _Ready(True)
        proto, transport = self.connect()
        scrape = ws_frame(json.dumps({"action": "scrape", "info_hash": [IHS] * 20}).encode())
        while transport.writes == 0:
            proto.dataReceived(scrape)
        self.assertLess(len(transport.value()), FLUSH_SIZE + 2048)


class InputWatchTests(SynchronousTestCase):
    """The epoll set of WebSocket sockets, over real sockets."""

    def connection(self) -> tuple[Any, socket.socket]:
        from twisted.internet import tcp
        from twisted.internet.protocol import Protocol, ServerFactory

        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        port = tcp.Port(0, ServerFactory(), reactor=MemoryReactorClock())
        conn = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), port, 1, MemoryReactorClock())
        self.addCleanup(ours.close)
        return conn, theirs

    def test_ready_when_a_watched_socket_has_input(self) -> None:
        from tgateway.tracker.ws import InputWatch

        watch = InputWatch()
        self.assertFalse(watch.ready())  # nothing watched
        a, a_peer = self.connection()
        b, b_peer = self.connection()
        watch.watch(a)
        watch.watch(b)
        watch.watch(a)  # twice is once
        self.assertFalse(watch.ready())
        b_peer.send(b"x")
        self.assertTrue(watch.ready())
        watch.unwatch(b)  # a congested socket is not read: its input does not count
        self.assertFalse(watch.ready())
        watch.unwatch(b)
        watch.watch(b)
        self.assertTrue(watch.ready())
        b.socket.recv(10)
        self.assertFalse(watch.ready())
        # a socket closed before it is unwatched (the kernel takes it out of the set)
        a_peer.send(b"y")
        a.socket.close()
        watch.unwatch(a)
        self.assertFalse(watch.ready())

    def test_only_plain_tcp_is_watched(self) -> None:
        from tgateway.tracker.ws import InputWatch

        watch = InputWatch()
        watch.watch(StringTransport())
        self.assertFalse(watch.ready())


class WsSlowReaderTests(SynchronousTestCase):
    """Sockets that stop reading, over transports that queue like TCP: on the dedicated port and
    on the gateway's twisted.web Site (where autobahn takes the transport from the HTTP channel)."""

    def setUp(self) -> None:
        from autobahn.twisted.resource import WebSocketResource
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        from tgateway.tracker.ws import WsTrackerFactory

        self.clock = Clock()
        self.store = make_store()
        self.ws_factory = WsTrackerFactory(WsTracker(self.store, self.clock, interval=120))
        self.dedicated = TrackerHTTPFactory(http_tracker(self.store, self.clock), self.clock,
                                            self.ws_factory)
        root = Resource()
        root.putChild(b"announce", TrackerResource(http_tracker(self.store, self.clock),
                                                   WebSocketResource(self.ws_factory)))
        self.site = Site(root)
        self.protos: list[Any] = []

    def tearDown(self) -> None:
        for proto in self.protos:
            if proto.state != proto.STATE_CLOSED or proto.transport is not None:
                proto.connectionLost(Failure(ConnectionDone()))

    def connect(self, on_site: bool, port: int) -> tuple[Any, QueueingTransport]:
        transport = QueueingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        front = (self.site if on_site else self.dedicated).buildProtocol(
            IPv4Address("TCP", "127.0.0.1", port))
        front.makeConnection(transport)
        front.dataReceived(HANDSHAKE)
        self.assertIn(b"101 Switching Protocols", transport.value())
        proto = transport.protocol
        self.assertIs(transport.producer, proto.bound)  # the HTTP channel's slot, taken over
        transport.drain()
        self.protos.append(proto)
        return proto, transport

    def announce(self, proto: Any, peer_id: str, offers: int = 0) -> None:
        msg: dict[str, Any] = {"action": "announce", "info_hash": IHS, "peer_id": peer_id,
                               "left": 10, "event": "started"}
        if offers:
            msg["offers"] = [{"offer": {"type": "offer", "sdp": "v=0 " + "x" * 2000},
                              "offer_id": f"{n:020d}"} for n in range(offers)]
        proto.dataReceived(ws_frame(json.dumps(msg).encode()))
        self.clock.advance(0)  # the reactor turn ends: what it queued is written

    def flood(self, on_site: bool) -> None:
        from tgateway.tracker.ws import SEND_HIGH, SEND_STALL

        slow = [self.connect(on_site, 6000 + n) for n in range(10)]
        for n, (proto, _) in enumerate(slow):
            self.announce(proto, f"slow{n:016d}")
        sender, sender_tr = self.connect(on_site, 7000)
        for _ in range(200):  # 2,000 offers of 2 KB: 4 MB for ten sockets that never read
            self.announce(sender, "S" * 20, offers=10)
            sender_tr.drain()  # the sender reads its replies
        self.assertEqual(sender_tr.value().count(b'"interval":120'), 200)  # all answered
        for proto, tr in slow:
            self.assertTrue(proto.session.congested)
            self.assertFalse(tr.reading)  # nothing more is read from it either
            # one offer message (~2.1 KB) may cross the threshold, nothing after it
            self.assertLessEqual(tr.most_queued, SEND_HIGH + 4096)
        self.assertGreater(self.store.ws_dropped, 1500)
        self.assertEqual(self.store.scrape([IH]), [(0, 0, 11)])  # (complete, downloaded, incomplete)
        # one of them starts reading again: it gets offers again
        proto0, tr0 = slow[0]
        tr0.drain()
        self.assertFalse(proto0.session.congested)
        self.assertTrue(tr0.reading)
        self.announce(sender, "S" * 20, offers=10)
        self.assertIn(b'"offer":', tr0.value()[-3000:])
        # the others stay congested for SEND_STALL seconds: dropped, and out of the swarm
        self.clock.advance(SEND_STALL)
        for proto, tr in slow[1:]:
            self.assertTrue(tr.aborted)
            proto.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(tr0.aborted)
        self.assertEqual(self.ws_factory.dropped_slow, 9)
        self.assertEqual(self.ws_factory.connections, 2)
        self.assertEqual(self.store.scrape([IH]), [(0, 0, 2)])

    def test_ten_sockets_that_stop_reading_on_the_dedicated_port(self) -> None:
        self.flood(on_site=False)

    def test_ten_sockets_that_stop_reading_on_the_gateway_site(self) -> None:
        self.flood(on_site=True)

    def test_replies_to_a_congested_socket_are_limited(self) -> None:
        from tgateway.tracker.ws import FLUSH_SIZE, SEND_HIGH, SEND_LIMIT

        proto, tr = self.connect(False, 6000)
        self.announce(proto, "A" * 20)
        scrape = ws_frame(json.dumps({"action": "scrape", "info_hash": [IHS] * 10}).encode())
        # what one read may hold: many requests that each get a reply, none of them read; in
        # one reactor turn, so replies reach the transport FLUSH_SIZE bytes at a time
        while not tr.aborted:
            proto.dataReceived(scrape)
            self.assertLessEqual(tr.most_queued, SEND_HIGH + FLUSH_SIZE + SEND_LIMIT + 1024)
        self.assertGreater(tr.most_queued, SEND_HIGH + SEND_LIMIT - FLUSH_SIZE - 1024)
        self.assertEqual(self.ws_factory.dropped_slow, 1)


class SendInPlaceTests(SynchronousTestCase):
    """send_in_place writes to the socket itself only for a plain TCP connection."""

    def connection(self) -> tuple[Any, socket.socket]:
        from twisted.internet import tcp
        from twisted.internet.protocol import Protocol, ServerFactory

        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        port = tcp.Port(0, ServerFactory(), reactor=MemoryReactorClock())
        conn = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), port, 1, MemoryReactorClock())
        return conn, theirs

    def test_plain_tcp_is_sent_at_once(self) -> None:
        from tgateway.tracker.http import send_in_place

        conn, theirs = self.connection()
        send_in_place(conn, b"hello")
        self.assertEqual(theirs.recv(100), b"hello")

    def test_a_wrapping_transport_gets_the_bytes(self) -> None:
        """TLS (TLSMemoryBIOProtocol is a ProtocolWrapper) must encrypt what is written: its
        ``socket`` attribute is the wrapped connection's, and must not be used."""
        from twisted.internet.protocol import Protocol
        from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

        from tgateway.tracker.http import send_in_place

        conn, theirs = self.connection()
        wrapper = ProtocolWrapper(WrappingFactory(None), Protocol())
        wrapper.makeConnection(conn)
        self.assertIs(wrapper.socket, conn.socket)  # what made the old check send in place
        written: list[bytes] = []
        wrapper.write = written.append  # type: ignore[method-assign]
        send_in_place(wrapper, b"secret")
        self.assertEqual(written, [b"secret"])
        with self.assertRaises(BlockingIOError):
            theirs.recv(100)


class ShippedDefaultTests(SynchronousTestCase):
    """With ``configs/config.yaml`` as shipped (and with the embedded defaults), the first announce
    URL of a torrent and of a magnet is the tracker's dedicated HTTP port (the fast path,
    ``TrackerHTTPFactory``), not the gateway's twisted.web site (issue 16, point 8;
    ``docs/benchmarks.md`` has the figures)."""

    def check(self, config: Config) -> None:
        tmp = tempfile.mkdtemp(prefix="tracker-default-")
        self.addCleanup(shutil.rmtree, tmp, True)
        reactor = MemoryReactorClock()
        top = makeService({"config": config.with_data_dir(tmp)}, reactor=reactor)
        gateway = top.gateway  # type: ignore[attr-defined]
        links = gateway.links
        info = build_info("a", 5, 16384, b"\x01" * 20)
        f = StoredFile(sha256="ab" * 32, size=5, name="a", mime="text/plain", storage="blob",
                       piece_length=16384, info_hash=hashlib.sha1(info).hexdigest(), info=info,
                       created_at=0)
        first = bencode.decode(links.torrent_bytes(f))[b"announce"].decode()
        self.assertEqual(parse_qs(urlsplit(links.magnet(f)).query)["tr"][0], first)
        self.assertEqual(first, "http://127.0.0.1:6969/announce")
        # the gateway port's /announce stays in the list, second
        self.assertEqual(links.tracker_urls[1], "http://127.0.0.1:9877/announce")
        # what listens on that port is the tracker's own HTTP factory
        for svc in gateway.components.tracker.services:
            if svc.name == "tracker-http":
                svc.privilegedStartService()
        listening = {port: factory for port, factory, _, _ in reactor.tcpServers}
        self.assertIsInstance(listening[urlsplit(first).port], TrackerHTTPFactory)

    def test_the_shipped_configuration_file(self) -> None:
        self.check(load_config(str(Path(__file__).resolve().parents[2] / "configs" / "config.yaml")))

    def test_the_embedded_defaults(self) -> None:
        self.check(parse_config({}))

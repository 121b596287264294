"""tap.makeService builds the peer service, wires it to the store and the built-in tracker; the
service's announcer lists the gateway's peer for stored torrents and unlists deleted ones."""

from __future__ import annotations

import random
import shutil
import tempfile
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.config import PeerConfig, parse_config
from tgateway.peer.announce import (
    TrackerAnnouncer,
    http_announce_url,
)
from tgateway.peer.service import PeerService, announce_ips, make_peer_id
from tgateway.tap import makeService


class WiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="peer-wiring-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def config(self, **kw: object) -> Any:
        d = self.dir
        data = {
            "data_dir": d,
            "dht": {"bootstrap_nodes": []},
            "storage": {"metadata_db": f"{d}/m.db", "blob_storage": f"{d}/b",
                        "chunk_storage": f"{d}/c"},
            **kw,
        }
        return parse_config(data)

    def test_unified_builds_and_subscribes(self) -> None:
        top = makeService({"config": self.config(peer={"port": 7001, "max_uploads": 3})},
                          reactor=MemoryReactorClock())
        gw = top.gateway  # type: ignore[attr-defined]
        peer = gw.components.peer
        self.assertIsInstance(peer, PeerService)
        self.assertIn(peer, list(top))
        self.assertIn(peer.on_file_stored, gw.store._on_stored)
        self.assertIn(peer.on_file_deleted, gw.store._on_deleted)
        self.assertIs(peer.announcer.local, gw.components.tracker)
        self.assertEqual(peer.announcer.local_ips, ("127.0.0.1",))
        self.assertEqual(peer.factory.choker.max_uploads, 3)
        self.assertEqual(peer.config.port, 7001)
        self.assertEqual(peer.factory.session_config.dht_port, 6883)  # the DHT node, for PORT

    def test_disabled_and_modes(self) -> None:
        top = makeService({"config": self.config(peer={"enabled": False})},
                          reactor=MemoryReactorClock())
        self.assertIsNone(top.gateway.components.peer)  # type: ignore[attr-defined]
        top = makeService({"config": self.config(mode="blossom-only")},
                          reactor=MemoryReactorClock())
        self.assertIsNone(top.gateway.components.peer)  # type: ignore[attr-defined]


class AnnounceIpTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        self.assertEqual(announce_ips(PeerConfig(), "http://127.0.0.1:9877"), ("127.0.0.1",))
        self.assertEqual(announce_ips(PeerConfig(), "https://example.org"), ())
        self.assertEqual(announce_ips(PeerConfig(external_ip="203.0.113.5"), "https://example.org"),
                         ("203.0.113.5",))
        self.assertEqual(announce_ips(PeerConfig(host="192.0.2.7"), "https://example.org"),
                         ("192.0.2.7",))
        self.assertEqual(
            announce_ips(PeerConfig(host="::", external_ip6="2001:db8::1"), "http://127.0.0.1:1"),
            ("127.0.0.1", "2001:db8::1"))
        self.assertEqual(announce_ips(PeerConfig(host="2001:db8::2"), "http://[2001:db8::3]:1"),
                         ("2001:db8::2",))
        # an IPv6-only listener lists no IPv4 address unless told one
        self.assertEqual(announce_ips(PeerConfig(host="::1"), "http://127.0.0.1:1"), ("::1",))
        self.assertEqual(announce_ips(PeerConfig(host="::1", external_ip="192.0.2.1"),
                                      "http://127.0.0.1:1"), ("192.0.2.1", "::1"))
        # IPv6 is not listed when the peer does not listen on IPv6
        self.assertEqual(announce_ips(PeerConfig(external_ip6="2001:db8::1"), "http://[::1]:1"), ())

    def test_peer_id(self) -> None:
        pid = make_peer_id(random.Random(1))
        self.assertEqual(len(pid), 20)
        self.assertTrue(pid.startswith(b"-TG0010-"))


class FakeLocal:
    def __init__(self) -> None:
        self.peers: set[tuple[bytes, str, int]] = set()

    def add_local_peer(self, ih: bytes, ip: str, port: int) -> None:
        self.peers.add((ih, ip, port))

    def remove_local_peer(self, ih: bytes, ip: str, port: int) -> None:
        self.peers.discard((ih, ip, port))


class FakeResponse:
    code = 200

    def __init__(self, body: bytes) -> None:
        self.body = body

    def content(self) -> Any:
        from twisted.internet.defer import succeed

        return succeed(self.body)


class AnnouncerTests(SynchronousTestCase):
    def test_local_and_http_schedule(self) -> None:
        from twisted.internet.task import Clock

        clock = Clock()
        local = FakeLocal()
        urls: list[str] = []

        def get(url: str, timeout: float) -> Any:
            from twisted.internet.defer import succeed

            urls.append(url)
            return succeed(FakeResponse(b"d8:intervali1800e5:peers0:e"))

        a = TrackerAnnouncer(clock=clock, peer_id=b"-TG0010-" + b"a" * 12, port=6881, interval=100,
                      local=local, local_ips=("127.0.0.1", "::1"),
                      urls=("http://t.example/announce",), http_get=get)
        ih1, ih2 = b"\x01" * 20, b"\x02" * 20
        a.start([ih1])
        self.assertEqual(local.peers, {(ih1, "127.0.0.1", 6881), (ih1, "::1", 6881)})
        self.assertEqual(len(urls), 1)
        self.assertIn("event=started", urls[0])
        self.assertIn("info_hash=%01%01", urls[0])
        self.assertEqual(a.results["http://t.example/announce"], "ok")
        a.add(ih2)
        self.assertEqual(len(urls), 2)
        clock.advance(100)
        self.assertEqual(len(urls), 4)
        self.assertNotIn("event=", urls[2])
        a.remove(ih1)
        self.assertIn("event=stopped", urls[-1])
        self.assertEqual(local.peers, {(ih2, "127.0.0.1", 6881), (ih2, "::1", 6881)})
        d = a.stop()
        self.successResultOf(d)
        self.assertIn("event=stopped", urls[-1])
        self.assertEqual(local.peers, set())
        clock.advance(1000)
        self.assertEqual(sum("event=stopped" in u for u in urls), 2)

    def test_failure_reason_is_recorded(self) -> None:
        from twisted.internet.defer import succeed
        from twisted.internet.task import Clock

        a = TrackerAnnouncer(clock=Clock(), peer_id=b"x" * 20, port=1, interval=100,
                      urls=("http://t/announce",),
                      http_get=lambda url, timeout: succeed(
                          FakeResponse(b"d14:failure reason4:nopee")))
        a.start([b"\x03" * 20])
        self.assertEqual(a.results["http://t/announce"], "nope")

    def test_http_url(self) -> None:
        url = http_announce_url("http://t/announce?key=1", b"\xff" * 20, b"p" * 20, 6881, 0, "")
        self.assertTrue(url.startswith("http://t/announce?key=1&info_hash=%FF"))
        self.assertIn("port=6881", url)
        self.assertIn("left=0", url)

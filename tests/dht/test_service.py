"""The DHT service: state round-trip, bootstrap, spread re-announces, file-stored events, status."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.bencode import decode, encode
from tgateway.config import DhtConfig
from tgateway.dht import bep42
from tgateway.dht.krpc import pack_addr
from tgateway.dht.service import DhtService, build_dht
from tgateway.storage.model import StoredEvent, StoredFile, UploadContext


class FakeUDPPort:
    def __init__(self, proto: Any, host: str, port: int) -> None:
        self.proto = proto
        self.host = host
        self.port = port
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.host, self.port)

    def stopListening(self) -> None:
        self.listening = False
        self.proto.doStop()


class FakeNameResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def resolveHostName(
        self,
        receiver: Any,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> Any:
        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        for ip in self.answers.get(hostName, []):
            receiver.addressResolved(IPv4Address("UDP", ip, 0))
        receiver.resolutionComplete()
        return receiver


class UDPReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.udp: list[FakeUDPPort] = []
        self.nameResolver = FakeNameResolver({"router.test": ["10.1.2.3", "10.1.2.4"]})

    def listenUDP(
        self, port: int, proto: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUDPPort:
        p = FakeUDPPort(proto, interface, port or 40000 + len(self.udp))
        proto.makeConnection(p)
        self.udp.append(p)
        return p


def config(**kw: Any) -> DhtConfig:
    kw.setdefault("bootstrap_nodes", ("127.0.0.1:7001",))
    kw.setdefault("host", "127.0.0.1")
    kw.setdefault("port", 0)
    return DhtConfig(**kw)


def stored_event(info_hash: bytes, announce: bool = True) -> StoredEvent:
    f = StoredFile(
        sha256="00" * 32,
        size=1,
        name="a",
        mime="text/plain",
        storage="blob",
        piece_length=16384,
        info_hash=info_hash.hex(),
        info=b"",
        created_at=0,
    )
    return StoredEvent(file=f, context=UploadContext(announce_dht=announce), new=True)


class ServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        tmp = tempfile.mkdtemp(prefix="dht-state-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.state = Path(tmp) / "dht"
        self.reactor = UDPReactor()

    def start(self, **kw: Any) -> DhtService:
        svc = build_dht(config(**kw), str(self.state), self.reactor, random.Random(4), 6881)
        svc.startService()
        return svc

    def sent(self, index: int = -1) -> list[tuple[dict[bytes, Any], tuple[str, int]]]:
        port = self.reactor.udp[index]
        out = [(decode(d), a) for d, a in port.written]
        port.written.clear()
        return out

    def test_bootstrap_and_state_round_trip(self) -> None:
        svc = self.start()
        ((msg, addr),) = self.sent()
        self.assertEqual((msg[b"q"], addr), (b"find_node", ("127.0.0.1", 7001)))
        self.assertEqual(msg[b"a"][b"target"], svc.node_id)
        # The bootstrap node answers; it enters the table.
        proto = self.reactor.udp[0].proto
        proto.datagramReceived(
            encode({b"t": msg[b"t"], b"y": b"r", b"r": {b"id": b"B" * 20}}), addr
        )
        self.assertEqual(svc.status()["routing_table_size"], 1)
        node_id = svc.node_id
        self.successResultOf(svc.stopService())
        self.assertFalse(self.reactor.udp[0].listening)
        saved = json.loads((self.state / "dht.json").read_text())
        self.assertEqual(saved["node_id"], node_id.hex())  # type: ignore[union-attr]
        self.assertEqual(saved["nodes"], [[(b"B" * 20).hex(), "127.0.0.1", 7001]])
        # A restart keeps the id and rejoins through the saved node at once.
        svc2 = self.start(bootstrap_nodes=())
        self.assertEqual(svc2.node_id, node_id)
        self.assertEqual(svc2.status()["routing_table_size"], 1)
        methods = sorted((m[b"q"], a) for m, a in self.sent())
        self.assertIn((b"find_node", ("127.0.0.1", 7001)), methods)
        self.successResultOf(svc2.stopService())

    def test_bootstrap_names_resolved_through_the_reactor(self) -> None:
        svc = self.start(
            bootstrap_nodes=("router.test:6881", "nowhere.test:1", "bad:x", "10.9.9.9:7")
        )
        self.assertEqual(self.reactor.nameResolver.asked, ["router.test", "nowhere.test"])
        sent = sorted(addr for msg, addr in self.sent() if msg[b"q"] == b"find_node")
        self.assertEqual(sent, [("10.1.2.3", 6881), ("10.1.2.4", 6881), ("10.9.9.9", 7)])
        self.successResultOf(svc.stopService())

    def test_unreadable_state_gives_a_fresh_id(self) -> None:
        self.state.mkdir()
        (self.state / "dht.json").write_text("{not json")
        svc = self.start()
        self.assertEqual(len(svc.node_id or b""), 20)
        self.successResultOf(svc.stopService())

    def test_saved_external_ip_gives_a_bep42_id(self) -> None:
        self.state.mkdir()
        (self.state / "dht.json").write_text(
            json.dumps({"node_id": "00" * 20, "external_ip": "8.8.4.4", "nodes": []})
        )
        svc = self.start()
        assert svc.node_id is not None
        self.assertTrue(bep42.id_matches_ip(svc.node_id, "8.8.4.4"))
        self.successResultOf(svc.stopService())

    def test_reannounce_spread_over_the_interval(self) -> None:
        svc = self.start(announce_interval=100.0, bootstrap_nodes=())
        node = svc.families[0].node
        calls: list[tuple[bytes, float]] = []
        node.announce = lambda ih, port, now, on_done=None, local_ip=None: (  # type: ignore[method-assign]
            calls.append((ih, now)),
            on_done and on_done(type("R", (), {"target": ih})(), 0),
        )
        hashes = [random.Random(i).randbytes(20) for i in range(50)]
        svc.set_known_info_hashes(hashes)
        for _ in range(100):
            self.reactor.advance(1.0)
        self.assertEqual(sorted(ih for ih, _ in calls), sorted(hashes))  # each once per interval
        times = sorted(t for _, t in calls)
        self.assertGreater(times[-1] - times[0], 50)  # spread out, not a burst
        self.assertLessEqual(max(sum(1 for t in times if int(t) == s) for s in range(101)), 6)
        for _ in range(100):
            self.reactor.advance(1.0)
        self.assertEqual(len(calls), 100)  # and again in the next interval
        self.successResultOf(svc.stopService())

    def test_known_hashes_from_a_callable_and_hex(self) -> None:
        svc = self.start(announce_interval=10.0, bootstrap_nodes=())
        node = svc.families[0].node
        seen: list[bytes] = []
        node.announce = lambda ih, *a, **kw: seen.append(ih)  # type: ignore[method-assign]
        svc.set_known_info_hashes(lambda: ["ab" * 20, "not hex", b"\x01" * 20])
        self.assertEqual(sorted(node.known_info_hashes()), [b"\x01" * 20, b"\xab" * 20])
        for _ in range(11):
            self.reactor.advance(1.0)
        self.assertEqual(sorted(set(seen)), [b"\x01" * 20, b"\xab" * 20])
        self.successResultOf(svc.stopService())

    def test_known_hashes_callable_read_at_start(self) -> None:
        svc = build_dht(
            config(bootstrap_nodes=()), str(self.state), self.reactor, random.Random(1), 6881
        )
        reads: list[int] = []

        def listing() -> list[bytes]:
            reads.append(1)
            return [b"\x07" * 20]

        svc.set_known_info_hashes(listing)
        self.assertEqual(reads, [])  # not before the store is open
        svc.startService()
        self.assertEqual(reads, [1])
        self.assertEqual(list(svc.families[0].node.known_info_hashes()), [b"\x07" * 20])
        self.successResultOf(svc.stopService())

    def test_file_stored_announces_unless_opted_out(self) -> None:
        svc = self.start(bootstrap_nodes=())
        node = svc.families[0].node
        seen: list[tuple[bytes, int, str | None]] = []
        node.announce = lambda ih, port, now, on_done=None, local_ip=None: seen.append(
            (ih, port, local_ip)
        )  # type: ignore[method-assign]
        svc.on_file_stored(stored_event(b"\x02" * 20, announce=False))
        self.assertEqual(seen, [])
        svc.on_file_stored(stored_event(b"\x03" * 20))
        self.assertEqual(seen, [(b"\x03" * 20, 6881, "127.0.0.1")])
        self.assertIn(b"\x03" * 20, set(node.known_info_hashes()))
        self.successResultOf(svc.stopService())

    def test_deleted_file_is_no_longer_announced_nor_served_from_our_store(self) -> None:
        svc = self.start(announce_interval=10.0, bootstrap_nodes=())
        node = svc.families[0].node
        svc.on_file_stored(stored_event(b"\x05" * 20))
        self.reactor.advance(0)
        self.assertEqual(node.store.get(b"\x05" * 20, 0, 10, random.Random()),
                         [pack_addr("127.0.0.1", 6881)])
        seen: list[bytes] = []
        node.announce = lambda ih, *a, **kw: seen.append(ih)  # type: ignore[method-assign]
        svc.on_file_deleted(stored_event(b"\x05" * 20).file)
        self.assertNotIn(b"\x05" * 20, set(node.known_info_hashes()))
        self.assertEqual(node.store.get(b"\x05" * 20, 0, 10, random.Random()), [])
        for _ in range(21):
            self.reactor.advance(1.0)
        self.assertEqual(seen, [])  # two intervals: never announced again
        self.successResultOf(svc.stopService())

    def test_refused_info_hashes_are_never_announced(self) -> None:
        blocked = {b"\x06" * 20}
        svc = build_dht(config(announce_interval=10.0, bootstrap_nodes=()), str(self.state),
                        self.reactor, random.Random(4), 6881, refused=blocked.__contains__)
        svc.startService()
        node = svc.families[0].node
        self.assertTrue(node.refused(b"\x06" * 20))
        seen: list[bytes] = []
        node.announce = lambda ih, *a, **kw: seen.append(ih)  # type: ignore[method-assign]
        svc.set_known_info_hashes([b"\x06" * 20, b"\x07" * 20])
        svc.on_file_stored(stored_event(b"\x06" * 20))
        for _ in range(11):
            self.reactor.advance(1.0)
        self.assertEqual(set(seen), {b"\x07" * 20})
        self.successResultOf(svc.stopService())

    def test_announce_stores_the_gateway_locally_and_get_peers_fires(self) -> None:
        svc = self.start(bootstrap_nodes=())
        svc.announce(b"\x04" * 20)
        self.reactor.advance(0)
        d = svc.get_peers(b"\x04" * 20)
        self.reactor.advance(0)
        self.assertEqual(self.successResultOf(d), [("127.0.0.1", 6881)])
        self.assertEqual(svc.status()["stored_torrents"], 1)
        self.successResultOf(svc.stopService())

    def test_on_any_address_the_gateway_stores_itself_at_the_peers_address(self) -> None:
        # Bound to 0.0.0.0 with no other node known, the node has no address of its own: the
        # peer's announced address (as the tracker lists it) is stored instead.
        svc = build_dht(config(host="0.0.0.0", bootstrap_nodes=()), str(self.state), self.reactor,
                        random.Random(4), 6881, announce_ips=("203.0.113.7", "2001:db8::7"))
        svc.startService()
        svc.announce(b"\x05" * 20)
        self.reactor.advance(0)
        d = svc.get_peers(b"\x05" * 20)
        self.reactor.advance(0)
        self.assertEqual(self.successResultOf(d), [("203.0.113.7", 6881)])
        self.successResultOf(svc.stopService())

    def test_on_any_address_without_an_address_nothing_is_stored(self) -> None:
        svc = self.start(host="0.0.0.0", bootstrap_nodes=())
        svc.announce(b"\x06" * 20)
        self.reactor.advance(0)
        d = svc.get_peers(b"\x06" * 20)
        self.reactor.advance(0)
        self.assertEqual(self.successResultOf(d), [])
        self.assertEqual(svc.status()["stored_torrents"], 0)
        self.successResultOf(svc.stopService())

    def test_status(self) -> None:
        svc = self.start(bootstrap_nodes=())
        proto = self.reactor.udp[0].proto
        for i in range(20):
            proto.datagramReceived(
                encode(
                    {b"t": b"%d" % i, b"y": b"q", b"q": b"ping", b"ro": 1, b"a": {b"id": b"x" * 20}}
                ),
                ("127.0.0.2", 5),
            )
            self.reactor.advance(0.5)
        st = svc.status()
        for key in (
            "node_id",
            "routing_table_size",
            "good_nodes",
            "stored_torrents",
            "stored_peers",
            "queries_in_per_second",
            "queries_out_per_second",
        ):
            self.assertIn(key, st)
        self.assertAlmostEqual(st["queries_in_per_second"], 2.0, delta=0.3)
        json.dumps(st)
        self.successResultOf(svc.stopService())
        self.assertFalse(svc.status()["running"])

    def test_get_peers_pending_at_stop_fires_empty(self) -> None:
        svc = self.start(bootstrap_nodes=())
        svc.families[0].node.table.add(b"N" * 20, "127.0.0.9", 9, self.reactor.seconds())
        d = svc.get_peers(b"\x05" * 20)  # queries 127.0.0.9, which never answers
        self.assertNoResult(d)
        self.successResultOf(svc.stopService())
        self.assertEqual(self.successResultOf(d), [])

    def test_get_peers_when_stopped_fails(self) -> None:
        svc = build_dht(config(), str(self.state), self.reactor, random.Random(1), 6881)
        self.failureResultOf(svc.get_peers(b"x" * 20), RuntimeError)

"""The in-memory swarm store with an injected clock (``now``) and a seeded RNG: no reactor, no
sockets."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_NONE,
    EVENT_STARTED,
    EVENT_STOPPED,
    MAX_PENDING_OFFERS,
    DenyList,
    TrackerError,
    WsSession,
)
from tgateway.tracker.memory import MemorySwarmStore
from tgateway.tracker.swarm import peer_id_of

IH = b"I" * 20
IH2 = b"J" * 20


def key(n: int, ip: bytes = b"\x0a\x00\x00\x01") -> bytes:
    return ip + n.to_bytes(2, "big")


def key6(n: int) -> bytes:
    return b"\x20\x01" + b"\x00" * 13 + b"\x01" + n.to_bytes(2, "big")


def pid(n: int) -> bytes:
    return b"-TG0001-%012d" % n


def store(**kw: object) -> MemorySwarmStore:
    kw.setdefault("interval", 100)
    kw.setdefault("grace", 10)
    return MemorySwarmStore(random.Random(1), **kw)  # type: ignore[arg-type]


class AnnounceTests(SynchronousTestCase):
    def test_counts_and_no_self(self) -> None:
        s = store()
        c, i, d, p4, p6 = s.announce(IH, pid(1), key(1), 0, EVENT_STARTED, 50, 0)
        self.assertEqual((c, i, d, p4, p6), (1, 0, 0, [], []))
        c, i, d, p4, p6 = s.announce(IH, pid(2), key(2), 100, EVENT_STARTED, 50, 0)
        self.assertEqual((c, i, d), (1, 1, 0))
        self.assertEqual(p4, [key(1)])
        # the seeder gets the leecher, never itself
        c, i, d, p4, _ = s.announce(IH, pid(1), key(1), 0, EVENT_NONE, 50, 1)
        self.assertEqual((c, i), (1, 1))
        self.assertEqual(p4, [key(2)])

    def test_reannounce_does_not_double_count(self) -> None:
        s = store()
        for t in range(5):
            c, i, d, _, _ = s.announce(IH, pid(1), key(1), 10, EVENT_NONE, 50, t)
        self.assertEqual((c, i, d), (0, 1, 0))
        # completes: counted once, however often it says so
        for t in range(3):
            c, i, d, _, _ = s.announce(IH, pid(1), key(1), 0, EVENT_COMPLETED, 50, 10 + t)
        self.assertEqual((c, i, d), (1, 0, 1))

    def test_new_peer_with_completed_counts_a_download(self) -> None:
        s = store()
        c, i, d, _, _ = s.announce(IH, pid(1), key(1), 0, EVENT_COMPLETED, 50, 0)
        self.assertEqual((c, i, d), (1, 0, 1))

    def test_stopped_removes_only_own_address(self) -> None:
        s = store()
        s.announce(IH, pid(1), key(1), 0, EVENT_STARTED, 50, 0)
        s.announce(IH, pid(2), key(2), 5, EVENT_STARTED, 50, 0)
        # the same peer_id from another address cannot remove key(1)
        c, i, d, p4, _ = s.announce(IH, pid(1), key(3), 0, EVENT_STOPPED, 50, 1)
        self.assertEqual((c, i, p4), (1, 1, []))
        c, i, _, _, _ = s.announce(IH, pid(1), key(1), 0, EVENT_STOPPED, 50, 1)
        self.assertEqual((c, i), (0, 1))
        c, i, _, _, _ = s.announce(IH, pid(2), key(2), 5, EVENT_STOPPED, 50, 1)
        self.assertEqual((c, i), (0, 0))

    def test_port_zero_rejected(self) -> None:
        s = store()
        with self.assertRaises(TrackerError):
            s.announce(IH, pid(1), key(0), 0, EVENT_STARTED, 50, 0)
        self.assertEqual(s.peer_count(), 0)

    def test_expiry(self) -> None:
        s = store()  # ttl = 110
        s.announce(IH, pid(1), key(1), 0, EVENT_STARTED, 50, 0)
        s.announce(IH, pid(2), key(2), 9, EVENT_STARTED, 50, 50)
        self.assertEqual(s.expire(109), 0)
        self.assertEqual(s.expire(110), 1)
        self.assertEqual(s.scrape([IH]), [(0, 0, 1)])
        self.assertEqual(s.expire(160), 1)
        self.assertEqual(s.peer_count(), 0)
        self.assertNotIn(IH, s.swarms)  # no peers, no downloads: gone

    def test_incremental_expiry_covers_every_swarm(self) -> None:
        s = store()
        for n in range(250):
            s.announce(n.to_bytes(20, "big"), pid(1), key(1), 5, EVENT_STARTED, 0, 0)
        dropped = calls = 0
        while s.swarms and calls < 10:
            dropped += s.expire_some(500, min_peers=100)
            calls += 1
        self.assertEqual((dropped, calls), (250, 5))  # 2 peers' worth per swarm: 50 swarms a call
        self.assertEqual(s.expire_some(600, min_peers=100), 0)

    def test_reannounce_extends_life(self) -> None:
        s = store()
        s.announce(IH, pid(1), key(1), 0, EVENT_STARTED, 50, 0)
        s.announce(IH, pid(1), key(1), 0, EVENT_NONE, 50, 100)
        self.assertEqual(s.expire(150), 0)
        self.assertEqual(s.expire(210), 1)

    def test_swarm_with_downloads_survives_expiry(self) -> None:
        s = store()
        s.announce(IH, pid(1), key(1), 0, EVENT_COMPLETED, 50, 0)
        s.expire(1000)
        self.assertEqual(s.scrape([IH]), [(0, 1, 0)])

    def test_leecher_gets_seeders_first(self) -> None:
        s = store()
        for n in range(1, 21):
            s.announce(IH, pid(n), key(n), 0 if n <= 5 else 7, EVENT_STARTED, 0, 0)
        _, _, _, p4, _ = s.announce(IH, pid(99), key(99), 7, EVENT_STARTED, 8, 0)
        self.assertEqual(len(p4), 8)
        self.assertEqual(set(p4[:5]), {key(n) for n in range(1, 6)})
        self.assertTrue(all(k not in {key(n) for n in range(1, 6)} for k in p4[5:]))
        self.assertNotIn(key(99), p4)

    def test_seeder_gets_leechers_first(self) -> None:
        s = store()
        for n in range(1, 21):
            s.announce(IH, pid(n), key(n), 0 if n <= 15 else 7, EVENT_STARTED, 0, 0)
        _, _, _, p4, _ = s.announce(IH, pid(1), key(1), 0, EVENT_NONE, 7, 0)
        self.assertEqual(set(p4[:5]), {key(n) for n in range(16, 21)})
        self.assertEqual(len(p4), 7)
        self.assertNotIn(key(1), p4)

    def test_random_among_equals(self) -> None:
        s = store()
        for n in range(1, 101):
            s.announce(IH, pid(n), key(n), 0, EVENT_STARTED, 0, 0)
        seen: set[bytes] = set()
        for t in range(20):
            _, _, _, p4, _ = s.announce(IH, pid(200), key(200), 5, EVENT_NONE, 10, t)
            self.assertEqual(len(p4), 10)
            self.assertEqual(len(set(p4)), 10)
            self.assertNotIn(key(200), p4)
            seen.update(p4)
        self.assertGreater(len(seen), 50)

    def test_cached_keys_follow_membership(self) -> None:
        s = store()
        for n in range(1, 201):
            s.announce(IH, pid(n), key(n), 0, EVENT_STARTED, 0, 0)
        for t in range(5):  # fills and uses the key cache
            s.announce(IH, pid(999), key(999), 5, EVENT_NONE, 50, t)
        gone = {key(n) for n in range(1, 101)}
        for n in range(1, 101):
            s.announce(IH, pid(n), key(n), 0, EVENT_STOPPED, 0, 10)
        s.announce(IH, pid(300), key(300), 0, EVENT_STARTED, 0, 10)
        seen: set[bytes] = set()
        for t in range(40):
            _, _, _, p4, _ = s.announce(IH, pid(999), key(999), 5, EVENT_NONE, 50, 20 + t)
            seen.update(p4)
        self.assertFalse(seen & gone)
        self.assertIn(key(300), seen)
        s.expire(10_000)
        _, _, _, p4, _ = s.announce(IH, pid(999), key(999), 5, EVENT_NONE, 50, 10_000)
        self.assertEqual(p4, [])

    def test_key_lists_stay_in_step_with_the_dicts(self) -> None:
        rng = random.Random(5)
        s = store(max_peers_per_torrent=40)
        for t in range(3000):
            n = rng.randrange(60)
            event = rng.choice([EVENT_NONE, EVENT_STARTED, EVENT_COMPLETED, EVENT_STOPPED])
            k = key6(n + 1) if n % 3 == 0 else key(n + 1)
            s.announce(IH, pid(n), k, rng.choice([0, 0, 7]), event, 5, t / 10)
            if t % 500 == 499:
                s.expire(t / 10 - 50)
        swarm = s.swarms[IH]
        for d, keys in ((swarm.seeds4, swarm.ks4), (swarm.leech4, swarm.kl4),
                        (swarm.seeds6, swarm.ks6), (swarm.leech6, swarm.kl6)):
            self.assertEqual(sorted(keys), sorted(d))
            for i, k in enumerate(keys):
                self.assertEqual((d[k] >> 160) & 0xFFFFFFFF, i)
            for v in d.values():
                self.assertEqual(peer_id_of(v)[:8], b"-TG0001-")

    def test_numwant_zero_and_families(self) -> None:
        s = store()
        s.announce(IH, pid(1), key(1), 0, EVENT_STARTED, 0, 0)
        s.announce(IH, pid(2), key6(2), 0, EVENT_STARTED, 0, 0)
        _, _, _, p4, p6 = s.announce(IH, pid(3), key(3), 5, EVENT_STARTED, 0, 0)
        self.assertEqual((p4, p6), ([], []))
        c, i, _, p4, p6 = s.announce(IH, pid(3), key(3), 5, EVENT_NONE, 50, 0)
        self.assertEqual((c, i), (2, 1))
        self.assertEqual((p4, p6), ([key(1)], [key6(2)]))
        _, _, _, p4, p6 = s.announce(IH, pid(3), key(3), 5, EVENT_NONE, 50, 0, True, False)
        self.assertEqual((p4, p6), ([key(1)], []))

    def test_max_peers_per_torrent(self) -> None:
        s = store(max_peers_per_torrent=3)
        for n in range(1, 6):
            c, i, _, _, _ = s.announce(IH, pid(n), key(n), 5, EVENT_STARTED, 50, 0)
        self.assertEqual((c, i), (0, 3))
        # a stored peer may still change kind
        c, i, _, _, _ = s.announce(IH, pid(1), key(1), 0, EVENT_COMPLETED, 50, 0)
        self.assertEqual((c, i), (1, 2))

    def test_max_torrents(self) -> None:
        s = store(max_torrents=2)
        s.announce(b"a" * 20, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        s.announce(b"b" * 20, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        with self.assertRaises(TrackerError):
            s.announce(b"c" * 20, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        s.announce(b"a" * 20, pid(1), key(1), 5, EVENT_STOPPED, 50, 0)
        s.announce(b"c" * 20, pid(1), key(1), 5, EVENT_STARTED, 50, 0)  # evicts the empty one
        self.assertEqual(set(s.swarms), {b"b" * 20, b"c" * 20})

    def test_deny_list(self) -> None:
        s = store(deny_list=[IH])
        with self.assertRaises(TrackerError):
            s.announce(IH, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        with self.assertRaises(TrackerError):
            s.ws_announce(WsSession(None), IH, "p" * 20, False, EVENT_STARTED, [], 0)
        self.assertEqual(s.scrape([IH]), [(0, 0, 0)])
        s.announce(IH2, pid(1), key(1), 5, EVENT_STARTED, 50, 0)

    def test_block_list_and_deny_list_are_one_mechanism(self) -> None:
        """The gateway's block list (a function answering from memory) refuses an info-hash the
        way tracker.deny_list does, on every front end's path, from the moment it is blocked:
        a swarm that was live already is refused too."""
        blocked: set[bytes] = set()
        s = store(deny_list=DenyList([IH2], blocked.__contains__))
        ih3 = b"\x03" * 20
        s.announce(IH, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        session = WsSession(None)
        s.ws_announce(session, IH, "p" * 20, False, EVENT_STARTED, [], 0)
        self.assertEqual(s.scrape([IH]), [(0, 0, 2)])
        blocked.add(IH)
        for call in (lambda: s.announce(IH, pid(1), key(1), 5, EVENT_STARTED, 50, 0),
                     lambda: s.announce(IH, pid(2), key(2), 5, EVENT_STARTED, 50, 0),
                     lambda: s.ws_announce(session, IH, "p" * 20, False, EVENT_STARTED, [], 0),
                     lambda: s.announce(IH2, pid(1), key(1), 5, EVENT_STARTED, 50, 0)):
            with self.assertRaises(TrackerError) as e:
                call()
            self.assertEqual(e.exception.message, "info_hash is not allowed on this tracker")
        self.assertEqual(s.scrape([IH, IH2]), [(0, 0, 0), (0, 0, 0)])
        s.announce(ih3, pid(1), key(1), 5, EVENT_STARTED, 50, 0)  # others go on

    def test_gateway_only(self) -> None:
        known = {IH}
        s = store(gateway_only=True, is_known_info_hash=known.__contains__)
        s.announce(IH, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        with self.assertRaises(TrackerError) as e:
            s.announce(IH2, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        self.assertIn("unregistered", e.exception.message)

    def test_local_peer_always_first_and_counted(self) -> None:
        s = store()
        gw = key(6881, b"\xc0\xa8\x00\x01")
        s.add_local_peer(IH, gw)
        for n in range(1, 30):
            s.announce(IH, pid(n), key(n), 0, EVENT_STARTED, 0, 0)
        c, i, _, p4, _ = s.announce(IH, pid(99), key(99), 5, EVENT_STARTED, 5, 0)
        self.assertEqual(p4[0], gw)
        self.assertEqual(len(p4), 5)
        self.assertEqual((c, i), (30, 1))
        self.assertEqual(s.scrape([IH]), [(30, 0, 1)])
        # a local peer that also announces is listed once; the gateway itself does not get itself
        s.announce(IH, pid(500), gw, 0, EVENT_STARTED, 0, 0)
        _, _, _, p4, _ = s.announce(IH, pid(99), key(99), 5, EVENT_NONE, 100, 0)
        self.assertEqual(p4.count(gw), 1)
        _, _, _, p4, _ = s.announce(IH, pid(500), gw, 0, EVENT_NONE, 100, 0)
        self.assertNotIn(gw, p4)
        s.remove_local_peer(IH, gw)
        self.assertEqual(s.local, {})

    def test_scorer_ranks(self) -> None:
        class Prefer:
            def score(self, info_hash: bytes, requester: bytes, candidate: bytes) -> float:
                return float(int.from_bytes(candidate[-2:], "big"))

        s = store(scorer=Prefer())
        for n in range(1, 11):
            s.announce(IH, pid(n), key(n), 0, EVENT_STARTED, 0, 0)
        _, _, _, p4, _ = s.announce(IH, pid(99), key(99), 5, EVENT_STARTED, 3, 0)
        self.assertEqual(p4, [key(10), key(9), key(8)])

    def test_full_scrape(self) -> None:
        s = store()
        s.announce(IH, pid(1), key(1), 0, EVENT_COMPLETED, 0, 0)
        s.announce(IH2, pid(1), key(1), 3, EVENT_STARTED, 0, 0)
        self.assertEqual(sorted(s.scrape_all()), [(IH, 1, 1, 0), (IH2, 0, 0, 1)])


class WebSocketTests(SynchronousTestCase):
    def test_offers_forwarded_and_answers_routed(self) -> None:
        s = store()
        a, b, c = WsSession("a"), WsSession("b"), WsSession("c")
        comp, inc, targets = s.ws_announce(a, IH, "A" * 20, False, EVENT_STARTED, ["o1", "o2"], 0)
        self.assertEqual((comp, inc, targets), (0, 1, []))
        comp, inc, targets = s.ws_announce(b, IH, "B" * 20, True, EVENT_STARTED, ["x1", "x2"], 0)
        self.assertEqual((comp, inc), (1, 1))
        self.assertEqual(targets, [a])  # one peer, one offer
        # a answers b's offer x1: routed to b
        self.assertIs(s.ws_answer(a, IH, "A" * 20, "B" * 20, "x1"), b)
        # only once
        self.assertIsNone(s.ws_answer(a, IH, "A" * 20, "B" * 20, "x1"))
        # an offer that was never forwarded to c
        self.assertIsNone(s.ws_answer(c, IH, "C" * 20, "B" * 20, "x2"))
        # x2 was never forwarded at all
        self.assertIsNone(s.ws_answer(a, IH, "A" * 20, "B" * 20, "x2"))

    def test_answer_must_come_from_recipient_peer_id(self) -> None:
        s = store()
        a, b = WsSession("a"), WsSession("b")
        s.ws_announce(a, IH, "A" * 20, False, EVENT_STARTED, [], 0)
        s.ws_announce(b, IH, "B" * 20, False, EVENT_STARTED, ["x1"], 0)
        self.assertIsNone(s.ws_answer(a, IH, "Z" * 20, "B" * 20, "x1"))
        self.assertIsNone(s.ws_answer(a, IH2, "A" * 20, "B" * 20, "x1"))
        self.assertIs(s.ws_answer(a, IH, "A" * 20, "B" * 20, "x1"), b)

    def test_close_is_stopped_everywhere(self) -> None:
        s = store()
        a, b = WsSession("a"), WsSession("b")
        s.ws_announce(a, IH, "A" * 20, False, EVENT_STARTED, [], 0)
        s.ws_announce(a, IH2, "A" * 20, True, EVENT_STARTED, [], 0)
        s.ws_announce(b, IH, "B" * 20, True, EVENT_STARTED, [], 0)
        s.ws_close(a)
        self.assertEqual(s.scrape([IH, IH2]), [(1, 0, 0), (0, 0, 0)])
        self.assertEqual(a.entries, {})

    def test_peer_id_cannot_be_taken_over(self) -> None:
        s = store()
        a, b = WsSession("a"), WsSession("b")
        s.ws_announce(a, IH, "A" * 20, False, EVENT_STARTED, [], 0)
        with self.assertRaises(TrackerError):
            s.ws_announce(b, IH, "A" * 20, False, EVENT_STOPPED, [], 1)
        self.assertEqual(s.scrape([IH]), [(0, 0, 1)])
        s.ws_close(a)
        s.ws_announce(b, IH, "A" * 20, False, EVENT_STARTED, [], 2)
        self.assertEqual(s.scrape([IH]), [(0, 0, 1)])

    def test_ws_completed_and_expiry(self) -> None:
        s = store(ws_interval=20)  # ws ttl = 30
        a = WsSession("a")
        s.ws_announce(a, IH, "A" * 20, False, EVENT_STARTED, [], 0)
        comp, inc, _ = s.ws_announce(a, IH, "A" * 20, True, EVENT_COMPLETED, [], 5)
        self.assertEqual((comp, inc), (1, 0))
        self.assertEqual(s.scrape([IH]), [(1, 1, 0)])
        self.assertEqual(s.expire(34), 0)
        self.assertEqual(s.expire(35), 1)
        self.assertEqual(a.entries, {})

    def test_two_peer_ids_on_one_socket(self) -> None:
        # WebTorrent shares one socket per tracker URL between clients of a process
        s = store()
        a = WsSession("a")
        s.ws_announce(a, IH, "A" * 20, True, EVENT_STARTED, [], 0)
        _, _, targets = s.ws_announce(a, IH, "B" * 20, False, EVENT_STARTED, ["o"], 0)
        self.assertEqual(targets, [a])
        self.assertIs(s.ws_answer(a, IH, "A" * 20, "B" * 20, "o"), a)

    def test_swarms_per_connection_bounded(self) -> None:
        s = store()
        a = WsSession("a")
        for n in range(1000):
            s.ws_announce(a, n.to_bytes(20, "big"), "A" * 20, False, EVENT_STARTED, [], 0)
        with self.assertRaises(TrackerError):
            s.ws_announce(a, b"x" * 20, "A" * 20, False, EVENT_STARTED, [], 0)

    def test_pending_offers_bounded(self) -> None:
        s = store()
        a, b = WsSession("a"), WsSession("b")
        s.ws_announce(a, IH, "A" * 20, False, EVENT_STARTED, [], 0)
        for n in range(1000):
            s.ws_announce(b, IH, "B" * 20, False, EVENT_NONE, [f"o{n}"], 0)
        self.assertLessEqual(len(a.pending), MAX_PENDING_OFFERS)
        for n in range(1000 - MAX_PENDING_OFFERS // 2, 1000):  # the latest half always answerable
            self.assertIs(s.ws_answer(a, IH, "A" * 20, "B" * 20, f"o{n}"), b)
        self.assertIsNone(s.ws_answer(a, IH, "A" * 20, "B" * 20, "o0"))

    def test_congested_sockets_get_no_offers_and_no_answers(self) -> None:
        s = store()
        slow = [WsSession(f"s{n}") for n in range(3)]
        for n, session in enumerate(slow):
            s.ws_announce(session, IH, f"{n:020d}", False, EVENT_STARTED, [], 0)
            session.congested = True
        fast = WsSession("f")
        s.ws_announce(fast, IH, "F" * 20, False, EVENT_STARTED, [], 0)
        sender = WsSession("x")
        _, _, targets = s.ws_announce(sender, IH, "X" * 20, False, EVENT_STARTED,
                                      ["o1", "o2", "o3", "o4"], 0)
        self.assertEqual(targets, [fast])  # the first offer goes to the one socket that reads
        self.assertEqual(fast.pending, {"X" * 20 + "o1": IH.decode("latin-1") + "F" * 20})
        self.assertEqual([x.pending for x in slow], [{}, {}, {}])  # nothing kept for them
        self.assertEqual(s.ws_dropped, 3)
        # an answer for a congested offerer is dropped too
        sender.congested = True
        self.assertIsNone(s.ws_answer(fast, IH, "F" * 20, "X" * 20, "o1"))
        self.assertEqual(s.ws_dropped, 4)
        slow[0].congested = False
        _, _, targets = s.ws_announce(fast, IH, "F" * 20, False, EVENT_NONE,
                                      ["p1", "p2", "p3", "p4"], 1)
        self.assertEqual(targets, [slow[0]])  # drained: it gets offers again

    def test_ws_and_udp_peers_do_not_mix(self) -> None:
        s = store()
        a = WsSession("a")
        s.ws_announce(a, IH, "A" * 20, True, EVENT_STARTED, [], 0)
        c, i, _, p4, _ = s.announce(IH, pid(1), key(1), 5, EVENT_STARTED, 50, 0)
        self.assertEqual((c, i, p4), (1, 1, []))
        _, _, targets = s.ws_announce(WsSession("b"), IH, "B" * 20, False, EVENT_STARTED, ["o"], 0)
        self.assertEqual(targets, [a])

"""Routing table: bucket splits, node states, replacement, refresh, closest-node queries; BEP 42."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tgateway.dht import bep42
from tgateway.dht.routing import GOOD_WINDOW, ID_SPACE, REFRESH_AFTER, K, RoutingTable


def nid(value: int) -> bytes:
    return value.to_bytes(20, "big")


OWN = nid(0)  # own id at the bottom of the space: the low bucket is the one that splits


class BucketTests(SynchronousTestCase):
    def test_first_bucket_fills_then_splits_around_own_id(self) -> None:
        t = RoutingTable(OWN, now=0)
        # 8 nodes in the top half and 8 in the bottom half.
        for i in range(K):
            self.assertEqual(
                t.add(nid((ID_SPACE >> 1) + i + 1), "10.0.0.1", 1000 + i, 0)[0], "added"
            )
        self.assertEqual(len(t.buckets), 1)
        for i in range(K):
            self.assertEqual(t.add(nid(i + 1 + (1 << 100)), "10.0.0.2", 2000 + i, 0)[0], "added")
        self.assertGreater(len(t.buckets), 1)
        self.assertEqual(len(t), 2 * K)
        # Buckets tile the space without gaps, and each holds at most K nodes of its range.
        self.assertEqual(t.buckets[0].lo, 0)
        self.assertEqual(t.buckets[-1].hi, ID_SPACE)
        for a, b in zip(t.buckets, t.buckets[1:], strict=False):
            self.assertEqual(a.hi, b.lo)
        for b in t.buckets:
            self.assertLessEqual(len(b.nodes), K)
            self.assertTrue(all(b.covers(n.id_int) for n in b.nodes))

    def test_far_bucket_does_not_split(self) -> None:
        t = RoutingTable(OWN, now=0)
        for i in range(K + 1):  # forces the first split
            t.add(nid((ID_SPACE >> 1) + i), "10.0.0.1", 1000 + i, 0)
        far = t.bucket_for((ID_SPACE >> 1) + 1)
        self.assertFalse(far.covers(0))
        self.assertEqual(len(far.nodes), K)
        result, to_ping = t.add(nid((ID_SPACE >> 1) + 500), "10.0.0.9", 9, 0)
        self.assertEqual(result, "cached")
        self.assertEqual(to_ping, [])  # everyone in the bucket is good
        self.assertEqual(len(far.replacements), 2)  # the 9th node and this one
        self.assertEqual(len(far.nodes), K)

    def test_questionable_nodes_are_pinged_and_bad_ones_replaced(self) -> None:
        t = RoutingTable(OWN, now=0)
        ids = [nid((ID_SPACE >> 1) + i) for i in range(K + 1)]
        for i, x in enumerate(ids):
            t.add(x, "10.0.0.1", 1000 + i, 0)
        later = GOOD_WINDOW + 1
        result, to_ping = t.add(nid((ID_SPACE >> 1) + 999), "10.0.0.9", 9, later)
        self.assertEqual(result, "cached")
        self.assertEqual(len(to_ping), K)  # all silent for 15 minutes: questionable
        victim = to_ping[0]
        self.assertFalse(t.failed(victim.id, later))  # one miss: still questionable
        self.assertEqual(victim.state(later), "questionable")
        self.assertTrue(t.failed(victim.id, later))  # two: bad, replaced by the cached node
        self.assertIsNone(t.get(victim.id))
        self.assertIsNotNone(t.get(nid((ID_SPACE >> 1) + 999)))

    def test_bad_node_replaced_directly(self) -> None:
        t = RoutingTable(OWN, now=0)
        far_ids = [nid((ID_SPACE >> 1) + i) for i in range(K)]
        for i, x in enumerate(far_ids):
            t.add(x, "10.0.0.1", 1000 + i, 0)
        t.add(nid(5), "10.0.0.1", 5, 0)  # splits: the far half keeps its K nodes, no replacements
        self.assertEqual(len(t.buckets), 2)
        t.failed(far_ids[0], 1)
        t.failed(far_ids[0], 1)  # bad, but no replacement yet: kept (and skipped by closest)
        self.assertIsNotNone(t.get(far_ids[0]))
        self.assertNotIn(far_ids[0], [e.id for e in t.closest(far_ids[0])])
        self.assertEqual(t.add(nid((ID_SPACE >> 1) + 777), "10.0.0.7", 7, 2)[0], "replaced")
        self.assertIsNone(t.get(far_ids[0]))

    def test_node_states(self) -> None:
        t = RoutingTable(OWN, now=0)
        t.add(nid(5), "10.0.0.1", 1, 100)
        e = t.get(nid(5))
        assert e is not None
        self.assertEqual(e.state(100 + GOOD_WINDOW), "good")
        self.assertEqual(e.state(101 + GOOD_WINDOW), "questionable")
        # Answered once, queried us recently: good again.
        t.heard_query(nid(5), "10.0.0.1", 1, 200 + GOOD_WINDOW)
        self.assertEqual(e.state(200 + GOOD_WINDOW), "good")
        # A query from another address does not count.
        self.assertIsNone(t.heard_query(nid(5), "10.0.0.66", 1, 300 + 2 * GOOD_WINDOW))
        self.assertEqual(e.state(301 + 2 * GOOD_WINDOW), "questionable")
        # A loaded node that never answered is questionable.
        t.load([(nid(6), "10.0.0.2", 2)], 0)
        loaded = t.get(nid(6))
        assert loaded is not None
        self.assertEqual(loaded.state(0), "questionable")

    def test_address_change_refused_for_live_node(self) -> None:
        t = RoutingTable(OWN, now=0)
        t.add(nid(5), "10.0.0.1", 1, 0)
        self.assertEqual(t.add(nid(5), "10.0.0.2", 1, 1)[0], "refused")
        self.assertEqual(t.get(nid(5)).ip, "10.0.0.1")  # type: ignore[union-attr]

    def test_own_id_refused(self) -> None:
        t = RoutingTable(OWN, now=0)
        self.assertEqual(t.add(OWN, "10.0.0.1", 1, 0)[0], "refused")
        self.assertFalse(t.wants(OWN, "10.0.0.1"))

    def test_one_node_per_public_ip(self) -> None:
        t = RoutingTable(OWN, now=0, restrict_ips=True)
        self.assertEqual(t.add(nid(5), "8.8.8.8", 1, 0)[0], "added")
        self.assertEqual(t.add(nid(6), "8.8.8.8", 2, 0)[0], "refused")
        self.assertFalse(t.wants(nid(7), "8.8.8.8"))
        # Loopback and private networks are exempt (tests, LANs).
        self.assertEqual(t.add(nid(8), "127.0.0.1", 1, 0)[0], "added")
        self.assertEqual(t.add(nid(9), "127.0.0.1", 2, 0)[0], "added")

    def test_refresh_after_fifteen_minutes_of_silence(self) -> None:
        t = RoutingTable(OWN, now=0)
        for i in range(K + 1):
            t.add(nid((ID_SPACE >> 1) + i), "10.0.0.1", 1000 + i, 0)
        self.assertEqual(t.stale_buckets(REFRESH_AFTER - 1), [])
        far = t.bucket_for(ID_SPACE - 1)
        t.add(nid((ID_SPACE >> 1) + 3), "10.0.0.1", 1003, 600)  # an answer touches the bucket
        stale = t.stale_buckets(REFRESH_AFTER)
        self.assertNotIn(far, stale)
        self.assertEqual(len(stale), len(t.buckets) - 1)
        rid = RoutingTable.random_id_in(stale[0], random.Random(1))
        self.assertTrue(stale[0].covers(int.from_bytes(rid, "big")))

    def test_wants(self) -> None:
        t = RoutingTable(OWN, now=0)
        self.assertTrue(t.wants(nid(1), "10.0.0.1"))
        t.add(nid(1), "10.0.0.1", 1, 0)
        self.assertFalse(t.wants(nid(1), "10.0.0.1"))


class ClosestTests(SynchronousTestCase):
    @settings(max_examples=60, deadline=None)
    @given(st.integers(0, 2**32), st.integers(1, 300), st.binary(min_size=20, max_size=20))
    def test_closest_matches_brute_force(self, seed: int, n: int, target: bytes) -> None:
        rng = random.Random(seed)
        own = rng.randbytes(20)
        t = RoutingTable(own, now=0)
        for i in range(n):
            # Mix random ids with ids near the target (dense neighbourhoods).
            x = (
                rng.randbytes(20)
                if i % 3
                else bytes(
                    a ^ b
                    for a, b in zip(
                        target, nid(rng.randrange(1 << rng.randrange(1, 160))), strict=True
                    )
                )
            )
            t.add(x, "10.0.0.1", 1 + i, 0)
        ti = int.from_bytes(target, "big")
        want = sorted((e.id_int ^ ti, e.id) for e in t.entries())[:K]
        self.assertEqual([e.id for e in t.closest(target)], [x for _, x in want])

    def test_closest_skips_bad_nodes(self) -> None:
        t = RoutingTable(OWN, now=0)
        for i in range(1, 20):
            t.add(nid(i << 140), "10.0.0.1", i, 0)
        t.failed(nid(1 << 140), 0)
        t.failed(nid(1 << 140), 0)
        got = [e.id for e in t.closest(nid(1 << 140))]
        self.assertEqual(len(got), K)
        self.assertNotIn(nid(1 << 140), got)


class Bep42Tests(SynchronousTestCase):
    VECTORS = [
        ("124.31.75.21", 1, "5fbfbf"),
        ("21.75.31.124", 86, "5a3ce9"),
        ("65.23.51.170", 22, "a5d432"),
        ("84.124.73.14", 65, "1b0321"),
        ("43.213.53.83", 90, "e56f6c"),
    ]

    def test_spec_vectors(self) -> None:
        rng = random.Random(7)
        for ip, r, prefix in self.VECTORS:
            node_id = bep42.node_id_for_ip(ip, rng, r)
            # The first 21 bits are fixed; the third byte's low 3 bits are random.
            top = int.from_bytes(node_id[:3], "big") >> 3
            self.assertEqual(top, int(prefix, 16) >> 3, ip)
            self.assertEqual(node_id[19], r)
            self.assertTrue(bep42.id_matches_ip(node_id, ip))
            self.assertFalse(bep42.id_matches_ip(node_id, "8.8.4.4"))

    def test_crc32c(self) -> None:
        self.assertEqual(bep42.crc32c(b"123456789"), 0xE3069283)

    def test_ipv6_and_exempt(self) -> None:
        rng = random.Random(3)
        node_id = bep42.node_id_for_ip("2001:4860:4860::8888", rng)
        self.assertTrue(bep42.id_matches_ip(node_id, "2001:4860:4860::8888"))
        self.assertTrue(bep42.id_matches_ip(b"\0" * 20, "127.0.0.1"))
        self.assertTrue(bep42.id_matches_ip(b"\0" * 20, "192.168.1.2"))

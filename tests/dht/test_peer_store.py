"""The peers announced to a node (:mod:`tgateway.dht.peer_store`): bounds, expiry, refresh."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tgateway.dht.answers import MAX_VALUES
from tgateway.dht.krpc import pack_addr
from tgateway.dht.peer_store import PEER_TTL, PeerStore

IH = b"H" * 20


class PeerStoreTests(SynchronousTestCase):
    def test_bounds_and_expiry(self) -> None:
        store = PeerStore(max_torrents=2, max_peers=3)
        rng = random.Random(1)
        for i in range(5):
            self.assertTrue(store.add(IH, pack_addr(f"10.0.0.{i}", 80), i))
        self.assertEqual(
            store.get(IH, 5, 10, rng), [pack_addr(f"10.0.0.{i}", 80) for i in (2, 3, 4)]
        )
        self.assertTrue(store.add(b"B" * 20, pack_addr("10.0.0.1", 80), 5))
        self.assertFalse(store.add(b"C" * 20, pack_addr("10.0.0.1", 80), 5))  # full
        # 30 minutes later the first torrent's peers are gone, which frees a slot.
        self.assertEqual(
            store.get(IH, 2 + PEER_TTL, 10, rng), [pack_addr(f"10.0.0.{i}", 80) for i in (3, 4)]
        )
        self.assertTrue(store.add(b"C" * 20, pack_addr("10.0.0.1", 80), 10 + PEER_TTL))
        self.assertNotIn(IH, store)
        self.assertEqual(store.torrent_count, 1)  # B expired as well

    def test_reannounce_refreshes(self) -> None:
        store = PeerStore(10, 10)
        p = pack_addr("10.0.0.1", 80)
        store.add(IH, p, 0)
        store.add(IH, p, PEER_TTL - 1)
        self.assertEqual(store.get(IH, PEER_TTL + 1, 10, random.Random()), [p])
        store.expire(2 * PEER_TTL)
        self.assertEqual(store.peer_count, 0)

    def test_values_are_capped(self) -> None:
        store = PeerStore(10, 500)
        for i in range(200):
            store.add(IH, pack_addr(f"10.0.{i // 250}.{i % 250 + 1}", 80), 0)
        got = store.get(IH, 0, MAX_VALUES, random.Random(2))
        self.assertEqual(len(set(got)), MAX_VALUES)

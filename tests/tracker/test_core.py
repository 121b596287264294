"""BEP 15 connection ids (:class:`~tgateway.tracker.core.ConnectionIds`): no per-client state."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tests.protocols import assert_implements
from tgateway.tracker.core import ConnectionIds, SwarmStore
from tgateway.tracker.memory import MemorySwarmStore


class ConnectionIdTests(SynchronousTestCase):
    def test_valid_for_two_minutes_for_that_address_only(self) -> None:
        ids = ConnectionIds(random.Random(3).randbytes, now=1000.0)
        cid = ids.issue(b"addr1", 1000.0)
        self.assertTrue(ids.check(cid, b"addr1", 1000.0))
        self.assertTrue(ids.check(cid, b"addr1", 1120.0))
        self.assertFalse(ids.check(cid, b"addr1", 1121.0))
        self.assertFalse(ids.check(cid, b"addr2", 1000.0))
        self.assertFalse(ids.check(cid ^ 1, b"addr1", 1000.0))
        self.assertFalse(ids.check(0x41727101980, b"addr1", 1000.0))

    def test_survives_one_rotation(self) -> None:
        ids = ConnectionIds(random.Random(3).randbytes, now=0.0, rotate=200)
        cid = ids.issue(b"a", 190.0)
        ids.issue(b"b", 201.0)  # rotates
        self.assertTrue(ids.check(cid, b"a", 250.0))
        new = ids.issue(b"a", 250.0)
        self.assertTrue(ids.check(new, b"a", 260.0))

    def test_wraps_around_16_bit_time(self) -> None:
        ids = ConnectionIds(random.Random(3).randbytes, now=65530.0)
        cid = ids.issue(b"a", 65530.0)
        self.assertTrue(ids.check(cid, b"a", 65600.0))
        self.assertFalse(ids.check(cid, b"a", 65530.0 + 65536))


class SwarmStoreSeamTests(SynchronousTestCase):
    def test_the_memory_store_is_a_swarm_store(self) -> None:
        """Everything the front ends and the service call is on the seam, and implemented."""
        assert_implements(MemorySwarmStore(random.Random(1)), SwarmStore)

    def test_the_built_tracker_is_the_peers_local_tracker(self) -> None:
        """The peer's announcer lists the gateway's own peer through this face."""
        from tgateway.tracker.core import LocalPeers
        from tgateway.tracker.service import Tracker

        assert_implements(Tracker, LocalPeers)

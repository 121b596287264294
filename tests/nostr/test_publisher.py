"""The publisher seam (:mod:`tgateway.nostr.publisher`) is what the outbox implements."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.protocols import assert_implements
from tgateway.nostr.outbox import Outbox, RelaySender
from tgateway.nostr.pool import RelayPool
from tgateway.nostr.publisher import Publisher
from tgateway.storage.db import SyncDatabase
from tgateway.storage.nostr_outbox import OutboxStore


class PublisherSeamTests(SynchronousTestCase):
    def test_the_outbox_is_a_publisher_and_the_pool_a_relay_sender(self) -> None:
        db = SyncDatabase()
        db.open()
        self.addCleanup(db.close)
        clock = Clock()
        pool = RelayPool(clock)  # type: ignore[arg-type]
        assert_implements(Outbox(OutboxStore(db), pool, clock), Publisher)
        assert_implements(pool, RelaySender)

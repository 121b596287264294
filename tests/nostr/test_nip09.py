"""NIP-09: a deleted file's NIP-35 and NIP-71 events are retracted (kind 5, ``e`` and ``k``
tags) on the relays that got them; a file stored again is announced afresh; nothing is published
for a banned uploader."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.nostr.test_service import LINKS, SHA, FakeStore, stored_file
from tgateway.config import NostrConfig
from tgateway.nostr.event import EventTemplate
from tgateway.nostr.nip09 import deletion_template
from tgateway.nostr.nip71 import VideoAnnouncer
from tgateway.nostr.service import NostrService
from tgateway.storage.db import SyncDatabase
from tgateway.storage.model import Ownership, UploadContext
from tgateway.storage.nostr_outbox import ACCEPTED, REJECTED
from tgateway.transcode.api import VideoResults
from tgateway.transcode.probe import ProbeResult

RELAY_A = "ws://a.test"
RELAY_B = "ws://b.test"
UPLOADER = "ee" * 32


def run(coro: Any) -> Deferred[Any]:
    return Deferred.fromCoroutine(coro)


PROBE = ProbeResult(duration=1.0, width=2, height=1, rotation=0, fps=10.0, video_codec="vp9",
                    audio_codec="opus", bitrate=100)


class OwnedStore(FakeStore):
    """The test_service store, with the owners the NIP-71 announcer reads."""

    def __init__(self) -> None:
        super().__init__()
        self.owner_keys: list[str] = []

    async def owners(self, sha256: str) -> list[Ownership]:
        return [Ownership(sha256=sha256, owner=k, name="n", title=None, description=None,
                          announce_dht=True, source="api", created_at=1.0)
                for k in self.owner_keys]


class Banned:
    def __init__(self, *keys: str) -> None:
        self.keys = set(keys)

    def is_banned(self, pubkey: str) -> bool:
        return pubkey in self.keys


class TemplateTests(SynchronousTestCase):
    def test_e_and_k_tags(self) -> None:
        t = deletion_template([("aa" * 32, 2003), ("bb" * 32, 21), ("aa" * 32, 2003)], 7)
        self.assertEqual(t, EventTemplate(kind=5, created_at=7, tags=(
            ("e", "aa" * 32), ("e", "bb" * 32), ("k", "21"), ("k", "2003")),
            content="removed from this gateway"))
        self.assertRaises(ValueError, deletion_template, [], 7)


class RetractTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: shutil.rmtree(self.tmp, True))
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.store = OwnedStore()
        self.bans = Banned()
        self.svc = NostrService(NostrConfig(relays=(RELAY_A, RELAY_B)), data_dir=self.tmp,
                                db=self.db, links=LINKS, reactor=self.clock, store=self.store,
                                bans=self.bans)
        # as tap subscribes the component
        self.store.subscribe_stored(self.svc.announcer.on_stored)
        self.store.subscribe_deleted(self.svc.retractor.on_deleted)

    def video(self, relays: tuple[str, ...] = (RELAY_A,)) -> VideoAnnouncer:
        return VideoAnnouncer(sign=self.svc.sign, outbox=self.svc.outbox, relays=relays,
                              clock=self.clock, links=LINKS, store=self.store,  # type: ignore[arg-type]
                              bans=self.bans)

    def outbox_rows(self) -> list[tuple[str, int, str]]:
        return self.db.run_sync(lambda c: [tuple(r) for r in c.execute(
            "SELECT e.ref, e.kind, d.relay_url FROM nostr_outbox_events e JOIN"
            " nostr_outbox_deliveries d ON d.event_id = e.id ORDER BY e.queued_at, d.relay_url")])

    def settle(self, status_a: str, status_b: str) -> None:
        """The relays' answers to every pending delivery so far."""
        for relay, status in ((RELAY_A, status_a), (RELAY_B, status_b)):
            self.db.run_sync(lambda c, r=relay, s=status: c.execute(
                "UPDATE nostr_outbox_deliveries SET status = ? WHERE relay_url = ?"
                " AND status = 'pending'", (s, r)))

    def test_deleted_file_is_retracted_on_the_relays_that_got_it(self) -> None:
        self.successResultOf(self.store.fire(stored_file(), UploadContext(owner=UPLOADER)))
        [(announcement, _)] = [(d.event_id, d) for d in self.successResultOf(run(
            self.svc.outbox.deliveries_for_ref(SHA))) if d.relay_url == RELAY_A]
        self.settle(ACCEPTED, REJECTED)  # B refused the announcement: it has nothing to delete
        # a NIP-71 event about the same file (ref nip71:<sha256>), still pending on A
        nip71 = self.successResultOf(run(self.video().video_ready(
            VideoResults(stored_file(), PROBE))))
        deletion = self.successResultOf(self.store.delete(SHA))
        self.assertEqual(deletion.kind, 5)
        self.assertEqual(deletion.pubkey, self.svc.pubkey)
        self.assertEqual(sorted(deletion.tag_values("e")), sorted([announcement, nip71.id]))
        self.assertEqual(sorted(deletion.tag_values("k")), ["2003", "21"])
        self.assertEqual([r for r in self.outbox_rows() if r[1] == 5],
                         [("nip09:" + SHA, 5, RELAY_A)])
        # deleted again (stored and deleted meanwhile, nothing new published): nothing more
        self.store.files[SHA] = stored_file()
        self.assertIsNone(self.successResultOf(self.store.delete(SHA)))

    def test_a_file_stored_again_is_announced_afresh(self) -> None:
        self.successResultOf(self.store.fire(stored_file(), UploadContext()))
        self.successResultOf(self.store.fire(stored_file(), UploadContext()))
        self.assertEqual(len([r for r in self.outbox_rows() if r[1] == 2003]), 2)  # 2 relays
        self.settle(ACCEPTED, ACCEPTED)
        self.assertIsNotNone(self.successResultOf(self.store.delete(SHA)))
        self.clock.advance(5)
        self.successResultOf(self.store.fire(stored_file(), UploadContext()))
        self.assertEqual(len([r for r in self.outbox_rows() if r[1] == 2003]), 4)
        # and that one is retracted in turn, alone
        self.settle(ACCEPTED, ACCEPTED)
        again = self.successResultOf(self.store.delete(SHA))
        self.assertEqual(len(again.tag_values("e")), 1)

    def test_nothing_is_published_for_a_banned_uploader(self) -> None:
        self.bans.keys.add(UPLOADER)
        self.successResultOf(self.store.fire(stored_file(), UploadContext(owner=UPLOADER)))
        self.assertEqual(self.outbox_rows(), [])
        video = self.video()
        ready = VideoResults(stored_file(), PROBE)
        self.store.owner_keys = [UPLOADER]
        self.assertIsNone(self.successResultOf(run(video.video_ready(ready))))
        # an anonymous owner of the same bytes: published
        self.store.owner_keys = [UPLOADER, ""]
        self.assertIsNotNone(self.successResultOf(run(video.video_ready(ready))))
        self.bans.keys.clear()
        self.clock.advance(5)
        self.successResultOf(self.store.fire(stored_file(), UploadContext(owner=UPLOADER)))
        self.assertEqual(len([r for r in self.outbox_rows() if r[1] == 2003]), 2)

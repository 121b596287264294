"""NostrService wiring and the NIP-35 announcer, with an in-memory database and a fake store."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.config import ConfigError, NostrConfig
from tgateway.links import Links
from tgateway.nostr.event import parse_event
from tgateway.nostr.keys import KEY_FILE, decode
from tgateway.nostr.service import NostrService
from tgateway.storage.db import SyncDatabase
from tgateway.storage.model import StoredEvent, StoredFile, UploadContext

SHA = "ab" * 32
IH = "cd" * 20
LINKS = Links(
    base_url="http://gw.test:9877",
    tracker_urls=(
        "http://gw.test:9877/announce",
        "udp://gw.test:6969/announce",
        "ws://gw.test:9877/announce",
    ),
    blossom_url="http://gw.test:8082",
)


def stored_file(sha: str = SHA) -> StoredFile:
    return StoredFile(
        sha256=sha,
        size=1234,
        name="clip one.mp4",
        mime="video/mp4",
        storage="blob",
        piece_length=16384,
        info_hash=IH,
        info=b"d4:name12:clip one.mp4e",
        created_at=1.0,
    )


class FakeStore:
    def __init__(self) -> None:
        self.subscribers: list[Any] = []
        self.files: dict[str, StoredFile] = {}

    def subscribe_stored(self, cb: Any) -> None:
        self.subscribers.append(cb)

    async def get(self, sha256: str) -> StoredFile | None:
        return self.files.get(sha256)

    def fire(self, f: StoredFile, context: UploadContext) -> Deferred[Any]:
        self.files[f.sha256] = f
        return Deferred.fromCoroutine(self.subscribers[0](StoredEvent(f, context, True)))


class ServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: shutil.rmtree(self.tmp, True))
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.store = FakeStore()

    def service(self, **kw: Any) -> NostrService:
        kw.setdefault("relays", ("ws://relay.test",))
        svc = NostrService(
            NostrConfig(**kw),
            data_dir=self.tmp,
            db=self.db,
            links=LINKS,
            reactor=self.clock,
            store=self.store,
        )
        self.store.subscribe_stored(svc.announcer.on_stored)  # as tap subscribes the component
        return svc

    def deliveries(self, svc: NostrService, sha: str = SHA) -> list[dict[str, Any]]:
        return self.successResultOf(Deferred.fromCoroutine(svc.announcer.announcements(sha)))

    def test_identity_and_key_file(self) -> None:
        svc = self.service()
        path = os.path.join(self.tmp, KEY_FILE)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        ident = svc.identity()
        self.assertEqual(decode(ident["npub"]), ("npub", ident["pubkey"]))
        self.assertEqual(ident["relays"], ["ws://relay.test"])
        # same key next time
        self.assertEqual(self.service().pubkey, svc.pubkey)
        # the pool starts before the outbox (and stops after it)
        self.assertEqual(list(svc), [svc.pool, svc.outbox])

    def test_start_and_stop(self) -> None:
        svc = self.service(video_relays=("wss://video.test",))
        svc.startService()
        self.assertEqual(sorted(svc.pool.urls), ["ws://relay.test", "wss://video.test"])
        self.assertEqual(len(self.clock.tcpClients), 2)  # connecting through the reactor
        self.successResultOf(svc.stopService())

    def test_bad_config(self) -> None:
        with self.assertRaises(ConfigError) as cm:
            self.service(relays=("https://not-a-relay",))
        self.assertIn("nostr.relays", str(cm.exception))
        with self.assertRaises(ConfigError) as cm:
            self.service(private_key="nope")
        self.assertIn("nostr.private_key", str(cm.exception))

    def test_announce_on_stored_once(self) -> None:
        svc = self.service()
        context = UploadContext(
            owner="ee" * 32, title="Clip One", description="my clip", tags=("Holiday",)
        )
        self.successResultOf(self.store.fire(stored_file(), context))
        [row] = self.deliveries(svc)
        self.assertEqual(
            (row["relay"], row["status"], row["kind"]), ("ws://relay.test", "pending", 2003)
        )
        event_json = self.db.run_sync(
            lambda conn: conn.execute("SELECT event_json FROM nostr_outbox_events").fetchone()[0]
        )
        event = parse_event(json.loads(event_json))
        self.assertEqual(event.pubkey, svc.pubkey)
        self.assertEqual(event.content, "my clip")
        self.assertEqual(event.first_tag("title"), "Clip One")
        self.assertEqual(event.first_tag("x"), IH)
        self.assertEqual(event.tag_values("tracker"), list(LINKS.tracker_urls))
        self.assertEqual(event.tag_values("t"), ["holiday"])
        self.assertEqual(event.tag_values("i"), ["tcat:video"])
        self.assertEqual(event.first_tag("blossom"), f"http://gw.test:8082/{SHA}")
        self.assertEqual(event.first_tag("webseed"), LINKS.webseed(stored_file()))
        self.assertEqual(event.first_tag("magnet"), LINKS.magnet(stored_file()))
        self.assertEqual(event.first_tag("m"), "video/mp4")
        self.assertIn(("file", "clip one.mp4", "1234"), event.tags)
        # the same bytes uploaded again: not announced twice
        self.successResultOf(self.store.fire(stored_file(), UploadContext()))
        self.assertEqual(len(self.deliveries(svc)), 1)
        # on demand: a fresh event
        event2 = self.successResultOf(Deferred.fromCoroutine(svc.announcer.announce(SHA)))
        self.assertIsNotNone(event2)
        self.assertEqual(len(self.deliveries(svc)), 2)
        self.assertIsNone(
            self.successResultOf(Deferred.fromCoroutine(svc.announcer.announce("00" * 32)))
        )

    def test_switches(self) -> None:
        for kw in (dict(publish_nip35=False), dict(auto_publish=False), dict(relays=())):
            self.store = FakeStore()
            svc = self.service(**kw)
            self.successResultOf(self.store.fire(stored_file(), UploadContext()))
            self.assertEqual(self.deliveries(svc), [], kw)

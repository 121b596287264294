"""NostrService wiring and the NIP-35 announcer, with an in-memory database and a fake store."""

from __future__ import annotations

import dataclasses
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
from tgateway.nostr.event import Event, parse_event
from tgateway.nostr.keys import KEY_FILE, decode
from tgateway.nostr.service import NostrService
from tgateway.storage.db import SyncDatabase
from tgateway.storage.model import Ownership, StoredEvent, StoredFile, UploadContext
from tgateway.transcode.probe import ProbeResult

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
        self.deleted: list[Any] = []
        self.files: dict[str, StoredFile] = {}
        self.owned: list[Ownership] = []

    def subscribe_stored(self, cb: Any) -> None:
        self.subscribers.append(cb)

    def subscribe_deleted(self, cb: Any) -> None:
        self.deleted.append(cb)

    def delete(self, sha256: str) -> Deferred[Any]:
        f = self.files.pop(sha256)
        return Deferred.fromCoroutine(self.deleted[0](f))

    async def get(self, sha256: str) -> StoredFile | None:
        return self.files.get(sha256)

    async def owners(self, sha256: str) -> list[Ownership]:
        return [o for o in self.owned if o.sha256 == sha256]

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

    def service(self, await_video_probe: bool = False, **kw: Any) -> NostrService:
        kw.setdefault("relays", ("ws://relay.test",))
        svc = NostrService(
            NostrConfig(**kw),
            data_dir=self.tmp,
            db=self.db,
            links=LINKS,
            reactor=self.clock,
            store=self.store,
            await_video_probe=await_video_probe,
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
        self.assertEqual(event.tag_values("t"), ["torrent", "video", "holiday"])
        self.assertEqual(event.tag_values("i"), ["tcat:video"])
        self.assertEqual(event.first_tag("tcat"), "video")
        self.assertIn(("blossom", SHA, f"http://gw.test:8082/{SHA}"), event.tags)
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

    def event(self, n: int = 0) -> Event:
        rows = self.db.run_sync(
            lambda conn: conn.execute("SELECT event_json FROM nostr_outbox_events").fetchall())
        return parse_event(json.loads(rows[n][0]))

    def test_content_is_a_human_line_without_a_description(self) -> None:
        svc = self.service()
        self.successResultOf(self.store.fire(stored_file(), UploadContext(description="  ")))
        self.assertEqual(len(self.deliveries(svc)), 1)
        self.assertEqual(self.event().content, "New torrent: clip one.mp4")

    def test_a_video_is_announced_once_examined_with_the_seeds_video_tags(self) -> None:
        svc = self.service(await_video_probe=True)
        video = stored_file()
        self.successResultOf(self.store.fire(video, UploadContext(title="Clip")))
        self.assertEqual(self.deliveries(svc), [])  # waits for the transcoder's probe
        # a file that is not a video goes out at once
        doc = dataclasses.replace(stored_file("ef" * 32), mime="application/pdf", name="a.pdf")
        self.successResultOf(self.store.fire(doc, UploadContext()))
        self.assertEqual(len(self.deliveries(svc, doc.sha256)), 1)
        self.assertNotIn("stream", [t[0] for t in self.event(0).tags])
        self.assertEqual(self.event(0).tag_values("t"), ["torrent"])

        probe = ProbeResult(duration=3600.0, width=1920, height=1080, rotation=0, fps=30.0,
                            video_codec="h264", audio_codec="aac", bitrate=4_000_000)
        self.successResultOf(Deferred.fromCoroutine(
            svc.announcer.video_found(video, probe, True)))
        [row] = self.deliveries(svc)
        event = self.event(1)
        self.assertEqual(event.first_tag("title"), "Clip")  # the upload's context was kept
        self.assertEqual(event.content, "New torrent: clip one.mp4")
        self.assertEqual(event.first_tag("stream"), LINKS.stream(video))
        self.assertEqual(event.first_tag("hls"), f"http://gw.test:9877/api/stream/{SHA}/playlist.m3u8")
        self.assertEqual(event.first_tag("transcoded"),
                         f"http://gw.test:9877/api/stream/{SHA}?transcoded=true")
        self.assertEqual(event.first_tag("duration"), "3600")
        self.assertIn(("video", "1920x1080", "30fps", "h264"), event.tags)
        self.assertEqual(event.tag_values("t"), ["torrent", "video", "streaming"])
        self.assertEqual(event.first_tag("tcat"), "video,streaming")
        self.assertEqual(event.tag_values("i"), ["tcat:video,streaming"])
        # reported again (a re-probe): not announced twice
        self.successResultOf(Deferred.fromCoroutine(
            svc.announcer.video_found(video, probe, True)))
        self.assertEqual(len(self.deliveries(svc)), 1)

    def test_a_video_not_probed_is_announced_without_video_tags(self) -> None:
        svc = self.service(await_video_probe=True)
        self.successResultOf(self.store.fire(stored_file(), UploadContext()))
        self.successResultOf(Deferred.fromCoroutine(
            svc.announcer.video_found(stored_file(), None, False)))
        self.assertEqual(len(self.deliveries(svc)), 1)
        names = [t[0] for t in self.event().tags]
        for seed_video_tag in ("stream", "hls", "transcoded", "duration", "video"):
            self.assertNotIn(seed_video_tag, names)
        self.assertEqual(self.event().tag_values("t"), ["torrent", "video"])

    def test_a_video_examined_after_a_restart_is_announced_with_its_kept_context(self) -> None:
        # no "stored" event in this life: the store kept the uploaders' references
        svc = self.service(await_video_probe=True)
        video = stored_file()
        self.store.files[video.sha256] = video
        self.store.owned = [
            Ownership(SHA, "transcode:" + SHA, "x.mp4", "not this", "nor this", False,
                      "transcode", 0.5),
            Ownership(SHA, "aa" * 32, "clip one.mp4", None, None, True, "api", 1.0),
            Ownership(SHA, "bb" * 32, "clip.mp4", "Clip", "A clip.", True, "blossom", 2.0),
        ]
        self.successResultOf(Deferred.fromCoroutine(
            svc.announcer.video_found(video, None, False)))
        self.assertEqual(len(self.deliveries(svc)), 1)
        self.assertEqual(self.event().first_tag("title"), "Clip")
        self.assertEqual(self.event().content, "A clip.")
        # reported again (the next start, before the probe is recorded): not announced twice
        self.successResultOf(Deferred.fromCoroutine(
            svc.announcer.video_found(video, None, False)))
        self.assertEqual(len(self.deliveries(svc)), 1)

    def test_a_probed_video_in_the_metadata_goes_out_at_once(self) -> None:
        svc = self.service(await_video_probe=True)
        probe = ProbeResult(duration=2.0, width=640, height=360, rotation=0, fps=25.0,
                            video_codec="vp9", audio_codec=None, bitrate=1000)
        f = dataclasses.replace(stored_file(), meta={"video": probe.to_json()})
        self.successResultOf(self.store.fire(f, UploadContext()))
        self.assertEqual(len(self.deliveries(svc)), 1)
        self.assertIn(("video", "640x360", "25fps", "vp9"), self.event().tags)
        self.assertNotIn("hls", [t[0] for t in self.event().tags])  # not transcoded

    def test_switches(self) -> None:
        for kw in (dict(publish_nip35=False), dict(auto_publish=False), dict(relays=())):
            self.store = FakeStore()
            svc = self.service(**kw)
            self.successResultOf(self.store.fire(stored_file(), UploadContext()))
            self.assertEqual(self.deliveries(svc), [], kw)

"""A video stored, then the gateway stopped or killed before its probe ended: the next start
examines it as if just stored (probe, job, NIP-35 with the title the store kept).

Real store and database file (each "life" opens them again, as a restart does), the NIP-35
and NIP-71 announcers (the outbox, durable, faked), FFmpeg faked by the reactor (its clock
injected).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tests.nostr.test_nip71 import KEY, LINKS, FakeOutbox
from tests.transcode.test_process import FakeReactor, ended
from tgateway.config import StorageConfig, TranscodingConfig
from tgateway.nostr.announce import TorrentAnnouncer
from tgateway.nostr.event import Event, sign
from tgateway.nostr.nip71 import VideoAnnouncer
from tgateway.storage.db import SyncDatabase
from tgateway.storage.disk import DiskLayout
from tgateway.storage.model import StoredFile, UploadContext
from tgateway.storage.store import LocalContentStore
from tgateway.transcode.service import Transcoder
from tgateway.transcode.tools import FFmpegTools

CS = 16384
TOOLS = FFmpegTools("/usr/bin/ffmpeg", "/usr/bin/ffprobe", "path")
FFPROBE_JSON = json.dumps({
    "format": {"duration": "2.0", "bit_rate": "300000"},
    "streams": [{"codec_type": "video", "codec_name": "vp9", "width": 1280, "height": 720,
                 "avg_frame_rate": "10/1", "pix_fmt": "yuv420p"}]}).encode()


class Life:
    """One run of the gateway's storage, Nostr announcers and transcoder."""

    def __init__(self, test: RestartTests, tools: FFmpegTools | None) -> None:
        self.outbox = test.outbox
        self.reactor = FakeReactor()
        self.reactor.advance(1_700_000_000)
        self.db = SyncDatabase(str(test.dir / "metadata.db"))
        self.db.open()
        self.store = LocalContentStore(
            reactor=self.reactor, db=self.db,  # type: ignore[arg-type]
            layout=DiskLayout(test.dir / "b", test.dir / "c"),
            config=StorageConfig(blob_threshold=4 * CS, chunk_size=CS), threaded=False)
        self.store.start()
        key = PrivateKey(KEY)
        self.torrents = TorrentAnnouncer(
            key=key, outbox=self.outbox, links=LINKS, relays=("wss://relay.test",),
            clock=self.reactor, get_file=self.store.get, get_owners=self.store.owners,
            await_video_probe=True)
        videos = VideoAnnouncer(sign=lambda t: sign(t, key), outbox=self.outbox,
                                relays=("wss://video.test",), clock=self.reactor, links=LINKS,
                                store=self.store, torrents=self.torrents)
        self.transcoder = Transcoder(
            config=TranscodingConfig(min_file_size=0, work_dir=str(test.dir / "work")),
            store=self.store, db=self.db, reactor=self.reactor,  # type: ignore[arg-type]
            tools=tools, videos=videos)
        self.store.subscribe_stored(self.torrents.on_stored)  # as tap subscribes components
        self.store.subscribe_stored(self.transcoder.on_stored)
        self.transcoder.startService()
        self.reactor.advance(0)

    def upload(self, test: SynchronousTestCase, title: str) -> StoredFile:
        ingest = self.store.begin_upload(size_hint=3000, max_size=3000)
        ingest.write(os.urandom(3000))
        d = Deferred.fromCoroutine(self.store.commit(
            ingest, UploadContext(owner="aa" * 32, name="holiday.webm", title=title,
                                  description="Two seconds of it.")))
        return test.successResultOf(d).file

    def probes(self) -> list[Any]:
        return [proto for proto, exe, _ in self.reactor.spawned if exe == TOOLS.ffprobe]

    def torrent_events(self) -> list[Event]:
        return [e for e, _, _ in self.outbox.published if e.kind == 2003]

    def get(self, test: SynchronousTestCase, sha: str) -> StoredFile:
        f = test.successResultOf(Deferred.fromCoroutine(self.store.get(sha)))
        assert f is not None
        return f

    def unexamined(self, test: SynchronousTestCase) -> list[str]:
        return [f.sha256 for f in test.successResultOf(
            Deferred.fromCoroutine(self.store.unexamined_videos()))]


class RestartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tgateway-transcode-restart-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.outbox = FakeOutbox()  # the outbox is durable: one for every life

    def kill(self, life: Life) -> None:
        """kill -9: nothing more runs in that life; what it committed stays."""
        life.db.close()

    def check_announced_once_examined(self, life: Life, f: StoredFile) -> None:
        [event] = life.torrent_events()
        self.assertEqual(event.first_tag("title"), "Holiday")  # kept in file_owners
        self.assertEqual(event.content, "Two seconds of it.")
        self.assertEqual(event.first_tag("stream"), LINKS.stream(f))
        self.assertEqual(event.first_tag("hls"), LINKS.hls(f))  # its job is queued
        self.assertIn(("video", "1280x720", "10fps", "vp9"), event.tags)
        self.assertEqual(life.get(self, f.sha256).meta["video"]["width"], 1280)  # type: ignore[index]
        job = self.successResultOf(Deferred.fromCoroutine(life.transcoder.job(f.sha256)))
        self.assertIsNotNone(job)
        self.assertEqual(life.unexamined(self), [])

    def test_killed_while_probing_the_next_start_probes_queues_and_announces(self) -> None:
        first = Life(self, TOOLS)
        f = first.upload(self, "Holiday")
        first.reactor.advance(0)  # the "stored" event: the probe runs
        self.assertEqual(len(first.probes()), 1)
        self.assertEqual(first.outbox.published, [])  # NIP-35 waits for the probe
        self.assertEqual(first.unexamined(self), [f.sha256])
        self.kill(first)

        second = Life(self, TOOLS)
        [probe] = second.probes()  # examined at start, no "stored" event in this life
        probe.childDataReceived(1, FFPROBE_JSON)
        probe.processEnded(ended(0))
        self.check_announced_once_examined(second, f)
        self.kill(second)

        published = len(second.outbox.published)
        third = Life(self, TOOLS)  # examined now: nothing again
        self.assertEqual((third.probes(), len(third.outbox.published)), ([], published))

    def test_stopped_while_probing_records_nothing_and_the_next_start_probes(self) -> None:
        first = Life(self, TOOLS)
        f = first.upload(self, "Holiday")
        first.reactor.advance(0)
        [probe] = first.probes()
        stopped = first.transcoder.stopService()
        self.assertEqual(probe.transport.signals, ["TERM"])
        probe.processEnded(ended(None, 15))
        self.successResultOf(stopped)
        # not a probe error, not announced without its video tags: examined at the next start
        self.assertNotIn("video_error", first.get(self, f.sha256).meta)
        self.assertEqual(first.outbox.published, [])
        self.kill(first)

        second = Life(self, TOOLS)
        [probe] = second.probes()
        probe.childDataReceived(1, FFPROBE_JSON)
        probe.processEnded(ended(0))
        self.check_announced_once_examined(second, f)

    def test_a_stop_leaves_the_videos_waiting_for_a_probe_slot_unprobed(self) -> None:
        first = Life(self, TOOLS)
        files = [first.upload(self, "Holiday") for _ in range(3)]
        first.reactor.advance(0)
        self.assertEqual(len(first.probes()), 2)  # two probes at once; the third waits
        stopped = first.transcoder.stopService()
        for probe in first.probes():
            probe.processEnded(ended(None, 15))
        self.successResultOf(stopped)
        self.assertEqual(len(first.probes()), 2)  # the waiting one did not start FFmpeg
        self.assertEqual(sorted(first.unexamined(self)), sorted(f.sha256 for f in files))

    def test_without_ffmpeg_a_video_stored_before_a_kill_is_announced_at_the_next_start(
            self) -> None:
        first = Life(self, None)
        f = first.upload(self, "Holiday")
        self.kill(first)  # before the "stored" event went out

        second = Life(self, None)
        [event] = second.torrent_events()
        self.assertEqual(event.first_tag("title"), "Holiday")
        self.assertEqual(event.content, "Two seconds of it.")
        self.assertEqual(event.tag_values("t"), ["torrent", "video"])
        for seed_video_tag in ("stream", "hls", "duration", "video"):
            self.assertNotIn(seed_video_tag, [t[0] for t in event.tags])
        self.assertEqual(second.unexamined(self), [f.sha256])  # probed once FFmpeg is there
        self.kill(second)

        third = Life(self, None)  # reported again: not announced twice
        self.assertEqual(len(third.torrent_events()), 1)

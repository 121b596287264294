"""tap.makeService builds the Nostr service and the sign-in routes and wires them."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from harness.gateway import RunningGateway, small_config
from harness.ports import free_tcp_port
from tgateway.config import parse_config
from tgateway.nostr.service import NostrService
from tgateway.storage.model import StoredEvent, StoredFile, UploadContext
from tgateway.tap import makeService
from tgateway.transcode.api import ProbeResult, VideoResults
from tgateway.web.auth import RequestAuthenticator


class NostrWiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="nostr-wiring-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def build(self, **nostr: Any) -> Any:
        d = self.dir
        config = parse_config({
            "mode": "gateway-only",
            "data_dir": d,
            "gateway": {"port": 0, "host": "127.0.0.1"},
            "tracker": {"enabled": False},
            "storage": {"metadata_db": f"{d}/m.db", "blob_storage": f"{d}/b",
                        "chunk_storage": f"{d}/c"},
            "nostr": {"relays": ["wss://relay.example"], **nostr},
        })
        return makeService({"config": config}, reactor=MemoryReactorClock())

    def test_nostr_service_and_authenticator(self) -> None:
        top = self.build()
        gw = top.gateway
        (nostr,) = [s for s in top if isinstance(s, NostrService)]
        self.assertIs(gw.components.nostr, nostr)
        self.assertIs(gw.db, nostr.outbox._store._db)
        self.assertIs(gw.db, gw.components.gateway.users.sessions.db)
        self.assertIn(nostr.announcer.on_stored, gw.store._on_stored)
        self.assertEqual(nostr.announcer.relays, ("wss://relay.example",))
        self.assertTrue(nostr.announcer.auto_publish)
        api = gw.components.gateway.api
        self.assertIsInstance(api.auth, RequestAuthenticator)
        self.assertIs(api.auth, gw.components.gateway.users.auth)
        self.assertIsNotNone(gw.components.gateway.users.nip46)
        component = gw.components.named("nostr")  # /api/health reads it
        assert component is not None
        self.assertEqual(component.report, nostr.health)
        self.assertEqual(nostr.status(),
                         {"status": "ok", "npub": nostr.npub, "relays": {"wss://relay.example": False}})
        names = [s.name for s in top]
        # storage first; the sign-in service stops before the Nostr one (NIP-46 logins first)
        self.assertLess(names.index("storage"), names.index("nostr"))
        self.assertLess(names.index("nostr"), names.index("auth"))

    def test_switches_honoured(self) -> None:
        gw = self.build(auto_publish=False).gateway
        self.assertFalse(gw.components.nostr.announcer.auto_publish)
        gw = self.build(publish_nip35=False).gateway
        self.assertEqual(gw.components.nostr.announcer.relays, ())

    def test_npub_logged_at_start(self) -> None:
        nostr = self.build().gateway.components.nostr
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for child in (nostr.pool, nostr.outbox):  # only the log line is under test here
            child.startService = lambda: None
        nostr.startService()
        self.assertIn(
            nostr.npub,
            [e.get("npub") for e in events if e.get("log_format") == "Nostr identity {npub}"],
        )


class VideoSwitchesTests(TestCase):
    """``nostr.auto_publish`` and ``nostr.publish_nip71`` as the transcoder meets them: the
    video listener it is given (``deps.videos``) publishes NIP-71 only when both are on, and
    NIP-35 of a video (which waits for the probe) only when auto-publishing. The plugin runs on
    loopback; its relays are a closed loopback port (events stay pending in the outbox)."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="nostr-videos-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    async def run_video(self, **nostr: Any) -> tuple[int, int]:
        """Store a video, hand it to the transcoder's listener as probed and ready; the number
        of NIP-35 and NIP-71 events queued."""
        relay = f"ws://127.0.0.1:{free_tcp_port()}"
        gw = RunningGateway(small_config(
            tempfile.mkdtemp(dir=self.dir),
            nostr={"relays": [relay], "video_relays": [relay], **nostr}))
        self.addCleanup(gw.stop)
        videos = gw.gateway.components.transcode.videos
        self.assertIs(videos, gw.gateway.deps.videos)
        announcer = gw.gateway.components.nostr.announcer
        f = StoredFile(sha256="ab" * 32, size=10, name="v.webm", mime="video/webm",
                       storage="blob", piece_length=16384, info_hash="cd" * 20,
                       info=b"d4:name6:v.webme", created_at=1.0)
        probe = ProbeResult(duration=2.0, width=640, height=360, rotation=0, fps=25.0,
                            video_codec="vp9", audio_codec=None, bitrate=1000)
        await announcer.on_stored(StoredEvent(f, UploadContext(), True))
        await videos.video_found(f, probe, False)
        await videos.video_ready(VideoResults(f, probe))
        return (len(await announcer.announcements(f.sha256)),
                len(await videos.announcements(f.sha256)))

    async def test_defaults_publish_both(self) -> None:
        self.assertEqual(await self.run_video(), (1, 1))

    async def test_auto_publish_false_stops_nip71_too(self) -> None:
        self.assertEqual(await self.run_video(auto_publish=False), (0, 0))

    async def test_publish_nip71_false(self) -> None:
        self.assertEqual(await self.run_video(publish_nip71=False), (1, 0))

    async def test_publish_nip35_false(self) -> None:
        self.assertEqual(await self.run_video(publish_nip35=False), (0, 1))

    def test_nip71_addressable_switch(self) -> None:
        for value in (False, True):
            d = tempfile.mkdtemp(dir=self.dir)
            config = parse_config({
                "mode": "gateway-only", "data_dir": d,
                "gateway": {"port": 0, "host": "127.0.0.1"}, "tracker": {"enabled": False},
                "storage": {"metadata_db": f"{d}/m.db", "blob_storage": f"{d}/b",
                            "chunk_storage": f"{d}/c"},
                "nostr": {"nip71_addressable": value},
            })
            gw = makeService({"config": config}, reactor=MemoryReactorClock()).gateway
            self.assertIs(gw.deps.videos.addressable, value)

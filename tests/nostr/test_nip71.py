"""The NIP-71 announcer takes what the transcoder hands over and builds every URL from Links."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.protocols import assert_implements
from tgateway.links import Links
from tgateway.nostr.event import Event, sign
from tgateway.nostr.nip71 import VideoAnnouncer
from tgateway.storage.model import Ownership, StoredFile
from tgateway.storage.nostr_outbox import PENDING, Delivery
from tgateway.transcode.api import Rendition, VideoListener, VideoResults
from tgateway.transcode.probe import ProbeResult

LINKS = Links(base_url="https://gw.test", tracker_urls=("udp://gw.test:6969/announce",),
              blossom_url="https://blossom.test")
KEY = b"\x07" * 32


def stored(sha: str, name: str, mime: str, size: int) -> StoredFile:
    return StoredFile(sha256=sha, size=size, name=name, mime=mime, storage="blob",
                      piece_length=16384, info_hash=sha[:40], info=b"d4:name1:xe", created_at=5.0)


def owner(sha: str, who: str, title: str | None, source: str) -> Ownership:
    return Ownership(sha256=sha, owner=who, name="n", title=title, description=None,
                     announce_dht=True, source=source, created_at=1.0)


class FakeStore:
    def __init__(self, owners: list[Ownership]) -> None:
        self._owners = owners

    async def owners(self, sha256: str) -> list[Ownership]:
        return [o for o in self._owners if o.sha256 == sha256]


class FakeOutbox:
    def __init__(self) -> None:
        self.published: list[tuple[Event, tuple[str, ...], str | None]] = []

    async def publish(self, event: Event, relays: Sequence[str], ref: str | None = None) -> int:
        self.published.append((event, tuple(relays), ref))
        return len(relays)

    async def deliveries_for_ref(self, ref: str) -> list[Delivery]:
        return [Delivery(event_id=e.id, kind=e.kind, ref=r, relay_url=url, status=PENDING,
                         attempts=0, message="", next_attempt_at=None, updated_at=0.0,
                         queued_at=0.0)
                for e, relays, r in self.published if r == ref for url in relays]

    async def events_for_ref(self, ref: str) -> list[Event]:
        return []  # no NIP-09 deletion


ORIGINAL = stored("aa" * 32, "holiday.webm", "video/webm", 9000)
MP4 = stored("bb" * 32, "holiday 720p.mp4", "video/mp4", 4000)
MP4_480 = stored("dd" * 32, "holiday 480p.mp4", "video/mp4", 2000)
MASTER = stored("ee" * 32, "holiday.m3u8", "application/vnd.apple.mpegurl", 300)
PROBE = ProbeResult(duration=2.5, width=1280, height=720, rotation=0, fps=10.0,
                    video_codec="vp9", audio_codec="opus", bitrate=28800)


class VideoAnnouncerTests(SynchronousTestCase):
    def announcer(self, outbox: FakeOutbox, clock: Clock | None = None,
                  addressable: bool = False) -> VideoAnnouncer:
        store = FakeStore([owner(ORIGINAL.sha256, "c" * 64, "Holiday", "api"),
                           owner(ORIGINAL.sha256, "transcode:x", "not this", "transcode")])
        return VideoAnnouncer(sign=lambda t: sign(t, KEY), outbox=outbox,
                              relays=("wss://video.test",), clock=clock or Clock(), links=LINKS,
                              store=store, addressable=addressable)  # type: ignore[arg-type]

    def test_is_the_transcoders_video_listener(self) -> None:
        assert_implements(VideoAnnouncer, VideoListener)

    def test_renditions_with_links_and_announced_once(self) -> None:
        outbox = FakeOutbox()
        a = self.announcer(outbox)
        video = VideoResults(ORIGINAL, PROBE, (Rendition("720p", MP4, 1280, 720, 12800),))
        event = self.successResultOf(Deferred.fromCoroutine(a.video_ready(video)))
        self.assertEqual(event.kind, 21)
        [(sent, relays, ref)] = outbox.published
        self.assertIs(sent, event)
        self.assertEqual((relays, ref), (("wss://video.test",), "nip71:" + ORIGINAL.sha256))
        [imeta] = [t for t in event.tags if t[0] == "imeta"]
        self.assertEqual(imeta, ("imeta", f"url {LINKS.stream(MP4)}", "m video/mp4",
                                 f"x {MP4.sha256}", "dim 1280x720", "duration 2.5",
                                 "bitrate 12800", "size 4000", f"fallback {LINKS.blossom(MP4)}",
                                 f"fallback {LINKS.webseed(MP4)}"))
        self.assertIn(("title", "Holiday"), event.tags)  # the uploader's, not the outputs' owner
        self.assertIn(("magnet", LINKS.magnet(ORIGINAL)), event.tags)
        self.assertIn(("i", ORIGINAL.info_hash), event.tags)
        # handed over again (a retried job): not announced twice
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(a.video_ready(video))))
        self.assertEqual(len(outbox.published), 1)

    def test_the_original_alone(self) -> None:
        outbox = FakeOutbox()
        event = self.successResultOf(Deferred.fromCoroutine(
            self.announcer(outbox).video_ready(VideoResults(ORIGINAL, PROBE))))
        [imeta] = [t for t in event.tags if t[0] == "imeta"]
        self.assertEqual(imeta[1:4], (f"url {LINKS.stream(ORIGINAL)}", "m video/webm",
                                      f"x {ORIGINAL.sha256}"))
        self.assertIn("bitrate 28800", imeta)

    def test_no_relay_no_event(self) -> None:
        outbox = FakeOutbox()
        a = VideoAnnouncer(sign=lambda t: sign(t, KEY), outbox=outbox, relays=(), clock=Clock(),
                           links=LINKS, store=FakeStore([]))  # type: ignore[arg-type]
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(
            a.video_ready(VideoResults(ORIGINAL, PROBE)))))
        self.assertEqual(outbox.published, [])



    def test_one_imeta_per_rendition_and_one_for_the_hls_master(self) -> None:
        outbox = FakeOutbox()
        video = VideoResults(ORIGINAL, PROBE, (Rendition("720p", MP4, 1280, 720, 12800),
                                               Rendition("480p", MP4_480, 854, 480, 6400)),
                             MASTER)
        event = self.successResultOf(Deferred.fromCoroutine(
            self.announcer(outbox).video_ready(video)))
        imeta = [t for t in event.tags if t[0] == "imeta"]
        self.assertEqual([t[1] for t in imeta], [f"url {LINKS.stream(MP4)}",
                                                 f"url {LINKS.stream(MP4_480)}",
                                                 f"url {LINKS.hls(ORIGINAL)}"])
        self.assertIn("dim 854x480", imeta[1])
        self.assertIn("bitrate 6400", imeta[1])
        self.assertEqual(imeta[2], ("imeta", f"url https://gw.test/api/stream/{ORIGINAL.sha256}"
                                    "/playlist.m3u8", "m application/x-mpegURL",
                                    f"x {MASTER.sha256}", "dim 1280x720", "duration 2.5",
                                    "bitrate 12800", "size 300",
                                    f"fallback https://blossom.test/{MASTER.sha256}"))
        for t in imeta[:2]:
            self.assertEqual([e for e in t if e.startswith("fallback ")],
                             [f"fallback https://blossom.test/{t[3][2:]}",
                              f"fallback {LINKS.base_url}/api/webseed/{t[3][2:42]}/"
                              + ("holiday%20720p.mp4" if t is imeta[0] else "holiday%20480p.mp4")])
        tags = {t[0]: t[1] for t in event.tags if t[0] != "imeta"}
        self.assertEqual(tags["published_at"], "5")  # the upload's time
        self.assertNotIn("d", tags)
        self.assertEqual(event.kind, 21)

    def test_portrait_is_a_short_video(self) -> None:
        portrait = ProbeResult(duration=2.5, width=1280, height=720, rotation=90, fps=10.0,
                               video_codec="vp9", audio_codec=None, bitrate=28800)
        for addressable, kind in ((False, 22), (True, 34236)):
            event = self.successResultOf(Deferred.fromCoroutine(
                self.announcer(FakeOutbox(), addressable=addressable).video_ready(
                    VideoResults(ORIGINAL, portrait))))
            self.assertEqual(event.kind, kind)

    def test_regular_kinds_wait_for_the_renditions(self) -> None:
        outbox = FakeOutbox()
        a = self.announcer(outbox)
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(
            a.video_found(ORIGINAL, PROBE, True))))
        self.assertEqual(outbox.published, [])  # a regular event cannot be updated: wait
        self.successResultOf(Deferred.fromCoroutine(a.video_ready(
            VideoResults(ORIGINAL, PROBE, (Rendition("720p", MP4, 1280, 720, 12800),), MASTER))))
        self.assertEqual([e.kind for e, _, _ in outbox.published], [21])

    def test_addressable_out_once_probed_then_replaced_when_ready(self) -> None:
        outbox = FakeOutbox()
        clock = Clock()
        clock.advance(1_700_000_000)
        a = self.announcer(outbox, clock, addressable=True)
        first = self.successResultOf(Deferred.fromCoroutine(a.video_found(ORIGINAL, PROBE, True)))
        self.assertEqual(first.kind, 34235)
        self.assertEqual(first.tags[0], ("d", ORIGINAL.sha256))
        [imeta] = [t for t in first.tags if t[0] == "imeta"]
        self.assertEqual(imeta[1], f"url {LINKS.stream(ORIGINAL)}")  # the original until then
        # the same second: the replacement must still be newer
        final = self.successResultOf(Deferred.fromCoroutine(a.video_ready(VideoResults(
            ORIGINAL, PROBE, (Rendition("720p", MP4, 1280, 720, 12800),), MASTER))))
        self.assertEqual((final.kind, final.tags[0]), (34235, ("d", ORIGINAL.sha256)))
        self.assertGreater(final.created_at, first.created_at)
        self.assertEqual(final.first_tag("published_at"), first.first_tag("published_at"))
        self.assertEqual(len([t for t in final.tags if t[0] == "imeta"]), 2)
        self.assertEqual([ref for _, _, ref in outbox.published],
                         [f"nip71:{ORIGINAL.sha256}:original", f"nip71:{ORIGINAL.sha256}"])
        # not transcoded (no job queued): nothing early, the one event comes with video_ready
        outbox2 = FakeOutbox()
        b = self.announcer(outbox2, addressable=True)
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(
            b.video_found(ORIGINAL, PROBE, False))))
        self.assertEqual(outbox2.published, [])

    def test_video_found_goes_to_the_torrent_announcer_first(self) -> None:
        seen: list[tuple[str, object, bool]] = []

        class Torrents:
            async def video_found(self, f: StoredFile, probe: object, queued: bool) -> None:
                seen.append((f.sha256, probe, queued))

        a = VideoAnnouncer(sign=lambda t: sign(t, KEY), outbox=FakeOutbox(), relays=(),
                           clock=Clock(), links=LINKS, store=FakeStore([]),  # type: ignore[arg-type]
                           torrents=Torrents())  # type: ignore[arg-type]
        self.successResultOf(Deferred.fromCoroutine(a.video_found(ORIGINAL, None, False)))
        self.assertEqual(seen, [(ORIGINAL.sha256, None, False)])

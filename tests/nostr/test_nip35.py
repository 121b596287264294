"""NIP-35 kind 2003 templates."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tgateway.metainfo import magnet_uri
from tgateway.nostr.event import parse_event, sign
from tgateway.nostr.nip35 import TorrentInfo, VideoSummary, torrent_event_template

IH = "ab" * 20
SHA = "cd" * 32


class Nip35Tests(SynchronousTestCase):
    def info(self, **kw: object) -> TorrentInfo:
        fields: dict[str, object] = dict(
            title="  My   video ",
            info_hash_v1=IH.upper(),
            files=[("my video.mp4", 1234)],
            description="a description",
            trackers=["http://gw/announce", "udp://gw:6969/announce", "http://gw/announce"],
            topics=["#Video", "music", ""],
            identifiers=["tcat:video,movie"],
            webseeds=["http://gw/webseed/"],
            blossom_url=f"http://gw:8082/{SHA}",
            mime="video/mp4",
        )
        fields.update(kw)
        return TorrentInfo(**fields)  # type: ignore[arg-type]

    def test_template(self) -> None:
        t = torrent_event_template(self.info(), 1_700_000_000)
        self.assertEqual((t.kind, t.created_at, t.content), (2003, 1_700_000_000, "a description"))
        magnet = magnet_uri(
            IH,
            "My video",
            ["http://gw/announce", "udp://gw:6969/announce"],
            ["http://gw/webseed/"],
            1234,
        )
        self.assertEqual(
            t.tags,
            (
                ("title", "My video"),
                ("x", IH),
                ("file", "my video.mp4", "1234"),
                ("tracker", "http://gw/announce"),
                ("tracker", "udp://gw:6969/announce"),
                ("magnet", magnet),
                ("webseed", "http://gw/webseed/"),
                ("blossom", f"http://gw:8082/{SHA}"),
                ("m", "video/mp4"),
                ("t", "video"),
                ("t", "music"),
                ("i", "tcat:video,movie"),
            ),
        )
        self.assertTrue(
            magnet.startswith(f"magnet:?xt=urn:btih:{IH}&dn=My%20video&xl=1234&tr=http%3A%2F%2F")
        )
        event = sign(t, b"\x01" * 32)
        self.assertEqual(parse_event(event.to_json()), event)

    def test_the_seeds_tags_for_a_probed_video(self) -> None:
        """The seed README's example, tag for tag, beside NIP-35's own (its ``i tcat:`` form)."""
        video = VideoSummary(stream="http://gw/api/stream/s", duration=3600.0, width=1920,
                             height=1080, fps=29.97, codec="h264",
                             hls="http://gw/api/stream/s/playlist.m3u8",
                             transcoded="http://gw/api/stream/s?transcoded=true")
        t = torrent_event_template(self.info(
            sha256=SHA, category="video,streaming", identifiers=["imdb:tt0000001"],
            topics=["torrent", "video", "streaming"], video=video), 1)
        tags = [tag for tag in t.tags if tag[0] not in ("file", "tracker", "magnet", "x")]
        self.assertEqual(tags, [
            ("title", "My video"),
            ("webseed", "http://gw/webseed/"),
            ("blossom", SHA, f"http://gw:8082/{SHA}"),
            ("stream", "http://gw/api/stream/s"),
            ("hls", "http://gw/api/stream/s/playlist.m3u8"),
            ("transcoded", "http://gw/api/stream/s?transcoded=true"),
            ("duration", "3600"),
            ("video", "1920x1080", "29.97fps", "h264"),
            ("m", "video/mp4"),
            ("t", "torrent"),
            ("t", "video"),
            ("t", "streaming"),
            ("tcat", "video,streaming"),
            ("i", "tcat:video,streaming"),
            ("i", "imdb:tt0000001"),
        ])
        # no transcode: no HLS nor transcoded URL (they would lead nowhere)
        t = torrent_event_template(self.info(sha256=SHA, video=VideoSummary(
            stream="http://gw/s", duration=2.5, width=720, height=1280, fps=30.0, codec="vp9")), 1)
        names = [tag[0] for tag in t.tags]
        self.assertNotIn("hls", names)
        self.assertNotIn("transcoded", names)
        self.assertIn(("video", "720x1280", "30fps", "vp9"), t.tags)
        self.assertIn(("duration", "2.5"), t.tags)

    def test_minimal_and_multi_file(self) -> None:
        t = torrent_event_template(
            TorrentInfo(
                title="t", info_hash_v1=IH, files=[("a", 1), ("b/c", 2)], include_magnet=False
            ),
            5,
        )
        self.assertEqual(
            t.tags, (("title", "t"), ("x", IH), ("file", "a", "1"), ("file", "b/c", "2"))
        )
        self.assertEqual(t.content, "")

    def test_errors(self) -> None:
        for bad in (
            dict(info_hash_v1="ab" * 32),
            dict(info_hash_v1="zz" * 20),
            dict(title="   "),
            dict(files=[]),
            dict(files=[("a", -1)]),
        ):
            with self.assertRaises(ValueError, msg=repr(bad)):
                torrent_event_template(self.info(**bad), 1)

    def test_many_files_capped(self) -> None:
        t = torrent_event_template(self.info(files=[(f"f{i}", i) for i in range(600)]), 1)
        self.assertEqual(sum(1 for tag in t.tags if tag[0] == "file"), 500)

"""NIP-35 kind 2003 templates."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tgateway.metainfo import magnet_uri
from tgateway.nostr.event import parse_event, sign
from tgateway.nostr.nip35 import TorrentInfo, torrent_event_template

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
                ("t", "video"),
                ("t", "music"),
                ("i", "tcat:video,movie"),
                ("magnet", magnet),
                ("webseed", "http://gw/webseed/"),
                ("blossom", f"http://gw:8082/{SHA}"),
                ("m", "video/mp4"),
            ),
        )
        self.assertTrue(
            magnet.startswith(f"magnet:?xt=urn:btih:{IH}&dn=My%20video&xl=1234&tr=http%3A%2F%2F")
        )
        event = sign(t, b"\x01" * 32)
        self.assertEqual(parse_event(event.to_json()), event)

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

"""BUD-05 planning, the image argv, BUD-10 URIs, the Sunset date and own-URL mirrors: pure."""

from __future__ import annotations

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from tgateway.blossom.blobs import sunset
from tgateway.blossom.media import Plan, accepts_type, plan_for
from tgateway.blossom.mirror import own_blob
from tgateway.config import parse_config
from tgateway.links import blossom_uri, server_hint
from tgateway.storage.model import StoredFile
from tgateway.transcode.argv import image_argv

H = "ab" * 32


def stored(**kw: object) -> StoredFile:
    f = StoredFile(sha256=H, size=10, name="f.bin", mime="application/octet-stream",
                   storage="blob", piece_length=16384, info_hash="cd" * 20, info=b"de",
                   created_at=0.0)
    return replace(f, **kw)  # type: ignore[arg-type]


class Plans(SynchronousTestCase):
    def test_images_by_their_bytes_whatever_the_declared_type(self) -> None:
        self.assertEqual(plan_for(b"\xff\xd8\xff\xe0....", "application/octet-stream"),
                         Plan("image", "jpeg"))
        self.assertEqual(plan_for(b"\x89PNG\r\n\x1a\n", None), Plan("image", "png"))
        self.assertEqual(plan_for(b"GIF89a....", "image/png"), Plan("image", "gif"))
        self.assertEqual(plan_for(b"RIFF\x00\x00\x00\x00WEBPVP8 ", None), Plan("image", "png"))
        self.assertEqual(plan_for(b"BM......", None), Plan("image", "png"))

    def test_videos_and_the_rest(self) -> None:
        self.assertEqual(plan_for(b"\x00\x00\x00\x20ftypisom", None), Plan("video"))
        self.assertEqual(plan_for(b"\x1a\x45\xdf\xa3", None), Plan("video"))
        self.assertEqual(plan_for(b"anything", "video/x-unknown"), Plan("video"))
        self.assertIsNone(plan_for(b"%PDF-1.7", "application/pdf"))
        self.assertIsNone(plan_for(b"hello", "image/svg+xml"))
        self.assertEqual((Plan("video").mime, Plan("video").extension), ("video/mp4", ".mp4"))
        self.assertEqual((Plan("image", "png").mime, Plan("image", "jpeg").extension),
                         ("image/png", ".jpg"))

    def test_head_media_types(self) -> None:
        for t in ("image/jpeg", "image/png; x=1", "IMAGE/WEBP", "video/mp4", "video/quicktime"):
            self.assertTrue(accepts_type(t), t)
        for t in ("application/pdf", "image/svg+xml", "text/plain", "audio/mpeg"):
            self.assertFalse(accepts_type(t), t)

    def test_image_argv_strips_metadata(self) -> None:
        argv = image_argv("ffmpeg", "file:in", "out.jpg", "jpeg")
        for flag in (["-map_metadata", "-1"], ["-c:v", "mjpeg"], ["-frames:v", "1"]):
            self.assertIn(" ".join(flag), " ".join(argv))
        self.assertEqual(argv[-3:], ["-f", "image2", "out.jpg"])
        gif = image_argv("ffmpeg", "file:in", "out.gif", "gif")
        self.assertNotIn("-frames:v", gif)  # an animation keeps its frames
        self.assertEqual(gif[-3:], ["-f", "gif", "out.gif"])


class Uris(SynchronousTestCase):
    def test_server_hint_keeps_a_non_default_port(self) -> None:
        self.assertEqual(server_hint("https://cdn.example.com"), "cdn.example.com")
        self.assertEqual(server_hint("http://cdn.example.com:80/"), "cdn.example.com")
        self.assertEqual(server_hint("http://127.0.0.1:8082"), "127.0.0.1:8082")
        self.assertEqual(server_hint("http://[::1]:8082"), "[::1]:8082")

    def test_blossom_uri(self) -> None:
        f = stored(sha256=H, mime="application/pdf", size=184292)
        self.assertEqual(blossom_uri(f, server="https://cdn.example.com", authors=["cd" * 32]),
                         f"blossom:{H}.pdf?xs=cdn.example.com&as={'cd' * 32}&sz=184292")
        # no Blossom server, no key (anonymous, transcode:...): only the size
        unknown = stored(sha256=H, mime="application/x-what", name="", size=3)
        self.assertEqual(blossom_uri(unknown, server=None, authors=["", "transcode:" + H]),
                         f"blossom:{H}.bin?sz=3")


class Sunset(SynchronousTestCase):
    def test_from_max_file_age_when_cleanup_is_on(self) -> None:
        f = stored(created_at=1_000_000.0)
        on = parse_config({"admin": {"auto_cleanup": True, "max_file_age": "30d"}})
        self.assertEqual(sunset(f, on), 1_000_000.0 + 30 * 86400)
        off = parse_config({"admin": {"auto_cleanup": False}})
        self.assertIsNone(sunset(f, off))


class OwnUrls(SynchronousTestCase):
    def test_blob_urls_of_this_server_only(self) -> None:
        base = "http://127.0.0.1:8082"
        self.assertEqual(own_blob(f"{base}/{H}.pdf", base), H)
        self.assertEqual(own_blob(f"{base}/{H.upper()}", base), H)
        self.assertEqual(own_blob(f"https://b.example/{H}", "https://b.example:443/"), H)
        for url in (f"http://127.0.0.1:8083/{H}", f"https://127.0.0.1:8082/{H}",
                    f"http://127.0.0.2:8082/{H}", f"{base}/x/{H}", f"{base}/{H[:-1]}",
                    f"{base}/upload", "http://[::1/"):
            self.assertIsNone(own_blob(url, base), url)
        self.assertEqual(own_blob(f"https://x.example/blossom/{H}", "https://x.example/blossom"),
                         H)


class Busy(SynchronousTestCase):
    def test_uploads_past_the_running_and_waiting_ones_are_refused_before_their_body(self) -> None:
        from twisted.internet.task import Clock

        from tgateway.blossom.media import MAX_RUNNING, MAX_WAITING, MediaOptimizer
        from tgateway.errors import ServiceUnavailable
        from tgateway.transcode.argv import Profile
        from tgateway.transcode.tools import FFmpegTools

        m = MediaOptimizer(reactor=Clock(), tools=FFmpegTools("ffmpeg", None, "path"),
                           work_dir=self.mktemp(), profiles=[Profile("720p", 720, 1, 1)])
        for _ in range(MAX_RUNNING + MAX_WAITING):
            m.reserve()
        with self.assertRaises(ServiceUnavailable) as e:
            m.reserve()
        self.assertEqual((e.exception.status, e.exception.headers["Retry-After"]), (503, "10"))
        m.release()
        m.reserve()

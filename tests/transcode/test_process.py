"""The FFmpeg adapter with a fake reactor (argv, progress, exit codes, cancel) and the pure parts."""

from __future__ import annotations

import json

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr.event import verify
from tgateway.nostr.keys import load_or_create_key
from tgateway.nostr.nip71 import VideoInfo, VideoVariant, video_event_template
from tgateway.transcode.argv import (
    PlaylistEntry,
    Profile,
    encode_argv,
    master_playlist,
    plan_variants,
)
from tgateway.transcode.probe import ProbeError, ProbeResult, parse_ffmpeg_info, parse_ffprobe_json
from tgateway.transcode.process import FFmpegCancelled, FFmpegFailed, ProgressParser, run_ffmpeg
from tgateway.transcode.tools import find_ffmpeg

PROFILES = [Profile("1080p", 1080, 5_000_000, 192_000), Profile("720p", 720, 2_500_000, 128_000),
            Profile("480p", 480, 1_000_000, 96_000)]


class FakeTransport:
    def __init__(self) -> None:
        self.signals: list[str] = []
        self.pid = 4242
        self.stdin_closed = False

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeReactor(Clock):
    """``spawnProcess`` records argv; the test feeds output and the exit status."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[object, str, list[str]]] = []

    def spawnProcess(self, protocol, executable, args, env=None, **kw):  # type: ignore[no-untyped-def]
        transport = FakeTransport()
        self.spawned.append((protocol, executable, args))
        protocol.makeConnection(transport)
        return transport


def ended(code: int | None = 0, signal: int | None = None) -> Failure:
    if code == 0:
        return Failure(error.ProcessDone(0))
    return Failure(error.ProcessTerminated(exitCode=code, signal=signal))


def probe(**kw: object) -> ProbeResult:
    base = dict(duration=10.0, width=1280, height=720, rotation=0, fps=30.0, video_codec="vp9",
                audio_codec="opus", bitrate=2_000_000, video_bitrate=0, pix_fmt="yuv420p")
    base.update(kw)
    return ProbeResult(**base)  # type: ignore[arg-type]


class ProcessTests(SynchronousTestCase):
    def test_argv_progress_and_success(self) -> None:
        reactor = FakeReactor()
        seen = []
        argv = ["/usr/bin/ffmpeg", "-progress", "pipe:1", "-i", "in", "out.mp4"]
        run = run_ffmpeg(reactor, argv, duration=10.0, on_progress=seen.append)
        [(proto, exe, args)] = reactor.spawned
        self.assertEqual((exe, args), ("/usr/bin/ffmpeg", argv))
        self.assertTrue(proto.transport.stdin_closed)  # type: ignore[attr-defined]
        proto.childDataReceived(1, b"frame=10\nout_time_us=2500000\nspeed=1.5x\nprogress=cont")
        proto.childDataReceived(1, b"inue\nout_time_us=N/A\nprogress=continue\n")
        proto.childDataReceived(1, b"out_time_us=7500000\nprogress=continue\nprogress=end\n")
        self.assertEqual([p.percent for p in seen], [25.0, 25.0, 75.0, 100.0])
        self.assertEqual(seen[0].speed, 1.5)
        self.assertNoResult(run.done)
        proto.processEnded(ended(0))
        self.successResultOf(run.done)

    def test_exit_code_keeps_stderr_tail(self) -> None:
        reactor = FakeReactor()
        run = run_ffmpeg(reactor, ["ffmpeg", "-i", "x"])
        proto = reactor.spawned[0][0]
        proto.childDataReceived(2, b"x" * 10000 + b"\n")
        proto.childDataReceived(2, b"x.webm: Invalid data found when processing input\n")
        proto.processEnded(ended(1))
        f = self.failureResultOf(run.done, FFmpegFailed)
        self.assertEqual(f.value.exit_code, 1)
        self.assertIn("Invalid data found", f.value.message)
        self.assertIn("exit code 1", f.value.message)
        self.assertLessEqual(len(f.value.stderr_tail), 4096)

    def test_cancel_terms_then_kills(self) -> None:
        reactor = FakeReactor()
        run = run_ffmpeg(reactor, ["ffmpeg"], kill_after=5.0)
        proto = reactor.spawned[0][0]
        run.cancel()
        self.assertEqual(proto.transport.signals, ["TERM"])  # type: ignore[attr-defined]
        reactor.advance(5.0)
        self.assertEqual(proto.transport.signals, ["TERM", "KILL"])  # type: ignore[attr-defined]
        proto.processEnded(ended(None, signal=9))
        self.failureResultOf(run.done, FFmpegCancelled)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_cancel_after_quick_exit_leaves_no_timer(self) -> None:
        reactor = FakeReactor()
        run = run_ffmpeg(reactor, ["ffmpeg"])
        proto = reactor.spawned[0][0]
        run.cancel()
        proto.processEnded(ended(None, signal=15))
        self.failureResultOf(run.done, FFmpegCancelled)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_progress_parser_garbage(self) -> None:
        p = ProgressParser(0.0)
        self.assertEqual(p.feed(b"\x00\xff=\n==\nprogress=continue\n")[0].percent, 0.0)
        self.assertEqual(p.feed(b"x" * 10000), [])


    def test_output_kept_from_a_child_is_bounded(self) -> None:
        from tgateway.transcode.process import MAX_STDOUT, FFmpegProtocol

        proto = FFmpegProtocol(parser=None, on_progress=None, keep_stdout=True, tail_size=1000)
        block = b"o" * (1024 * 1024)
        for _ in range(MAX_STDOUT // len(block) + 4):
            proto.outReceived(block)
            proto.errReceived(b"e" * 300)
        self.assertLessEqual(sum(map(len, proto.stdout)), MAX_STDOUT)
        self.assertLessEqual(sum(map(len, proto.stderr)), 1000 + 300)
        self.assertEqual(len(proto.stderr_tail()), 1000)


class PureTests(SynchronousTestCase):
    def test_plan_never_upscales_and_keeps_portrait(self) -> None:
        self.assertEqual([(v.name, v.width, v.height) for v in plan_variants(probe(), PROFILES)],
                         [("720p", 1280, 720), ("480p", 854, 480)])
        portrait = probe(width=720, height=1280)
        self.assertEqual([(v.width, v.height) for v in plan_variants(portrait, PROFILES)],
                         [(720, 1280), (480, 854)])
        rotated = probe(width=1920, height=1080, rotation=90)
        self.assertEqual([(v.width, v.height) for v in plan_variants(rotated, PROFILES)],
                         [(1080, 1920), (720, 1280), (480, 854)])
        tiny = probe(width=320, height=240)
        self.assertEqual([(v.name, v.width, v.height) for v in plan_variants(tiny, PROFILES)],
                         [("480p", 320, 240)])

    def test_h264_aac_at_or_below_is_remuxed(self) -> None:
        src = probe(width=640, height=360, video_codec="h264", audio_codec="aac",
                    video_bitrate=400_000)
        [v] = plan_variants(src, PROFILES)
        self.assertEqual((v.mode, v.copy_video, v.copy_audio), ("remux", True, True))
        argv = encode_argv("ffmpeg", "file:in", src, [v], "/w")
        self.assertIn("copy", argv)
        self.assertNotIn("libx264", argv)
        high = probe(width=1280, height=720, video_codec="h264", audio_codec="aac",
                     video_bitrate=9_000_000)
        self.assertEqual({v.mode for v in plan_variants(high, PROFILES)}, {"transcode"})

    def test_encode_argv(self) -> None:
        src = probe()
        variants = plan_variants(src, PROFILES)
        argv = encode_argv("ffmpeg", "file:in", src, variants, "/w", preset="ultrafast",
                           segment=4)
        self.assertEqual(argv[argv.index("-i") + 1], "file:in")
        graph = argv[argv.index("-filter_complex") + 1]
        self.assertIn("split=2", graph)
        self.assertIn("scale=1280:720", graph)
        self.assertIn("scale=854:480", graph)
        self.assertEqual(argv.count("libx264"), 2)
        self.assertEqual(argv.count("+faststart"), 2)
        self.assertEqual([a for a in argv if a.endswith(".mp4")], ["/w/720p.mp4", "/w/480p.mp4"])
        self.assertIn("pipe:1", argv)
        self.assertIn("expr:gte(t,n_forced*4)", argv)

    def test_master_playlist(self) -> None:
        text = master_playlist([PlaylistEntry("a.m3u8", 3000000, 2500000, 1280, 720,
                                              "avc1.64001f,mp4a.40.2")])
        self.assertIn('BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2500000,RESOLUTION=1280x720,'
                      'CODECS="avc1.64001f,mp4a.40.2"', text)

    def test_probe_parsers(self) -> None:
        data = {"streams": [
            {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
             "avg_frame_rate": "30000/1001", "pix_fmt": "yuv420p",
             "side_data_list": [{"rotation": -90}]},
            {"codec_type": "audio", "codec_name": "aac"}],
            "format": {"duration": "12.5", "bit_rate": "4000000", "format_name": "mov"}}
        r = parse_ffprobe_json(json.dumps(data))
        self.assertEqual((r.display_width, r.display_height, r.rotation), (1080, 1920, 90))
        self.assertAlmostEqual(r.fps, 29.97)
        self.assertRaises(ProbeError, parse_ffprobe_json, "{}")
        self.assertRaises(ProbeError, parse_ffprobe_json, "not json")
        text = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 3026 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 3023 kb/s, 25 fps, 25 tbr, 10240 tbn (default)
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s
At least one output file must be specified
"""
        r = parse_ffmpeg_info(text)
        self.assertEqual((r.duration, r.width, r.height, r.rotation, r.fps), (62.5, 1280, 720, 90, 25.0))
        self.assertEqual((r.video_codec, r.audio_codec, r.bitrate), ("h264", "aac", 3026000))
        self.assertRaises(ProbeError, parse_ffmpeg_info, "x.bin: Invalid data found")

    def test_find_ffmpeg(self) -> None:
        both = find_ffmpeg(lambda n: "/usr/bin/" + n, lambda: "/wheel/ffmpeg")
        self.assertEqual((both.ffprobe, both.source), ("/usr/bin/ffprobe", "path"))  # type: ignore[union-attr]
        wheel = find_ffmpeg(lambda n: None, lambda: "/wheel/ffmpeg")
        self.assertEqual((wheel.ffmpeg, wheel.ffprobe), ("/wheel/ffmpeg", None))  # type: ignore[union-attr]
        self.assertIsNone(find_ffmpeg(lambda n: None, lambda: None))

    def test_nip71_template(self) -> None:
        variants = [VideoVariant(url=f"http://g/api/stream/{c * 64}", mime="video/mp4",
                                 sha256=c * 64, width=w, height=h, duration=2.0, bitrate=1000,
                                 fallbacks=["http://g/api/download/x"])
                    for c, w, h in (("a", 1280, 720), ("b", 854, 480))]
        info = VideoInfo(title="Clip", published_at=1700000000, duration=2.0, width=1280,
                         height=720, variants=variants, info_hash="c" * 40, magnet="magnet:?x")
        t = video_event_template(info, 1700000001)
        self.assertEqual(t.kind, 21)
        imeta = [tag for tag in t.tags if tag[0] == "imeta"]
        self.assertEqual(len(imeta), 2)
        self.assertIn("dim 1280x720", imeta[0])
        self.assertIn("x " + "a" * 64, imeta[0])
        self.assertIn(("i", "c" * 40), t.tags)
        self.assertIn(("published_at", "1700000000"), t.tags)
        portrait = VideoInfo(title="P", published_at=1, duration=1, width=720, height=1280,
                             variants=variants[:1])
        self.assertEqual(video_event_template(portrait, 1).kind, 22)
        key = load_or_create_key("11" * 32, "/nonexistent")
        from tgateway.nostr.event import sign

        self.assertTrue(verify(sign(t, key)))
